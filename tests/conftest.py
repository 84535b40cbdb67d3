"""Shared test helpers: repository paths and the ../shared data (skipped with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_file(rel: str) -> Path:
    path = SHARED / rel
    if not path.is_file():
        pytest.skip(f"{path} is absent: the real benchmark files live in ../shared beside the repository")
    return path


def load_yaml(rel: str) -> dict:
    return yaml.safe_load((ROOT / rel).read_text())


def dry_run(cwd: Path, *args: str) -> dict[str, int]:
    """Jobs `snakemake -n` would run in `cwd`: {rule: count} (empty when nothing to do)."""
    import subprocess

    proc = subprocess.run(
        ["snakemake", "-n", "--cores", "2", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    if "Job stats:" not in out:
        return {}
    table = out.split("Job stats:", 1)[1].splitlines()[3:]
    jobs = {}
    for line in table:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def copy_workflow(dest: Path) -> Path:
    """The workflow's files (not results) in a fresh folder, to run snakemake there."""
    import shutil

    for name in ("Snakefile", "workflow", "config"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest
