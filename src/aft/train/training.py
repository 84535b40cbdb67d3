"""Training helpers for the `train_model` stage: our TrainConfig -> `trl.SFTConfig` kwargs, the project
chat template on the tokenizer, checkpoint bookkeeping for resume, and the metrics we keep.

Pure except where a function takes a tokenizer or trainer state; no torch/TRL import at module level.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from aft.method.chat_templates import END_OF_TURN, load_chat_template
from aft.pipeline.config import BaseModelConfig, TrainConfig, section_json

CHECKPOINT_SUFFIX = ".checkpoints"
FINGERPRINT_FILE = "aft_fingerprint.json"
SAVES_PER_RUN = 10  # checkpoints per run: a killed job loses at most ~1/10 of its steps
# pad tokens some base vocabularies reserve but do not set (Llama 3.x); tried before falling back to eos
RESERVED_PAD_TOKENS = ("<|finetune_right_pad_id|>", "<|pad|>", "<pad>", "[PAD]")


def checkpoint_dir(out: Path) -> Path:
    """`<out>.checkpoints`: beside the output, so a rerun finds it but the final output stays clean."""
    out = Path(out)
    return out.with_name(out.name + CHECKPOINT_SUFFIX)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The highest `checkpoint-N` in `folder` that was written to the end: the Trainer writes
    trainer_state.json last, so a job killed mid-save leaves it missing or cut short."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    steps = sorted(
        (int(p.name.removeprefix("checkpoint-")), p)
        for p in folder.glob("checkpoint-*")
        if p.name.removeprefix("checkpoint-").isdigit()
    )
    for step, path in reversed(steps):
        try:
            state = json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        if state.get("global_step") == step:
            return path
    return None


def checkpoint_step(checkpoint: Path | str | None) -> int:
    return int(Path(checkpoint).name.removeprefix("checkpoint-")) if checkpoint else 0


def world_size(num_gpus: int) -> int:
    """Data-parallel ranks the config assumes: one per GPU, one process on CPU."""
    return max(num_gpus, 1)


def accumulation_steps(cfg: TrainConfig, ranks: int) -> int:
    """Gradient accumulation that keeps the global batch at cfg.global_batch_size on `ranks` processes."""
    per_step = cfg.per_device_batch_size * ranks
    if cfg.global_batch_size % per_step:
        raise ValueError(
            f"global_batch_size={cfg.global_batch_size} is not divisible by per_device_batch_size x ranks"
            f" = {cfg.per_device_batch_size} x {ranks}: launch max(num_gpus, 1) processes"
        )
    return cfg.global_batch_size // per_step


def optimizer_steps(cfg: TrainConfig, num_examples: int, ranks: int) -> int:
    """Optimizer steps the Trainer will run (as transformers counts them: a partial last step counts)."""
    micro_batches = math.ceil(num_examples / (cfg.per_device_batch_size * ranks))  # per rank
    per_epoch = max(math.ceil(micro_batches / accumulation_steps(cfg, ranks)), 1)
    return math.ceil(per_epoch * cfg.num_train_epochs)


def default_save_steps(total_steps: int) -> int:
    return max(1, math.ceil(total_steps / SAVES_PER_RUN))


def sft_config_kwargs(
    cfg: TrainConfig,
    out_dir: Path | str,
    save_steps: int = 50,
    logging_steps: int = 1,
    ranks: int | None = None,
    report_to: str = "none",
) -> dict:
    """Keyword arguments for `trl.SFTConfig`; `out_dir` is where the Trainer writes its checkpoints.

    `ranks` is the number of processes actually launched (default: what the config assumes); gradient
    accumulation follows it so the global batch stays as configured. `report_to="mlflow"` streams each
    logged step into the job's open MLflow run (the Trainer's own integration), "none" logs nowhere.
    """
    on_gpu = cfg.num_gpus > 0
    return dict(
        output_dir=str(out_dir),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        # transformers 5 dropped `warmup_ratio`: a float in [0, 1) passed as warmup_steps is the ratio
        warmup_steps=float(cfg.warmup_ratio),
        num_train_epochs=float(cfg.num_train_epochs),
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=accumulation_steps(cfg, ranks or world_size(cfg.num_gpus)),
        max_length=cfg.max_length,
        packing=False,  # one conversation per row keeps the assistant mask exact and the step count fixed
        assistant_only_loss=True,
        bf16=cfg.bf16,  # TRL's default is bf16=True: always explicit
        fp16=False,
        # use_cpu would make TrainingArguments skip DeepSpeed's process-group setup; DeepSpeed without a GPU
        # selects its CPU accelerator itself
        use_cpu=not on_gpu and not cfg.deepspeed,
        deepspeed=cfg.deepspeed,
        gradient_checkpointing=cfg.gradient_checkpointing,  # TRL's default is True: always explicit
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        train_sampling_strategy=cfg.sampling_strategy,
        seed=cfg.seed,
        data_seed=cfg.seed,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=1,  # only the latest checkpoint is kept: it exists to resume a killed job
        save_only_model=False,  # resuming needs optimizer, scheduler and RNG states
        eval_strategy="no",
        logging_strategy="steps",
        logging_steps=logging_steps,
        logging_first_step=True,
        report_to=report_to,
        disable_tqdm=True,  # progress bars garble log files; the printer callback logs each step
        dataloader_num_workers=0,  # tokenised rows are in memory; worker processes only cost on CPU
        dataloader_pin_memory=on_gpu,
        dataset_num_proc=None,
    )


def prepare_tokenizer(tokenizer, family: str):
    """Set the project chat template of `family` and a pad token if the base has none; returns it."""
    eot = END_OF_TURN[family]
    if tokenizer.convert_tokens_to_ids(eot) in (None, tokenizer.unk_token_id):
        raise ValueError(f"the {family} end-of-turn token {eot!r} is not in the tokenizer's vocabulary")
    tokenizer.chat_template = load_chat_template(family)
    if tokenizer.pad_token is None:
        vocab = tokenizer.get_vocab()
        tokenizer.pad_token = next((t for t in RESERVED_PAD_TOKENS if t in vocab), tokenizer.eos_token)
    return tokenizer


def end_of_turn_ids(tokenizer, family: str) -> int | list[int]:
    """What generation_config.eos_token_id gets: the family's end of turn (and the eos, if it differs)."""
    eot = tokenizer.convert_tokens_to_ids(END_OF_TURN[family])
    eos = tokenizer.eos_token_id
    return eot if eos in (None, eot) else [eot, eos]


def fingerprint(
    train: TrainConfig, base: BaseModelConfig, base_model: str, data_sha256: str, ranks: int
) -> dict:
    """What a checkpoint was trained from; a checkpoint is resumed only when all of it matches
    (ZeRO shards also tie it to the number of ranks)."""
    raw = {
        "train": json.loads(section_json(train)),
        "base": json.loads(section_json(base)),
        "base_model": base_model,
        "data_sha256": data_sha256,
        "ranks": ranks,
    }
    return raw | {"hash": hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]}


def history_rows(log_history: list[dict], resumed_from_step: int = 0) -> list[dict]:
    """Per-logging-step rows from `trainer.state.log_history` (the end-of-run summary row dropped).

    TRL counts `num_tokens` from zero in every process, so after a resume the count at the resumed
    step is added back to the later rows."""
    rows = []
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue
        row = {"step": int(entry["step"])}
        for key in ("loss", "learning_rate", "grad_norm", "mean_token_accuracy", "entropy", "num_tokens"):
            if isinstance(entry.get(key), int | float):
                row[key] = float(entry[key])
        rows.append(row)
    if resumed_from_step:
        before = [r for r in rows if r["step"] <= resumed_from_step and "num_tokens" in r]
        offset = before[-1]["num_tokens"] if before else 0.0
        for r in rows:
            if r["step"] > resumed_from_step and "num_tokens" in r:
                r["num_tokens"] += offset
    return rows


def train_metrics(
    history: list[dict], train_output_metrics: dict, global_step: int, rows: int, kept: int
) -> dict:
    """The stage's metrics: the Trainer's `train_loss`, the final logged loss and accuracy, tokens seen,
    steps, runtime.

    `train_loss` has one meaning everywhere (the job's log, metrics.json, MLflow): the Trainer's own, the
    mean loss over the steps this process trained (after a resume: the steps since). `final_loss` is
    the last logged step's loss. The names differ from the per-step series the Trainer streams to
    MLflow (`loss`, `num_tokens`, `mean_token_accuracy`), so no series gets a stray end-of-job point.
    `rows` are the data rows, `kept` those TRL kept (it drops rows left without assistant tokens)."""
    last = history[-1] if history else {}
    metrics = {
        "train_loss": float(train_output_metrics.get("train_loss", float("nan"))),
        "final_loss": last.get("loss", float("nan")),
        "train_runtime_s": round(float(train_output_metrics.get("train_runtime", 0.0)), 3),
        "train_samples": kept,
        "train_rows_dropped": rows - kept,
        "train_steps": global_step,
    }
    if "num_tokens" in last:
        metrics["train_tokens"] = last["num_tokens"]
    if "mean_token_accuracy" in last:
        metrics["final_token_accuracy"] = last["mean_token_accuracy"]
    return metrics
