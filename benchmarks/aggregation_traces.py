"""Analysis: what the aggregation layers of each trained model did on the miniature's evaluation set.

Usage (in the run's working directory):
    python benchmarks/aggregation_traces.py [--configfile config/config.yaml ...] [--base mini] [--seed 0]
Reads each variant's propose-and-aggregate answers (generate_answers, mode agg, exact_match; its keyed
folder under the config: python -m aft.tools.paths) and the gold answers, prints one
row per variant: proposal accuracy, majority vote, any-correct, the aggregator's copying of a strict
majority, and the final accuracy (all %, over the evaluation queries).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aft.miniature.traces import trace_stats
from aft.pipeline.io import read_jsonl
from aft.tools.paths import graph_of

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
    p.add_argument("--configfile", nargs="+", default=["config/config.yaml"], help="as for snakemake")
    p.add_argument("--base", default="mini")
    p.add_argument("--seed", default=None, help="the replica (default: the config's first seed)")
    args = p.parse_args()
    graph = graph_of(args.configfile)
    seed = args.seed or str(graph.cfg.grid.seeds[0])
    bench = Path(graph.job_dir("prepare_bench", bench="exact_match")) / "bench.jsonl"
    gold = {q["id"]: q["answer"] for q in read_jsonl(bench)}
    print("| variant | " + " | ".join(c[1] for c in COLUMNS) + " | final acc. |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for variant in graph.cfg.grid.variants:
        w = {"base": args.base, "variant": variant, "seed": seed, "mode": "agg", "bench": "exact_match"}
        answers = read_jsonl(Path(graph.job_dir("generate_answers", **w)) / "answers.jsonl")
        s = trace_stats(answers, gold)
        last = max(int(k[5:].split("_")[0]) for k in s if k.startswith("layer"))
        cells = [f"{s.get(k, float('nan')):.1f}" for k, _ in COLUMNS] + [f"{s[f'layer{last}_accuracy']:.1f}"]
        print(f"| {variant} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
