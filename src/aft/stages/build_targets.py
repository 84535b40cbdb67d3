"""Stage `build_targets`: the aggregation target for each query of a proposal set.

teacher=model generates shard by shard (targets.shard_size), each finished shard written atomically
to `<out>.shards/`, so a rerun after a killed job skips the finished shards; oracle and best_rated
need no model. Cost accounting (requests, tokens in/out) goes to metrics.json and MLflow. For
teacher=model the workflow spreads the shards over targets.num_jobs scatter jobs (`--part I-of-N`, rule
build_targets_part: its shards to a part file) and gathers them in one CPU job (`--parts`: assembles
the shards, makes none); with neither option one job makes everything.

Usage (what the rules run; runnable by hand too):
    python -m aft.stages.build_targets --config CFG --proposals JSONL --queries JSONL --out JSONL \
        --metrics FILE [--teacher-model DIR] [--part I-of-N | --parts PART...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path

from aft.gen import shards
from aft.gen.endpoint import EndpointClient, EndpointEngine
from aft.gen.engine import VLLMEngine
from aft.method.interface import Engine, Sampling
from aft.method.targets import best_rated_targets, teacher_targets
from aft.miniature.exact_match import oracle_targets
from aft.pipeline.config import TargetsConfig
from aft.pipeline.io import read_jsonl, write_jsonl
from aft.pipeline.stage import Outcome, add_scatter_arguments, read_text_input, run_stage

NO_TOKENS = {"requests": 0, "tokens_in": 0, "tokens_in_cached": 0, "tokens_out": 0}


def teacher_engine(tc: TargetsConfig, folder: str | None) -> Engine:
    """The endpoint serving targets.model, or vLLM in this process on the teacher's `folder`."""
    if tc.endpoint is not None:
        return EndpointEngine(EndpointClient(tc.endpoint, tc.model), seed=tc.seed)
    if folder is None:
        raise SystemExit(
            "an in-process teacher (targets.endpoint is null) needs --teacher-model: its folder (the rule"
            " fetch_model writes it for a hub id)"
        )
    return VLLMEngine(folder, tc.engine, seed=tc.seed, per_request_seeds=True)  # seeded by record


def shard_context(tc: TargetsConfig, template: str) -> str:
    """Everything besides its records that decides a shard's targets (see aft.gen.shards)."""
    return json.dumps(
        {
            "model": tc.model,
            "max_new_tokens": tc.max_new_tokens,
            "temperature": tc.temperature,
            "seed": tc.seed,
            "max_model_len": tc.engine.max_model_len if tc.engine and tc.endpoint is None else None,
            "dtype": tc.engine.dtype if tc.engine and tc.endpoint is None else None,
            "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
        },
        sort_keys=True,
    )


def model_targets(
    tc: TargetsConfig,
    records: list[dict],
    out: Path,
    part: str | None = None,
    parts: list[Path] | None = None,
    teacher_model: str | None = None,
) -> tuple[list[dict] | None, Counter, shards.ShardSummary]:
    """The teacher's targets in shards: all of them, scatter job `part`'s (None), or the gather of `parts`."""
    template = read_text_input("targets.template_file", tc.template_file)
    sampling = Sampling(1, tc.temperature, 1.0, tc.max_new_tokens)
    in_process = tc.endpoint is None
    engines: list[Engine] = []  # started on the first shard that needs it: a finished run needs none

    def process(part: list[dict]) -> shards.ShardResult:
        if not engines:
            engines.append(teacher_engine(tc, teacher_model))
        engine = engines[0]
        before = engine.stats.snapshot()
        limit = tc.engine.max_model_len if in_process else None
        targets, counts = teacher_targets(part, engine, template, sampling, tc.seed, tc.model, limit)
        counts.update(engine.stats.cost_since(before))
        return targets, counts

    context = shard_context(tc, template)
    return shards.sharded(records, tc.shard_size, out, context, process, part, parts)


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--proposals", type=Path, required=True)
    p.add_argument("--queries", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="the targets (with --part: the part file)")
    p.add_argument("--teacher-model", default=None, help="the in-process teacher's model folder")
    add_scatter_arguments(p)


def run(
    tc: TargetsConfig,
    proposals: Path,
    queries: Path,
    out: Path,
    part: str | None = None,
    parts: list[Path] | None = None,
    teacher_model: str | None = None,
) -> Outcome:
    """The targets of every proposal record (or scatter job `part`'s shards, or the gather of `parts`)."""
    if tc.teacher != "model" and (part or parts):
        raise SystemExit(f"--part/--parts: teacher={tc.teacher} makes no shards")
    records = read_jsonl(proposals)
    metrics: dict = {"records_in": len(records)}
    if tc.teacher == "oracle":
        answers = {q["id"]: q["answer"] for q in read_jsonl(queries) if q.get("answer") is not None}
        targets = oracle_targets(records, answers)
        metrics |= NO_TOKENS
    elif tc.teacher == "best_rated":
        targets = best_rated_targets(records)
        metrics |= NO_TOKENS | {"dropped_unrated": len(records) - len(targets)}
    else:
        targets, counts, summary = model_targets(tc, records, out, part, parts, teacher_model)
        if targets is None:
            job, num_jobs = shards.parse_part(part)
            metrics = {"job": job, "num_jobs": num_jobs} | dict(counts) | summary.as_dict()
            return Outcome(metrics, [out], stage="build_targets_part", cleanup=[shards.work_dir(out)])
        metrics |= dict(counts) | summary.as_dict()
    if not targets:
        raise SystemExit(f"no target made for {len(records)} proposal records: {metrics}")
    metrics["targets_out"] = write_jsonl(out, targets)
    metrics["dropped"] = len(records) - metrics["targets_out"]
    return Outcome(metrics, [out], cleanup=[shards.work_dir(out)])


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        return run(cfg["targets"], a.proposals, a.queries, a.out, a.part, a.parts, a.teacher_model)

    run_stage("build_targets", __doc__, argv, arguments, {"targets": TargetsConfig}, body)


if __name__ == "__main__":
    main()
