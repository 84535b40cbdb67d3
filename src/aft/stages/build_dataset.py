"""Stage `build_dataset`: the training set of one (base, variant): SFT, AFT-off or AFT-on.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.build_dataset --config CFG --variant V --proposals JSONL --targets JSONL \
        --tokenizer DIR_OR_ID --out JSONL --metrics FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aft.method.chat_templates import load_chat_template
from aft.method.dataset import aggregation_loss, build_examples, filter_by_length, token_lengths
from aft.pipeline.config import BaseModelConfig, DatasetConfig
from aft.pipeline.io import read_jsonl, write_jsonl
from aft.pipeline.stage import Outcome, read_text_input, run_stage


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", required=True, choices=["sft", "aft_off", "aft_on"])
    p.add_argument("--proposals", type=Path, required=True)
    p.add_argument("--targets", type=Path, required=True)
    p.add_argument("--tokenizer", required=True, help="the base model (its tokenizer measures lengths)")
    p.add_argument("--out", type=Path, required=True)


def run(
    dc: DatasetConfig,
    base: BaseModelConfig,
    variant: str,
    proposals: Path,
    targets: Path,
    tokenizer: str,
    out: Path,
) -> dict:
    """Build, length-filter and write the training rows; returns the counts."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    tok.chat_template = load_chat_template(base.chat_template)
    target_of = {t["id"]: t["target"] for t in read_jsonl(targets)}
    examples, counts = build_examples(
        variant,
        read_jsonl(proposals),
        target_of,
        read_text_input("dataset.template_file", dc.template_file),
        dc.direct_fraction,
        dc.seed,
    )
    lengths = token_lengths(tok, [e["messages"] for e in examples])
    kept, length_counts = filter_by_length(examples, lengths, dc.max_length)
    if not kept:
        raise SystemExit(
            f"no training example left (dropped {length_counts['dropped_too_long']} longer than"
            f" {dc.max_length} tokens)"
        )
    problem = aggregation_loss(examples, kept, dc.max_dropped_fraction)
    if problem:  # refused here, before any training
        raise SystemExit(f"{variant}: {problem}")
    examples = kept
    counts.update(length_counts)
    return dict(counts) | {
        "dropped_too_long": length_counts["dropped_too_long"],
        "examples_out": write_jsonl(out, examples),
        "kept_aggregation": sum(e["kind"] == "aggregation" for e in examples),
        "kept_direct": sum(e["kind"] == "direct" for e in examples),
    }


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        metrics = run(cfg["dataset"], cfg["base"], a.variant, a.proposals, a.targets, a.tokenizer, a.out)
        return Outcome(metrics, [a.out])

    run_stage(
        "build_dataset", __doc__, argv, arguments, {"dataset": DatasetConfig, "base": BaseModelConfig}, body
    )


if __name__ == "__main__":
    main()
