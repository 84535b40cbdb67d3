"""The `train_model` stage CLI for real on a tiny model: one process, two ranks under DeepSpeed ZeRO-3
with CPU offload (torchrun), and a job killed mid-run that resumes from its last checkpoint.

The first DeepSpeed run on a machine JIT-compiles cpu_adam and the shm comm op (cached afterwards in
~/.cache/torch_extensions): about 2 minutes on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aft.method.chat_templates import load_chat_template
from aft.pipeline.config import TrainConfig
from aft.train.training import checkpoint_dir, optimizer_steps
from tests.conftest import ROOT, TINY_ROWS, load_yaml

pytestmark = pytest.mark.integration

ROWS = TINY_ROWS
TRAIN = {  # 64 rows / global batch 8 = 8 steps an epoch; 2.5 epochs = 20 optimizer steps
    "learning_rate": 3e-3,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.1,
    "num_train_epochs": 2.5,
    "global_batch_size": 8,
    "per_device_batch_size": 4,
    "num_gpus": 0,
    "max_length": 128,
    "bf16": False,
    "deepspeed": None,
    "gradient_checkpointing": False,
    "sampling_strategy": "random",
    "seed": 0,
}
STEPS = 20  # the kill at step 3 must land mid-run: 17 steps (~1 s here) of margin
TIMEOUT_S = 900
TWO_RANKS = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def config_json(**train_over) -> str:
    raw = load_yaml("config/config.yaml")
    return json.dumps({"train": raw["train"] | TRAIN | train_over, "base": raw["bases"]["mini"]})


def stage_args(tiny: dict, out: Path, cfg: str, *extra: str) -> list[str]:
    flags = {
        "--config": cfg,
        "--data": tiny["data"],
        "--base-model": tiny["base"],
        "--out": out,
        "--metrics": out.parent / "metrics.json",
        "--wildcards": "base=mini,variant=sft",
    }
    return ["-m", "aft.stages.train_model", *(str(x) for flag in flags.items() for x in flag), *extra]


def env(**extra: str) -> dict[str, str]:
    """No MLflow unless asked (tracking is tested elsewhere); one OpenMP thread, as torchrun sets per rank:
    two threads on a 2-core machine shared with other jobs made a step ~75x slower (1.3 s vs 0.017 s)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return clean | {"OMP_NUM_THREADS": "1"} | extra


def run(cmd: list[str], cwd: Path, environ: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.time()
    proc = subprocess.run(
        cmd, cwd=cwd, env=environ or env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return time.time() - started, proc.stdout + proc.stderr


def metrics(out: Path) -> dict:
    return json.loads((out.parent / "metrics.json").read_text())["metrics"]


def history(out: Path) -> list[dict]:
    """The per-step rows the stage recorded (metrics.json's history: loss, num_tokens, ...), in order."""
    return json.loads((out.parent / "metrics.json").read_text())["history"]


@pytest.fixture(scope="module")
def single(tiny) -> dict:
    """The uninterrupted single-process run (checkpoint every step, as the resume test does)."""
    out = tiny["root"] / "single" / "model"
    out.parent.mkdir()
    wall, log = run([sys.executable, *stage_args(tiny, out, config_json(), "--save-steps", "1")], out.parent)
    return {"out": out, "metrics": metrics(out), "history": history(out), "wall_s": wall, "log": log}


def reload(out: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    return (
        AutoModelForCausalLM.from_pretrained(out),
        AutoTokenizer.from_pretrained(out),
        GenerationConfig.from_pretrained(out),
    )


def weights_moved(out: Path, base: Path) -> float:
    """Largest absolute change of any weight between the base and the trained model."""
    from transformers import AutoModelForCausalLM

    trained = dict(AutoModelForCausalLM.from_pretrained(out).named_parameters())
    start = dict(AutoModelForCausalLM.from_pretrained(base).named_parameters())
    assert trained.keys() == start.keys()
    for name, p in trained.items():
        assert p.shape == start[name].shape, name  # whole tensors, not ZeRO shards
    return max((trained[n] - start[n]).abs().max().item() for n in trained)


def test_single_process_trains_saves_and_reloads(tiny, single):
    out, m = single["out"], single["metrics"]
    model, tok, gen = reload(out)
    assert (out / "chat_template.jinja").read_text() == load_chat_template("miniature")
    assert tok.chat_template == load_chat_template("miniature")
    assert gen.eos_token_id == tok.convert_tokens_to_ids("<|end|>")
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|end|>")
    assert not checkpoint_dir(out).exists()  # deleted once the model is saved
    assert weights_moved(out, tiny["base"]) > 1e-3

    cfg = TrainConfig.model_validate(json.loads(config_json())["train"])
    assert m["train_steps"] == STEPS == optimizer_steps(cfg, ROWS, ranks=1)
    assert m["train_samples"] == ROWS and m["train_rows_dropped"] == 0
    assert m["train_world_size"] == 1 and m["train_resumed_from_step"] == 0
    assert math.isfinite(m["train_loss"]) and 0 <= m["final_token_accuracy"] <= 1
    assert m["train_tokens"] > ROWS * 10  # every row's tokens were seen (each conversation is > 10 tokens)

    losses = [row["loss"] for row in single["history"]]
    assert len(losses) == STEPS  # logged every step
    assert losses[-1] < losses[0] - 0.3
    assert m["final_loss"] == pytest.approx(losses[-1], rel=1e-3)
    # train_loss is the Trainer's: the mean over the steps
    # the log has readable progress lines, not the Trainer's step dicts
    assert "step 1/20 (5%), loss" in single["log"] and "{'loss'" not in single["log"]
    assert m["train_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-3)
    # metrics.json keeps the provenance and the per-stage config hashes
    saved = json.loads((out.parent / "metrics.json").read_text())
    assert saved["stage"] == "train_model"
    assert {"config_hash.train", "config_hash.base", "version_trl"} <= set(saved["provenance"])


def test_deepspeed_zero3_cpu_offload_on_two_ranks(tiny, single, tmp_path):
    from mlflow.tracking import MlflowClient

    from aft.pipeline.tracking import ensure_store

    out = tmp_path / "model"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ensure_store(uri)  # created once before the ranks start (concurrent creation can corrupt it)
    ds = str(ROOT / "config" / "deepspeed" / "zero3_cpu_offload.json")
    cfg = config_json(deepspeed=ds, per_device_batch_size=2, num_train_epochs=0.5)  # 4 steps
    cmd = [*TWO_RANKS, *stage_args(tiny, out, cfg)]
    run(cmd, tmp_path, env(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME="train-test"))

    m = metrics(out)
    assert m["train_world_size"] == 2
    assert (
        m["train_steps"]
        == 4
        == optimizer_steps(TrainConfig.model_validate(json.loads(cfg)["train"]), ROWS, 2)
    )
    assert math.isfinite(m["train_loss"])
    # the same 8 rows make the first global batch on 2 ranks x 2 rows x 2 accumulation as on 1 x 4 x 2
    steps = history(out)
    assert steps[0]["loss"] == pytest.approx(single["history"][0]["loss"], rel=1e-4)
    assert steps[-1]["loss"] < steps[0]["loss"]

    model, tok, gen = reload(out)
    assert gen.eos_token_id == tok.convert_tokens_to_ids("<|end|>")
    assert (out / "chat_template.jinja").read_text() == load_chat_template("miniature")
    assert weights_moved(out, tiny["base"]) > 1e-4  # ZeRO-3 gathered the trained weights for the save
    assert all(p.isfinite().all() for p in model.parameters())

    # only rank 0 logged: one MLflow run, with the loss curve
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("train-test").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["train_world_size"] == 2
    # streamed by the Trainer's MLflow integration, step by step; no series has a stray end-of-job point
    run_id = runs[0].info.run_id
    assert [h.step for h in client.get_metric_history(run_id, "loss")] == [1, 2, 3, 4]
    assert [h.step for h in client.get_metric_history(run_id, "num_tokens")] == [1, 2, 3, 4]
    assert [h.step for h in client.get_metric_history(run_id, "train_loss")] == [4]
    assert runs[0].data.metrics["train_loss"] == pytest.approx(m["train_loss"])
    assert not any(k.startswith(("output_dir", "per_device")) for k in runs[0].data.params)


def test_batch_rebalance_on_two_ranks_under_deepspeed(tiny, tmp_path):
    """The miniature's sampling (random global batches split by length) with 2 ranks x 2 accumulation
    micro-batches under ZeRO-3: the sampler is rank-aware; the run makes the configured steps and learns."""
    out = tmp_path / "model"
    ds = str(ROOT / "config" / "deepspeed" / "zero3_cpu_offload.json")
    cfg = config_json(
        deepspeed=ds, per_device_batch_size=2, num_train_epochs=1, sampling_strategy="batch_rebalance"
    )
    run([*TWO_RANKS, *stage_args(tiny, out, cfg)], tmp_path)

    m = metrics(out)
    assert m["train_world_size"] == 2 and m["train_samples"] == ROWS
    assert (
        m["train_steps"]
        == 8
        == optimizer_steps(TrainConfig.model_validate(json.loads(cfg)["train"]), ROWS, 2)
    )
    steps = history(out)
    assert len(steps) == 8 and all(math.isfinite(s["loss"]) for s in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert weights_moved(out, tiny["base"]) > 1e-4


def kill_at_step_3_and_rerun(tiny: dict, out: Path, cfg: str) -> tuple[dict, str]:
    """Start the stage (checkpoint every step), SIGKILL it once checkpoint-3 is complete, rerun it."""
    cmd = [sys.executable, *stage_args(tiny, out, cfg, "--save-steps", "1")]
    done = checkpoint_dir(out) / "checkpoint-3" / "trainer_state.json"
    with open(out.parent / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=out.parent, env=env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + TIMEOUT_S
        while not done.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    assert not out.exists() and not (out.parent / "metrics.json").exists()
    _, log = run(cmd, out.parent)
    return metrics(out), log


def test_killed_run_resumes_from_its_last_checkpoint(tiny, single, tmp_path):
    out = tmp_path / "model"
    m, log = kill_at_step_3_and_rerun(tiny, out, config_json())
    ref = single["metrics"]
    assert 3 <= m["train_resumed_from_step"] < STEPS
    assert "resume from" in log and "checkpoint-" in log
    assert m["train_steps"] == ref["train_steps"] == STEPS
    # RNG, optimizer and data order restored: the resumed run ends where the uninterrupted one did
    assert m["final_loss"] == pytest.approx(ref["final_loss"], rel=1e-5)
    assert m["train_tokens"] == ref["train_tokens"]  # the token count carried over the resume
    # the record has every step, those before the kill restored from the checkpoint
    assert [r["step"] for r in history(out)] == list(range(1, STEPS + 1))
    assert not checkpoint_dir(out).exists()


def test_killed_batch_rebalance_run_ends_where_the_uninterrupted_one_does(tiny, tmp_path):
    """The miniature's sampler (a batch sampler, seeded by transformers) resumes at the right micro-batch."""
    cfg = config_json(sampling_strategy="batch_rebalance")
    (tmp_path / "whole").mkdir()
    (tmp_path / "killed").mkdir()
    run([sys.executable, *stage_args(tiny, tmp_path / "whole" / "model", cfg, "--save-steps", "1")], tmp_path)
    ref = metrics(tmp_path / "whole" / "model")
    m, _ = kill_at_step_3_and_rerun(tiny, tmp_path / "killed" / "model", cfg)
    assert 3 <= m["train_resumed_from_step"] < STEPS == m["train_steps"] == ref["train_steps"]
    assert m["final_loss"] == pytest.approx(ref["final_loss"], rel=1e-5)
    assert m["train_tokens"] == ref["train_tokens"]
