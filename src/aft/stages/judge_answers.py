"""Stage `judge_answers`: score one model's answers on one benchmark.

exact_match (miniature) is judged here. The LLM judges of the paper benchmarks (AlpacaEval 2,
MT-Bench) are not in this version: a job for them stops with an error saying so (see README).

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.judge_answers --config CFG --bench-name NAME --answers JSONL --bench JSONL \
        --out JSON --metrics FILE
"""

from __future__ import annotations

import time
from pathlib import Path

from aft.config import JudgeConfig
from aft.io import read_jsonl, write_json
from aft.judging import exact_match
from aft.stage import finish, parse_wildcards, parser, sections, setup_logging

JUDGES = {"exact_match": exact_match}


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    started = time.time()
    p = parser(__doc__)
    p.add_argument("--bench-name", required=True)
    p.add_argument("--answers", type=Path, required=True)
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    cfg = sections(args.config, judge=JudgeConfig)
    if args.bench_name not in JUDGES:
        raise SystemExit(
            f"benchmark {args.bench_name!r} has no judge in this version (judged here: {sorted(JUDGES)});"
            " the AlpacaEval 2 and MT-Bench judges are open work, see the README"
        )
    result = JUDGES[args.bench_name](read_jsonl(args.answers), read_jsonl(args.bench))
    result |= {
        "bench": args.bench_name,
        "judge": args.bench_name,
        "wildcards": parse_wildcards(args.wildcards),
    }
    write_json(args.out, result)
    finish("judge_answers", args, cfg, result["scores"] | {"n": result["n"]}, [args.out], started)


if __name__ == "__main__":
    main()
