"""Stage `train_reward_model`: a reward model for best-of-N, trained here with TRL's RewardTrainer on the
UltraFeedback-schema file's ratings (aft.method.preferences: every pair of a query's completions whose
ratings differ, the higher-rated chosen), from a base with a new scalar head; then its accuracy on the
pairs of held-out queries, scored the way best-of-N scores (aft.gen.reward).

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.train_reward_model --config CFG --ultrafeedback JSONL --base-model DIR_OR_HUB_ID \
        --out DIR --heldout JSONL --metrics FILE
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from pathlib import Path

from aft.gen.reward import RewardScorer
from aft.method.preferences import pair_accuracy, preference_pairs, split_heldout
from aft.pipeline.config import BaseModelConfig, RewardTrainConfig
from aft.pipeline.io import read_jsonl, write_jsonl
from aft.pipeline.progress import readable_training_log
from aft.pipeline.stage import Outcome, run_stage
from aft.pipeline.tracking import job_run_active
from aft.train.training import history_rows, prepare_tokenizer

log = logging.getLogger(__name__)


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ultrafeedback", type=Path, required=True, help="prepare_data's ultrafeedback.jsonl")
    p.add_argument("--base-model", required=True, help="the base's model folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the reward model + tokenizer")
    p.add_argument("--heldout", type=Path, required=True, help="per held-out pair: both scores")


def train(rt: RewardTrainConfig, base: BaseModelConfig, base_model: str, pairs: list[dict], out: Path):
    """Fit the scalar head and the body on `pairs`; save model and tokenizer to `out` (whole or not at
    all); returns the Trainer's metrics and logged history."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl import RewardConfig, RewardTrainer

    os.environ["MLFLOW_MAX_LOG_PARAMS"] = "0"  # the run already has the config sections as params
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(base_model), base.chat_template)
    set_seed(rt.seed)  # the new head's initialisation
    model = AutoModelForSequenceClassification.from_pretrained(base_model, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    staging = out.with_name(out.name + ".saving")
    args = RewardConfig(
        output_dir=str(staging),
        learning_rate=rt.learning_rate,
        num_train_epochs=rt.num_train_epochs,
        per_device_train_batch_size=rt.batch_size,
        max_length=rt.max_length,
        seed=rt.seed,
        lr_scheduler_type="linear",
        logging_steps=10,
        save_strategy="no",  # minutes on one device: a killed job starts over
        report_to="mlflow" if job_run_active() else "none",
        bf16=False,
        dataset_num_proc=None,
        disable_tqdm=True,  # a bar in a log file is one long line: training_progress logs lines instead
    )
    data = Dataset.from_list([{"chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs])
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    readable_training_log(trainer)
    result = trainer.train()
    shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(str(staging))
    tokenizer.save_pretrained(str(staging))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return result.metrics, history_rows(trainer.state.log_history), len(trainer.train_dataset)


def run(
    rt: RewardTrainConfig,
    base: BaseModelConfig,
    ultrafeedback: Path,
    base_model: str,
    out: Path,
    heldout: Path,
) -> tuple[dict, list[dict]]:
    started = time.time()
    pairs = preference_pairs(read_jsonl(ultrafeedback), rt.rating)
    train_pairs, held = split_heldout(pairs, rt.heldout_fraction, rt.seed)
    if not train_pairs or not held:
        raise SystemExit(
            f"{len(pairs)} preference pairs give {len(train_pairs)} to train on and {len(held)} held out"
            f" (reward_models.*.train.heldout_fraction={rt.heldout_fraction}): both must be non-empty"
        )
    log.info("train_reward_model: %d pairs, %d train, %d held out", len(pairs), len(train_pairs), len(held))
    trainer_metrics, history, kept = train(rt, base, base_model, train_pairs, out)
    scorer = RewardScorer(str(out), "float32", 64, rt.max_length)
    chosen = scorer.score([p["chosen"] for p in held])
    rejected = scorer.score([p["rejected"] for p in held])
    write_jsonl(
        heldout,
        [
            {
                "id": p["id"],
                "chosen_score": c.score,
                "rejected_score": r.score,
                "correct": int(c.score > r.score),
            }
            for p, c, r in zip(held, chosen, rejected, strict=True)
        ],
    )
    accuracy = pair_accuracy([c.score for c in chosen], [r.score for r in rejected])
    log.info("train_reward_model: held-out accuracy %.3f on %d pairs", accuracy, len(held))
    metrics = {
        "n_pairs": len(pairs),
        "n_train_pairs": len(train_pairs),
        "n_train_pairs_kept": kept,  # after TRL drops pairs longer than max_length
        "n_heldout_pairs": len(held),
        "n_heldout_queries": len({p["query_id"] for p in held}),
        "heldout_accuracy": accuracy,
        "train_loss": trainer_metrics.get("train_loss"),
        "train_runtime_s": trainer_metrics.get("train_runtime"),
        "wall_s": time.time() - started,
    }
    return metrics, history


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        metrics, history = run(
            cfg["reward_train"], cfg["base"], a.ultrafeedback, a.base_model, a.out, a.heldout
        )
        files = sorted(f for f in a.out.rglob("*") if f.is_file())
        return Outcome(metrics, [*files, a.heldout], history=history)

    models = {"reward_train": RewardTrainConfig, "base": BaseModelConfig}
    run_stage("train_reward_model", __doc__, argv, arguments, models, body)


if __name__ == "__main__":
    main()
