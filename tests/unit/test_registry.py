"""The benchmark registry (aft.eval.registry) alone drives config validation, the rules' inputs, the
report and the cost table: each consequence below is read off the registry, not written out again."""

from __future__ import annotations

import importlib
import json
import subprocess

import pytest

from aft.eval import registry
from aft.eval.registry import ALPACA_EVAL2, REGISTRY, Benchmark, Column, Sizes
from aft.eval.report import markdown_table
from aft.pipeline.config import load_config
from aft.tools.costs import BENCHES
from tests.conftest import ROOT, copy_workflow, load_yaml

PAPER_BENCHES = [b for b in REGISTRY.values() if b.data_kind == "paper"]


def test_schema_lists_exactly_the_registry():
    schema = json.loads((ROOT / "workflow/schemas/config.schema.json").read_text())
    bench = schema["$defs"]["GridConfig"]["properties"]["benchmarks"]["items"]
    assert bench["enum"] == list(REGISTRY)


@pytest.mark.parametrize("spec", PAPER_BENCHES, ids=lambda b: b.name)
def test_every_source_a_benchmark_reads_is_required_by_validation(spec: Benchmark):
    required = [
        spec.questions_source,
        *(n for r, n in spec.judge_sources.items() if r not in spec.optional_roles),
    ]
    for name in required:
        raw = load_yaml("config/paper.yaml")
        raw["grid"]["benchmarks"] = [spec.name]
        raw["sources"][name] = None
        with pytest.raises(ValueError, match=f"sources.{name}"):
            load_config(raw)


def test_alpaca_eval2_runs_without_the_lc_fit_data_and_its_judge_job_reads_none(tmp_path):
    """df_gamed.csv only feeds the LC win rate: without it the raw win rate is reported (the LC columns
    say why), so the source may be null and the judge job then gets no --lc-fit file."""
    assert ALPACA_EVAL2.optional_roles == ("lc_fit",)
    raw = load_yaml("config/paper.yaml")
    raw["grid"] |= {"benchmarks": ["alpaca_eval2"], "bases": ["llama31-8b"], "variants": ["sft"]}
    raw["sources"]["alpaca_eval_lc_fit"] = None
    assert load_config(raw).sources.alpaca_eval_lc_fit is None
    (tmp_path / "no_lc.yaml").write_text(json.dumps({k: raw[k] for k in ("grid", "sources")}))
    out = subprocess.run(
        [
            "snakemake",
            "-n",
            "-p",
            "--until",
            "judge_answers",
            "--configfile",
            "config/paper.yaml",
            "no_lc.yaml",
        ],
        cwd=copy_workflow(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    judge = next(line for line in out.splitlines() if "aft.stages.judge_answers" in line)
    assert "--lc-fit  --punkt-tab" in judge and "df_gamed" not in out


def test_the_miniature_benchmark_needs_the_miniature_world():
    raw = load_yaml("config/paper.yaml")
    raw["grid"]["benchmarks"] = ["exact_match"]
    with pytest.raises(ValueError, match="needs data.kind='miniature'"):
        load_config(raw)


@pytest.mark.parametrize("spec", PAPER_BENCHES, ids=lambda b: b.name)
def test_a_paper_benchmark_needs_only_its_sources_whatever_was_trained(spec: Benchmark):
    """A paper benchmark reads its own sources, so the miniature's models can answer it (the real-model
    overlay does): refused without the sources, accepted with them and the judge's settings."""
    raw = load_yaml("config/config.yaml")
    raw["grid"]["benchmarks"] = [spec.name]
    with pytest.raises(ValueError, match=f"sources.{spec.questions_source} must be given"):
        load_config(raw)
    paper = load_yaml("config/paper.yaml")
    raw["sources"] |= {n: paper["sources"][n] for n in [spec.questions_source, *spec.judge_sources.values()]}
    raw["judge"] = paper["judge"]
    raw["sources"]["require_pinned"] = False  # some paper sources are pinned by checksum only
    assert load_config(raw).grid.benchmarks == [spec.name]


@pytest.mark.parametrize("spec", list(REGISTRY.values()), ids=lambda b: b.name)
def test_every_benchmark_module_has_the_code_the_registry_promises(spec: Benchmark):
    code = importlib.import_module(spec.module)
    assert callable(code.question_rows)
    if spec.llm_judged:
        assert callable(code.judge_answers)
    else:
        assert callable(code.score)
    assert callable(code.question_scores)


def test_rule_inputs_are_the_registry_sources(tmp_path):
    """Snakemake's plan of the paper grid: each benchmark's questions and judge files are exactly the
    files of the sources its registry entry names."""
    out = subprocess.run(
        ["snakemake", "-n", "-p", "--configfile", "config/paper.yaml", "--until", "judge_answers"],
        cwd=copy_workflow(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cfg = load_config(load_yaml("config/paper.yaml"))
    sources = cfg.sources.named()
    for spec in PAPER_BENCHES:
        prep = next(
            line for line in out.splitlines() if "prepare_bench --config" in line and spec.name in line
        )
        for f in sources[spec.questions_source].files:
            assert f"results/download_source/{spec.questions_source}/{f.name}" in prep
        judge = next(
            line
            for line in out.splitlines()
            if "aft.stages.judge_answers" in line and f"--bench-name {spec.name}" in line
        )
        for role, name in spec.judge_sources.items():
            files = [f"results/download_source/{name}/{f.name}" for f in sources[name].files]
            flag = "--" + role.replace("_", "-")  # reference, judge_prompts, lc_fit
            assert f"{flag} {' '.join(files)}" in judge


def test_the_report_shows_a_new_benchmark_from_its_entry_alone(monkeypatch):
    toy = Benchmark(
        name="toy",
        module="aft.eval.mt_bench",
        data_kind="paper",
        judge="llm",
        columns=(Column("pass", "Toy pass %", "toy_pass"),),
        headline="pass",
        claim_key="pass",
        paper_judge_name="Judge-X",
        paper={"Base-1": {"SFT": {"toy_pass": 12.5}}},
    )
    monkeypatch.setitem(registry.REGISTRY, "toy", toy)
    result = {
        "bench": "toy",
        "judge": "j",
        "paper_judge": False,
        "scores": {"pass": 40.0},
        "wildcards": {"base": "b", "variant": "sft", "mode": "direct"},
    }
    table = markdown_table([result], {"b": "Base-1"}, paper_table=True)
    lines = table.splitlines()
    assert lines[0] == "| base | model | Toy pass % [j] | Toy pass % (paper) [Judge-X] |"
    assert lines[2] == "| b | SFT | 40.0 | 12.5 |"
    assert "- toy: j: NOT the paper's judge (Judge-X)" in table


def test_the_cost_table_has_every_benchmark_with_sizes():
    assert set(BENCHES) == {name for name, b in REGISTRY.items() if b.sizes is not None}
    assert all(isinstance(s, Sizes) for s in BENCHES.values())
    assert {b.name for b in PAPER_BENCHES} <= set(BENCHES)  # every paper benchmark can be costed
