"""Stage `train_model`: fine-tune a base model on chat rows with TRL's SFTTrainer (SFT and AFT alike;
only the data differs), loss on assistant tokens only, DeepSpeed when the config names a JSON file.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.train_model --config CFG --data TRAIN_JSONL --base-model PATH_OR_HUB_ID \
        --out DIR --metrics FILE [--wildcards k=v,...] [--save-steps N]
    torchrun --nproc_per_node N -m aft.stages.train_model ...      (several GPUs; DeepSpeed needs a launcher)
    accelerate launch -m aft.stages.train_model ...

CFG is a JSON object with sections `train` (TrainConfig) and `base` (BaseModelConfig). A killed job resumes
from the latest checkpoint in `<out>.checkpoints/` (written every --save-steps optimizer steps, default a
tenth of the run), which is deleted once the final model is saved and the job's metrics.json and MLflow
run are written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

from aft.pipeline.config import BaseModelConfig, TrainConfig
from aft.pipeline.io import read_jsonl, sha256_file, write_json
from aft.pipeline.progress import readable_training_log
from aft.pipeline.stage import Outcome, run_stage
from aft.pipeline.tracking import job_run_active
from aft.train.training import (
    FINGERPRINT_FILE,
    accumulation_steps,
    checkpoint_dir,
    checkpoint_step,
    default_save_steps,
    end_of_turn_ids,
    fingerprint,
    history_rows,
    last_complete_checkpoint,
    optimizer_steps,
    prepare_tokenizer,
    sft_config_kwargs,
    train_metrics,
    world_size,
)

STAGE = "train_model"
log = logging.getLogger("aft")


def _launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun and accelerate launch


def _deepspeed_cpu_state() -> None:
    """Set up the process group for DeepSpeed without CUDA (the miniature's ZeRO test).

    TrainingArguments starts DeepSpeed without a backend name; without CUDA accelerate then records no
    backend and reports a single process while DeepSpeed runs on all of them. Naming gloo here and
    passing `use_configured_state` makes both agree.
    """
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        PartialState(backend="gloo")
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]


def _resume_point(ckpt: Path, fp: dict, is_main: bool) -> Path | None:
    """The last complete checkpoint in `ckpt` if it was trained from the same inputs, else None.

    Rank 0 also tidies: it drops checkpoints a kill left half-written, and the whole folder when its
    inputs differ (a changed config or data must not resume from the old run)."""
    stamp = ckpt / FINGERPRINT_FILE
    last = last_complete_checkpoint(ckpt)
    same = stamp.is_file() and json.loads(stamp.read_text()).get("hash") == fp["hash"]
    if last and same:
        if is_main:
            for partial in ckpt.glob("checkpoint-*"):
                if checkpoint_step(partial) > checkpoint_step(last):
                    log.warning("dropping %s: written only in part", partial)
                    shutil.rmtree(partial)
        return last
    if is_main:
        if ckpt.exists():
            log.warning("discarding %s: no complete checkpoint from these inputs", ckpt)
            shutil.rmtree(ckpt)
        ckpt.mkdir(parents=True)
        write_json(stamp, fp)
    return None


def run(
    train: TrainConfig, base: BaseModelConfig, data: Path, base_model: str, out: Path, save_steps: int | None
) -> tuple[dict, list[dict], bool]:
    """Train and save to `out`; returns (metrics, history, is_main_process)."""
    import torch
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = read_jsonl(data)
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in rows])
    ranks = _launched_world_size()
    total_steps = optimizer_steps(train, len(dataset), ranks)
    save_steps = save_steps or default_save_steps(total_steps)
    ckpt = checkpoint_dir(out)
    # rank 0 streams each logged step into the job's MLflow run, which run_stage opened; the run already
    # has the config sections as params, and the Trainer's ~150 arguments would only repeat them
    os.environ["MLFLOW_MAX_LOG_PARAMS"] = "0"
    report_to = "mlflow" if job_run_active() else "none"
    kwargs = sft_config_kwargs(train, ckpt, save_steps=save_steps, ranks=ranks, report_to=report_to)
    if train.deepspeed and not torch.cuda.is_available():
        _deepspeed_cpu_state()
        kwargs["accelerator_config"] = {"use_configured_state": True}
    args = SFTConfig(**kwargs)  # sets up the process group
    state = PartialState()
    if state.num_processes != ranks:
        raise RuntimeError(f"{ranks} processes launched but accelerate sees {state.num_processes}")
    is_main = state.is_main_process
    if not is_main:
        log.setLevel(logging.WARNING)  # one copy of the progress lines, from rank 0

    fp = fingerprint(train, base, base_model, sha256_file(data), ranks)
    with state.main_process_first():  # rank 0 cleans or creates the folder before the others look
        resume = _resume_point(ckpt, fp, is_main)
    log.info(
        "train_model: %d rows, %d optimizer steps, save every %d, world %d, resume from %s",
        len(dataset),
        total_steps,
        save_steps,
        state.num_processes,
        resume,
    )

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(base_model), base.chat_template)
    # DeepSpeed keeps fp32 master weights, so bf16 storage is safe there; plain DDP/CPU trains in fp32
    # (bf16 then means autocast only).
    dtype = torch.bfloat16 if train.bf16 and train.deepspeed else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        base_model, dtype=dtype, attn_implementation=train.attn_implementation
    )

    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    readable_training_log(trainer)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    # vLLM stops at generation_config.eos_token_id: make it the end of an assistant turn
    trainer.model.generation_config.eos_token_id = end_of_turn_ids(tokenizer, base.chat_template)
    trainer.model.generation_config.pad_token_id = tokenizer.pad_token_id
    staging = out.with_name(out.name + ".saving")
    if is_main:
        shutil.rmtree(staging, ignore_errors=True)  # left by a job killed while saving
    state.wait_for_everyone()
    trainer.save_model(str(staging))  # all ranks: ZeRO-3 gathers the shards; rank 0 writes
    if is_main:
        tokenizer.save_pretrained(str(staging))  # with chat_template.jinja
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)  # `out` appears complete or not at all
    # the checkpoints stay until metrics.json and the MLflow run are written (Outcome.cleanup): a kill
    # while logging (hashing an 8B model takes minutes) resumes from the last one, not from step 0
    state.wait_for_everyone()

    history = history_rows(trainer.state.log_history, checkpoint_step(resume))
    metrics = train_metrics(
        history, result.metrics, trainer.state.global_step, len(rows), len(trainer.train_dataset)
    )
    steps_run = trainer.state.global_step - checkpoint_step(resume)
    metrics |= {
        "train_world_size": state.num_processes,
        "train_resumed_from_step": checkpoint_step(resume),
        "train_step_time_s": round(metrics["train_runtime_s"] / max(steps_run, 1), 4),
    }
    return metrics, history, is_main


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="training rows (jsonl with `messages`)")
    p.add_argument("--base-model", required=True, help="local folder or hub id of the base model")
    p.add_argument("--out", type=Path, required=True, help="folder for the fine-tuned model + tokenizer")
    p.add_argument(
        "--save-steps", type=int, default=None, help="checkpoint every N steps (default: 1/10 run)"
    )


def check_launch(train: TrainConfig) -> None:
    """The global batch must split over the launched ranks; say so when they differ from the config."""
    launched = _launched_world_size()
    try:
        accumulation_steps(train, launched)
    except ValueError as err:
        raise SystemExit(f"train_model: {err}") from None
    if launched != world_size(train.num_gpus) and os.environ.get("RANK", "0") == "0":
        # gradient accumulation follows the launched ranks, so the global batch is still as configured
        log.warning(
            "launched %d processes while train.num_gpus=%d assumes %d; gradient accumulation %d keeps the"
            " global batch at %d",
            launched,
            train.num_gpus,
            world_size(train.num_gpus),
            accumulation_steps(train, launched),
            train.global_batch_size,
        )


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome | None:
        _quiet_progress_bars()
        if cfg["train"].seed is None:
            raise SystemExit("train_model: --config has no train.seed (the workflow sets it from grid.seeds)")
        check_launch(cfg["train"])
        metrics, history, is_main = run(cfg["train"], cfg["base"], a.data, a.base_model, a.out, a.save_steps)
        if not is_main:
            return None  # rank 0 reports
        return Outcome(metrics, [a.out], history=history, cleanup=[checkpoint_dir(a.out)])

    run_stage(STAGE, __doc__, argv, arguments, {"train": TrainConfig, "base": BaseModelConfig}, body)
    _close_process_group()


def _quiet_progress_bars() -> None:
    """Progress bars garble log files; the Trainer's per-step log lines say the same."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.disable_progress_bar()


def _close_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
