"""Analysis: what the aggregation layers of each trained model did on the miniature's evaluation set.

Usage:
    python benchmarks/aggregation_traces.py [--workdir .] [--base mini]
Reads results/generate_answers/<base>/<variant>/agg/exact_match.jsonl and the gold answers, prints one
row per variant: proposal accuracy, majority vote, any-correct, the aggregator's copying of a strict
majority, and the final accuracy (all %, over the evaluation queries).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aft.miniature.traces import trace_stats
from aft.pipeline.io import read_jsonl

COLUMNS = [
    ("layer0_accuracy", "proposal acc."),
    ("layer0_majority_vote", "majority of 5"),
    ("layer0_any_correct", "any of 5 right"),
    ("agg_answer_among_proposals", "agg. answer is a proposal"),
    ("agg_copies_strict_majority", "agg. copies a >=3/5 majority"),
    ("agg_correct_given_a_correct_proposal", "agg. right when a proposal is"),
    ("layer1_accuracy", "layer 1 acc."),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path("."))
    p.add_argument("--base", default="mini")
    args = p.parse_args()
    res = args.workdir / "results"
    gold = {q["id"]: q["answer"] for q in read_jsonl(res / "prepare_bench/exact_match.jsonl")}
    print("| variant | " + " | ".join(c[1] for c in COLUMNS) + " | final acc. |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for path in sorted((res / "generate_answers" / args.base).glob("*/agg/exact_match.jsonl")):
        answers = read_jsonl(path)
        s = trace_stats(answers, gold)
        last = max(int(k[5:].split("_")[0]) for k in s if k.startswith("layer"))
        cells = [f"{s.get(k, float('nan')):.1f}" for k, _ in COLUMNS] + [f"{s[f'layer{last}_accuracy']:.1f}"]
        print(f"| {path.parts[-3]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
