"""Stage `build_targets`: the aggregation target for each query of a proposal set.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.build_targets --config CFG --proposals JSONL --queries JSONL --out JSONL \
        --metrics FILE
"""

from __future__ import annotations

import time
from pathlib import Path

from aft.config import TargetsConfig
from aft.engine import Engine, OpenAIEngine, VLLMEngine
from aft.io import read_jsonl, write_jsonl
from aft.prompts import load_template
from aft.stage import finish, parser, sections, setup_logging
from aft.targets import best_rated_targets, oracle_targets, teacher_targets


def teacher_engine(tc: TargetsConfig) -> Engine:
    if tc.api_base_url is not None:
        return OpenAIEngine(tc.model, base_url=tc.api_base_url, api_key_env=tc.api_key_env, seed=tc.seed)
    return VLLMEngine(tc.model, tc.engine, seed=tc.seed)


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    started = time.time()
    p = parser(__doc__)
    p.add_argument("--proposals", type=Path, required=True)
    p.add_argument("--queries", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    cfg = sections(args.config, targets=TargetsConfig)
    tc = cfg["targets"]
    records = read_jsonl(args.proposals)
    metrics: dict = {"records_in": len(records)}
    if tc.teacher == "oracle":
        answers = {q["id"]: q["answer"] for q in read_jsonl(args.queries) if q.get("answer") is not None}
        targets = oracle_targets(records, answers)
    elif tc.teacher == "best_rated":
        targets = best_rated_targets(records)
    else:
        engine = teacher_engine(tc)
        template = load_template(tc.template_file)
        targets = teacher_targets(records, engine, template, tc.max_new_tokens, tc.temperature, tc.model)
        metrics |= engine.stats.as_dict("engine_")
    metrics["targets_out"] = write_jsonl(args.out, targets)
    metrics["dropped"] = len(records) - metrics["targets_out"]
    finish("build_targets", args, cfg, metrics, [args.out], started)


if __name__ == "__main__":
    main()
