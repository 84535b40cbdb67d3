"""Shared test helpers: repository paths and the ../shared data (skipped with a reason when absent)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# `.venv/bin/pytest` without an activated environment: the tools the tests start (snakemake, and the
# `python -m aft.stages...` commands snakemake runs) come from the same environment as pytest
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


# the miniature's jobs per rule (config/config.yaml: 1 base, 3 variants, 2 modes, exact match)
MINIATURE_JOBS = {
    "prepare_data": 1,
    "prepare_bench": 1,
    "build_base": 1,
    "build_proposals_off": 1,
    "build_proposals_on_part": 1,  # the sampling, as the scatter part 1-of-1
    "build_proposals_on": 1,  # the gather of the parts
    "build_targets": 2,
    "build_dataset": 3,
    "train_model": 3,
    "generate_answers": 6,
    "judge_answers": 6,
    "make_report": 1,
}


def job_dir(rule: str, *configfiles: str | Path, root: Path = ROOT, **where: str) -> str:
    """The keyed folder of the one job of `rule` matching `where` under the stacked config (files
    relative to `root`, as Snakemake reads them from its working directory)."""
    from contextlib import chdir

    from aft.tools.paths import graph_of, job_dirs

    with chdir(root):  # the config's own checks read its paths from the working directory, as Snakemake's
        found = job_dirs(graph_of([str(f) for f in configfiles or ["config/config.yaml"]]), rule, where)
    assert len(found) == 1, f"{rule} {where}: {found}"
    return found[0]


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a test's server)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_workflow(dest: Path) -> Path:
    """The workflow's files (not results) in a fresh folder, to run snakemake there."""
    import shutil

    for name in ("Snakefile", "workflow", "config", "slurm"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def tiny_pretrain(**over):
    """A PretrainConfig for a throwaway test model (1 layer, hidden 32), with some keys replaced."""
    from aft.pipeline.config import PretrainConfig

    base = dict(
        vocab_size=300,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        steps=1,
        batch_size=1,
        seq_len=64,
        lr=1e-3,
        seed=0,
    )
    return PretrainConfig(**(base | over))
