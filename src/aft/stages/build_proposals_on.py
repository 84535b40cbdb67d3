"""Stage `build_proposals_on`: on-policy proposals, ICL-sampled from the base model through vLLM.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.build_proposals_on --config CFG --queries JSONL --base-model DIR_OR_ID \
        --out JSONL --metrics FILE
"""

from __future__ import annotations

import time
from pathlib import Path

from aft.config import BaseModelConfig, OnPolicyConfig, ProposalsConfig
from aft.engine import Sampling, VLLMEngine
from aft.io import read_jsonl, write_jsonl
from aft.prompts import load_template
from aft.proposals import icl_prompt, on_policy_records
from aft.stage import finish, parser, sections, setup_logging
from aft.world import is_correct


def proposal_accuracy(records: list[dict], queries: list[dict]) -> float | None:
    """Share of right proposals, where answers are known (the miniature): shows ICL gives a mix."""
    gold = {q["id"]: q.get("answer") for q in queries}
    judged = [is_correct(p, gold[r["id"]]) for r in records if gold.get(r["id"]) for p in r["proposals"]]
    return sum(judged) / len(judged) if judged else None


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    started = time.time()
    p = parser(__doc__)
    p.add_argument("--queries", type=Path, required=True)
    p.add_argument("--base-model", required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    cfg = sections(args.config, proposals=ProposalsConfig, on_policy=OnPolicyConfig, base=BaseModelConfig)
    pc, on = cfg["proposals"], cfg["on_policy"]
    queries = read_jsonl(args.queries)
    template = load_template(on.icl_prompt_file)
    prompts = [icl_prompt(template, q["messages"][-1]["content"]) for q in queries]
    engine = VLLMEngine(args.base_model, on.engine, seed=on.seed, revision=cfg["base"].revision)
    sampling = Sampling(on.num_samples, on.temperature, on.top_p, on.max_new_tokens, tuple(on.stop))
    samples = engine.complete(prompts, sampling)
    records, counts = on_policy_records(queries, samples, pc.num_proposals, pc.shuffle_seed)
    write_jsonl(args.out, records)
    metrics = dict(counts) | engine.stats.as_dict("engine_")
    acc = proposal_accuracy(records, queries)
    if acc is not None:
        metrics["proposal_accuracy"] = acc
    finish("build_proposals_on", args, cfg, metrics, [args.out], started)


if __name__ == "__main__":
    main()
