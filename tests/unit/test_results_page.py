"""The generated results page: provenance first, the report below, headings one level down."""

from __future__ import annotations

import hashlib
import json

from aft.tools.results_page import cpu_facts, main, page

CPUINFO = (
    "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 fma avx512f amx_tile\n\nprocessor\t: 1\n"
)


def test_cpu_facts_name_the_model_and_the_float_relevant_flags():
    assert cpu_facts(CPUINFO) == {"cpu": "Some CPU", "isa_flags": "avx2 avx512f amx_tile fma"}
    assert cpu_facts("") == {"cpu": "unknown", "isa_flags": "none listed"}


def test_page_has_provenance_then_the_report():
    text = page(
        "# AFT results\n\n| a |\n## Direction\n- x", b"[1]", {"made by": "make run"}, "r/results.json"
    )
    lines = text.splitlines()
    assert lines[0] == "# Results of a run (generated: do not edit by hand)"
    assert "- made by: `make run`" in lines
    assert f"- sha256 of r/results.json: `{hashlib.sha256(b'[1]').hexdigest()}`" in lines
    assert "## AFT results" in lines and "### Direction" in lines and "| a |" in lines


def test_main_reads_the_run_and_writes_the_page(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports/seeds").mkdir(parents=True)
    (tmp_path / "reports/seeds/results.md").write_text("# AFT results\n| mini | SFT | 24.7 |\n")
    (tmp_path / "reports/seeds/results.json").write_text("[]")
    prov = {"git_sha": "abc123", "version_torch": "2.13.0+cpu", "python": "3.11.7"}
    (tmp_path / "results/make_report/seeds").mkdir(parents=True)
    (tmp_path / "results/make_report/seeds/metrics.json").write_text(json.dumps({"provenance": prov}))
    out = tmp_path / "docs/page.md"
    main(["--experiment", "seeds", "--out", str(out), "--command", "make run"])
    text = out.read_text()
    assert "- commit: `abc123`" in text and "- versions: `torch 2.13.0+cpu`" in text
    assert "| mini | SFT | 24.7 |" in text and "sha256 of reports/seeds/results.json" in text
