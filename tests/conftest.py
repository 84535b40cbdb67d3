"""Shared test helpers: repository paths and the ../shared data (skipped with a reason when absent)."""

from __future__ import annotations

import json
import os
import random
import sys
from contextlib import contextmanager
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
    "measure_target_loss": 1,  # §6.1: the base and the 3 trained models
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


@contextmanager
def vllm_server(
    model: Path, served: str, log: Path, *args: str, port: int | None = None, startup_s: float = 300
):
    """vLLM's OpenAI-compatible server (CPU build) on 127.0.0.1 serving `model` as `served`, with extra
    server `args`; yields {"base_url", "port", "startup_s"} once /health answers, and stops it (and the
    engine process it started) afterwards."""
    import signal
    import subprocess
    import time
    import urllib.request

    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        *("--model", str(model), "--served-model-name", served, "--host", "127.0.0.1", "--port", str(port)),
        *("--dtype", "float32", "--enforce-eager", "--block-size", "32", *args),
    ]
    env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1"}
    started = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() - started > startup_s:
                    pytest.fail("vLLM server did not start:\n" + log.read_text()[-3000:])
                time.sleep(1)
            startup = time.time() - started
            yield {"base_url": f"http://127.0.0.1:{port}/v1", "port": port, "startup_s": startup}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


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


TINY_ROWS = 64  # chat rows of the `tiny` fixture's training set


def conversation(rng: random.Random, i: int) -> dict:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    messages = [
        {"role": "system", "content": "you are terse"},
        {"role": "user", "content": f"add {a} and {b}"},
        {"role": "assistant", "content": f"the answer is {a + b}"},
    ]
    if i % 2:  # multi-turn rows too
        messages += [
            {"role": "user", "content": f"max of {a} and {b}"},
            {"role": "assistant", "content": f"the answer is {max(a, b)}"},
        ]
    return {
        "id": f"q{i}-{'agg' if i % 2 else 'direct'}",
        "kind": "aggregation" if i % 2 else "direct",
        "messages": messages,
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny base model (vocab ~300, hidden 32, 1 layer) saved like a hub model, and 64 chat rows."""
    from aft.miniature.basemodel import build_tokenizer, init_model

    root = tmp_path_factory.mktemp("tiny")
    rng = random.Random(0)
    words = [
        "add",
        "max",
        "of",
        "and",
        "the",
        "answer",
        "is",
        "you",
        "are",
        "terse",
        "numbers",
        "list",
        "sum",
    ]
    texts = [" ".join(rng.choice(words) for _ in range(10)) + f" {rng.randint(0, 40)}" for _ in range(400)]
    tok = build_tokenizer(texts, vocab_size=300)
    cfg = tiny_pretrain()
    init_model(tok, cfg).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(conversation(rng, i)) + "\n" for i in range(TINY_ROWS)))
    return {"root": root, "base": root / "base", "data": data}
