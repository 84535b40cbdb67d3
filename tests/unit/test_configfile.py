"""Config files read strictly (aft.pipeline.configfile) and checked without Snakemake
(aft.tools.check_config): a YAML mistake names its file, line and column."""

import subprocess

import pytest

from aft.pipeline.configfile import ConfigFileError, merge, read_config_file, read_config_files
from aft.tools.check_config import check
from tests.conftest import ROOT, copy_workflow


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1, 2\nb: 3\n", "bad.yaml, line 2, column 2: while parsing a flow sequence expected ','"),
        ("inference:\n  n: 3\n\tmax_tokens: 4\n", "bad.yaml, line 3, column 1:"),
        ("- 1\n- 2\n", "bad.yaml: the top level is a list; a config file is a mapping of keys"),
        ("just words\n", "bad.yaml: the top level is a str"),
        ("# only a comment\n", "bad.yaml is empty"),
        (
            "inference:\n  n: 3\ngrid:\n  seeds: 1\ninference:\n  n: 4\n",
            "bad.yaml, line 5, column 1: key 'inference' is given twice (lines 1 and 5)",
        ),
        ("inference:\n  n: 3\n  n: 4\n", "key 'n' is given twice (lines 2 and 3)"),
    ],
    ids=["syntax", "tab", "list", "scalar", "empty", "duplicate-section", "duplicate-key"],
)
def test_a_bad_config_file_is_named_with_its_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as err:
        read_config_file(path)
    assert message in str(err.value) and str(tmp_path) in str(err.value)


def test_a_missing_or_non_utf8_config_file_is_named(tmp_path):
    with pytest.raises(ConfigFileError, match="config file .*nope.yaml not found"):
        read_config_file(tmp_path / "nope.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(ConfigFileError, match=r"latin1.yaml, line 2: not UTF-8 \(byte 11\)"):
        read_config_file(tmp_path / "latin1.yaml")


def test_overlays_stack_like_snakemake_config_files(tmp_path):
    assert merge({"a": {"x": 1, "y": 2}, "b": [1]}, {"a": {"y": 3}, "b": [2]}) == {
        "a": {"x": 1, "y": 3},
        "b": [2],
    }
    (tmp_path / "base.yaml").write_text("inference:\n  n: 5\n  max_tokens: 8\n")
    (tmp_path / "over.yaml").write_text("inference:\n  n: 2\n")
    stacked = read_config_files([tmp_path / "base.yaml", tmp_path / "over.yaml"])
    assert stacked == {"inference": {"n": 2, "max_tokens": 8}}


def test_check_config_passes_the_shipped_configs_and_names_a_broken_overlay(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert check(["config/config.yaml", "config/experiments/agg_depth3.yaml"]).startswith("ok: ")
    assert "data.kind=paper" in check(["config/paper.yaml"])
    (tmp_path / "bad.yaml").write_text("inference:\n  temperature: [0.7\n")
    proc = subprocess.run(
        ["python", "-m", "aft.tools.check_config", "config/config.yaml", str(tmp_path / "bad.yaml")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and f"{tmp_path / 'bad.yaml'}, line 3, column 1:" in proc.stderr
    (tmp_path / "lr.yaml").write_text("train:\n  learning_rate: .inf\n")
    with pytest.raises(ValueError, match="train.learning_rate = Infinity: Input should be a finite number"):
        check(["config/config.yaml", str(tmp_path / "lr.yaml")])


def snakemake_dry_run(wf, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["snakemake", "-n", *args], cwd=wf, capture_output=True, text=True)


def test_snakemake_names_a_broken_default_config_and_a_key_given_twice(tmp_path):
    wf = copy_workflow(tmp_path)
    (wf / "twice.yaml").write_text("inference:\n  temperature: 0.5\ninference:\n  n: 3\n")
    proc = snakemake_dry_run(wf, "--configfile", "config/config.yaml", "twice.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "twice.yaml, line 3, column 1: key 'inference' is given twice" in out
    cfg = wf / "config/config.yaml"
    cfg.write_text(cfg.read_text().replace("grid:", "grid: [", 1))
    proc = snakemake_dry_run(wf)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config/config.yaml, line " in out and "Job stats" not in out
