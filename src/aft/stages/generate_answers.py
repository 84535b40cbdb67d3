"""Stage `generate_answers`: a trained model answers a benchmark, direct or propose-and-aggregate.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.generate_answers --config CFG --mode {direct,agg} --model DIR --bench JSONL \
        --out JSONL --metrics FILE
"""

from __future__ import annotations

import time
from pathlib import Path

from aft.aggregate import AggSettings, answer_dialogues, answerer
from aft.config import InferenceConfig
from aft.engine import VLLMEngine
from aft.io import read_jsonl, write_jsonl
from aft.prompts import load_template
from aft.stage import finish, parser, sections, setup_logging


def settings(ic: InferenceConfig) -> AggSettings:
    return AggSettings(
        n=ic.n,
        num_aggregation=ic.num_aggregation,
        temperature=ic.temperature,
        top_p=ic.top_p,
        final_temperature=ic.final_temperature,
        final_top_p=ic.final_top_p,
        max_tokens=ic.max_tokens,
    )


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    started = time.time()
    p = parser(__doc__)
    p.add_argument("--mode", required=True, choices=["direct", "agg"])
    p.add_argument("--model", required=True)
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    cfg = sections(args.config, inference=InferenceConfig)
    ic = cfg["inference"]
    rows = read_jsonl(args.bench)
    engine = VLLMEngine(args.model, ic.engine, seed=ic.seed)
    answer = answerer(args.mode, engine, settings(ic), load_template(ic.template_file))
    answers, traces = answer_dialogues([r["turns"] for r in rows], answer)
    out_rows = [
        {"id": r["id"], "turns": r["turns"], "outputs": a, "trace": t}
        for r, a, t in zip(rows, answers, traces, strict=True)
    ]
    write_jsonl(args.out, out_rows)
    metrics = {"n_questions": len(rows)} | engine.stats.as_dict("engine_")
    wall = time.time() - started
    metrics["generated_tokens_per_s"] = engine.stats.generated_tokens / max(wall, 1e-9)
    finish("generate_answers", args, cfg, metrics, [args.out], started)


if __name__ == "__main__":
    main()
