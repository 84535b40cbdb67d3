"""Workflow hygiene: snakefmt and ruff clean, and `snakemake --lint` raises only the lints each
justified in a comment (Snakefile: per-rule conda envs, one locked environment instead; tracking.smk:
the optional MLflow variables), and one definition of each workflow handler."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
JUSTIFIED = (
    "Specify a conda environment or container for each rule",
    "Environment variable MLFLOW_TRACKING_URI used but not asserted with envvars directive",
    "Environment variable MLFLOW_EXPERIMENT_NAME used but not asserted with envvars directive",
)


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_snakefmt_is_clean():
    proc = run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_is_clean():
    for args in (("check",), ("format", "--check")):
        proc = run(str(BIN / "ruff"), *args, "src", "tests", "benchmarks")
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_raises_only_justified_lints():
    proc = run(str(BIN / "snakemake"), "--lint")
    lints = re.findall(r"^\s+\* (.+?)(?: in line \d+)?\.?:$", proc.stdout + proc.stderr, re.M)
    assert lints, "no lint parsed: did `snakemake --lint` change its output?"
    unjustified = sorted({x for x in lints if not x.startswith(JUSTIFIED)})
    assert unjustified == []


def test_each_workflow_handler_is_defined_once():
    """Snakemake keeps only the last `onsuccess:` (or onstart, onerror) it reads: a second one silently
    replaces the first (a console summary once replaced the handler that closes the MLflow run)."""
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    for handler in ("onstart", "onsuccess", "onerror"):
        where = [f.name for f in files for line in f.read_text().splitlines() if line == f"{handler}:"]
        assert where == ["tracking.smk"], (handler, where)
