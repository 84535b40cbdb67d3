"""Stage `build_base`: build the miniature base model (BPE tokenizer + tiny Llama) and pretrain it.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.build_base --config CFG --corpus TXT --extra-text FILE [FILE ...]
        --out DIR --metrics FILE
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from aft.miniature.basemodel import build_tokenizer, init_model, pretrain, save_base
from aft.pipeline.config import BaseModelConfig
from aft.pipeline.stage import Outcome, run_stage

log = logging.getLogger("aft")


def summarize(history: list[dict], tokens_per_step: int, train_seconds: float) -> dict:
    """Metrics of a pretraining run from its per-step loss history."""
    tail = history[-max(1, len(history) // 10) :]  # the last 10% of steps
    tokens = len(history) * tokens_per_step
    return {
        "final_loss": round(sum(r["loss"] for r in tail) / len(tail), 5),
        "first_loss": round(history[0]["loss"], 5),
        "tokens_seen": tokens,
        "train_tokens_per_s": round(tokens / max(train_seconds, 1e-9), 1),
    }


def thin(history: list[dict], max_rows: int = 100) -> list[dict]:
    """The loss curve for MLflow: means over blocks of consecutive steps, at most `max_rows` rows
    (one MLflow call per row; a row per step would cost seconds on a sqlite store)."""
    size = -(-len(history) // max_rows)  # ceil
    rows = []
    for i in range(0, len(history), size):
        block = history[i : i + size]
        rows.append({"step": block[-1]["step"], "loss": sum(r["loss"] for r in block) / len(block)})
    return rows


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", type=Path, required=True, help="pretraining corpus (plain text)")
    p.add_argument(
        "--extra-text",
        type=Path,
        nargs="*",
        default=[],
        help="texts the tokenizer also learns merges from (templates, ICL prompt); not pretrained on",
    )
    p.add_argument("--out", type=Path, required=True, help="model folder to write (save_pretrained)")


def run(
    base: BaseModelConfig, corpus_file: Path, extra_text: list[Path], out: Path
) -> tuple[dict, list[dict]]:
    """Build the tokenizer and model, pretrain, save to `out`; returns (metrics, loss history)."""
    if base.source != "build" or base.build is None:
        raise SystemExit(
            f"build_base builds a base model only for source='build'; this base has source={base.source!r}"
            f" (model={base.model!r}), which is loaded from the hub, not built"
        )
    build = base.build
    corpus = corpus_file.read_text(encoding="utf-8")
    extra = [f.read_text(encoding="utf-8") for f in extra_text]
    tokenizer = build_tokenizer([corpus, *extra], build.vocab_size)
    log.info("tokenizer: %d tokens (asked for %d)", len(tokenizer), build.vocab_size)
    model = init_model(tokenizer, build)
    n_params = sum(t.numel() for t in model.parameters())
    log.info("model: %d parameters", n_params)

    t0 = time.perf_counter()
    history = pretrain(model, tokenizer, corpus, build)
    train_seconds = time.perf_counter() - t0
    save_base(model, tokenizer, out)
    metrics = {
        "num_parameters": n_params,
        "vocab_size": len(tokenizer),
        **summarize(history, build.batch_size * build.seq_len, train_seconds),
    }
    return metrics, history


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        metrics, history = run(cfg["base"], a.corpus, a.extra_text, a.out)
        return Outcome(metrics, [a.out], history=thin(history))

    run_stage("build_base", __doc__, argv, arguments, {"base": BaseModelConfig}, body)


if __name__ == "__main__":
    main()
