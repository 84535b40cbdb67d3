"""Stage `prepare_bench`: one benchmark's questions in the project's schema.

exact_match: the miniature's held-out queries with their known answers.
alpaca_eval2: the 805 AlpacaEval instructions in canonical order. mt_bench: the 80 two-turn questions.
The paper benchmarks read the files `download_source` wrote (--source).

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.prepare_bench --config CFG --bench NAME [--source FILE...] --out FILE --metrics FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aft.eval import benchmarks
from aft.miniature import exact_match, world
from aft.pipeline.config import DataConfig
from aft.pipeline.io import write_jsonl
from aft.pipeline.sources import read_all_records
from aft.pipeline.stage import Outcome, run_stage


def bench_rows(data: DataConfig, bench: str, files: list[Path]) -> list[dict]:
    if bench == "exact_match":
        if data.kind != "miniature":
            raise ValueError("benchmark 'exact_match' needs data.kind='miniature' (known answers)")
        return exact_match.question_rows(world.split_tasks(data.miniature, data.seed)["eval"])
    if data.kind != "paper":
        raise ValueError(
            f"benchmark {bench!r} needs data.kind='paper' (its files come from the sources section)"
        )
    if bench not in ("alpaca_eval2", "mt_bench"):
        raise ValueError(f"unknown benchmark {bench!r}; expected exact_match, alpaca_eval2 or mt_bench")
    if not files:
        raise ValueError(f"benchmark {bench!r} reads its source files: give --source FILE...")
    if bench == "alpaca_eval2":
        return benchmarks.alpaca_eval_rows(read_all_records(files))
    return benchmarks.mt_bench_rows(read_all_records(files))


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bench", required=True)
    p.add_argument("--source", type=Path, nargs="*", default=[], help="the benchmark's source files")
    p.add_argument("--out", type=Path, required=True)


def run(data: DataConfig, bench: str, files: list[Path], out: Path) -> dict:
    return {"n_questions": write_jsonl(out, bench_rows(data, bench, files))}


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        return Outcome(run(cfg["data"], a.bench, a.source, a.out), [a.out])

    run_stage("prepare_bench", __doc__, argv, arguments, {"data": DataConfig}, body)


if __name__ == "__main__":
    main()
