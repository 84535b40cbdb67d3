"""Stage `build_proposals_on`: on-policy proposals, ICL-sampled from the base model through vLLM.

Queries are generated shard by shard (on_policy.shard_size); each finished shard is written atomically
to `<out>.shards/`, so a rerun after a killed job skips the finished shards. The shard folder is
removed once the job's output is written. The workflow spreads the shards over on_policy.num_jobs
scatter jobs (`--part I-of-N`, rule build_proposals_on_part: its shards to a part file) and gathers
them in one CPU job (`--parts`: assembles the shards, makes none, needs no engine); with neither
option one job makes everything.

Usage (what the rules run; runnable by hand too):
    python -m aft.stages.build_proposals_on --config CFG --queries JSONL --base-model DIR_OR_ID \
        --out JSONL --metrics FILE [--part I-of-N | --parts PART...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from aft.gen import shards
from aft.gen.engine import VLLMEngine
from aft.method.interface import Sampling, request_seed
from aft.method.proposals import collect_samples, icl_prompt, on_policy_records
from aft.miniature.world import is_correct
from aft.pipeline.config import BaseModelConfig, OnPolicyConfig, ProposalsConfig
from aft.pipeline.io import read_jsonl, write_jsonl
from aft.pipeline.stage import Outcome, add_scatter_arguments, read_text_input, run_stage


def proposal_accuracy(records: list[dict], queries: list[dict]) -> float | None:
    """Share of right proposals, where answers are known (the miniature): shows ICL gives a mix."""
    gold = {q["id"]: q.get("answer") for q in queries}
    judged = [is_correct(p, gold[r["id"]]) for r in records if gold.get(r["id"]) for p in r["proposals"]]
    return sum(judged) / len(judged) if judged else None


def shard_context(
    on: OnPolicyConfig, pc: ProposalsConfig, base: BaseModelConfig, model: str, icl: str
) -> str:
    """Everything besides its queries that decides a shard's content (see aft.gen.shards)."""
    # shard_size and num_jobs decide where a shard is made, not what it holds
    sampling = on.model_dump(mode="json", exclude={"engine", "shard_size", "num_jobs", "icl_prompt_file"})
    engine = shards.engine_content(on.engine)
    return json.dumps(
        {
            "on_policy": sampling,
            "engine": engine,
            "proposals": pc.model_dump(mode="json"),
            "model": model,
            "revision": base.revision,
            "icl_prompt_sha256": hashlib.sha256(icl.encode()).hexdigest(),
        },
        sort_keys=True,
    )


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queries", type=Path, required=True)
    p.add_argument("--base-model", required=True)
    p.add_argument("--out", type=Path, required=True, help="the proposals (with --part: the part file)")
    add_scatter_arguments(p)


def run(
    pc: ProposalsConfig,
    on: OnPolicyConfig,
    base: BaseModelConfig,
    queries_file: Path,
    base_model: str,
    out: Path,
    part: str | None = None,
    parts: list[Path] | None = None,
) -> Outcome:
    """Sample the proposals shard by shard: all of them, scatter job `part`'s, or the gather of `parts`."""
    queries = read_jsonl(queries_file)
    template = read_text_input("on_policy.icl_prompt_file", on.icl_prompt_file, "{query}")
    sampling = Sampling(on.num_samples, on.temperature, on.top_p, on.max_new_tokens, tuple(on.stop))
    engines: list[VLLMEngine] = []  # started on the first shard that needs it: a finished run needs none

    def process(part: list[dict]) -> shards.ShardResult:
        if not engines:
            engines.append(
                VLLMEngine(
                    base_model,
                    on.engine,
                    seed=on.seed,
                    per_request_seeds=on.seed_per_query,
                )
            )
        engine = engines[0]
        before = engine.stats.snapshot()
        prompts = [icl_prompt(template, q["messages"][-1]["content"]) for q in part]
        fits = [n < on.engine.max_model_len for n in engine.prompt_lengths(prompts)]
        kept = [q for q, ok in zip(part, fits) if ok]
        kept_prompts = [pr for pr, ok in zip(prompts, fits) if ok]

        def sample(indices: list[int], round_: int) -> list[list[str]]:
            seeds = None
            if on.seed_per_query:
                seeds = [request_seed(on.seed, kept[i]["id"], round_) for i in indices]
            return engine.complete([kept_prompts[i] for i in indices], sampling, seeds=seeds)

        samples, counts = collect_samples(
            len(kept), sample, pc.num_proposals, on.resample_rounds, on.trim_suffix
        )
        records, record_counts = on_policy_records(kept, samples, pc.num_proposals, pc.shuffle_seed)
        counts.update(record_counts)
        counts["dropped_prompt_too_long"] = len(part) - len(kept)
        counts.update(engine.stats.cost_since(before))
        return records, counts

    context = shard_context(on, pc, base, base_model, template)
    records, counts, summary = shards.sharded(queries, on.shard_size, out, context, process, part, parts)
    cleanup = [shards.work_dir(out)]
    if records is None:
        job, num_jobs = shards.parse_part(part)
        metrics = {"job": job, "num_jobs": num_jobs} | dict(counts) | summary.as_dict()
        return Outcome(metrics, [out], stage="build_proposals_on_part", cleanup=cleanup)
    if not records:  # every later stage would fail on it, far from the cause
        raise SystemExit(f"no query kept any proposals ({len(queries)} queries): {dict(counts)}")
    write_jsonl(out, records)
    metrics = {"queries": len(queries)} | dict(counts) | summary.as_dict()
    acc = proposal_accuracy(records, queries)
    if acc is not None:
        metrics["proposal_accuracy"] = acc
    return Outcome(metrics, [out], cleanup=cleanup)


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        return run(
            cfg["proposals"], cfg["on_policy"], cfg["base"], a.queries, a.base_model, a.out, a.part, a.parts
        )

    models = {"proposals": ProposalsConfig, "on_policy": OnPolicyConfig, "base": BaseModelConfig}
    run_stage("build_proposals_on", __doc__, argv, arguments, models, body)


if __name__ == "__main__":
    main()
