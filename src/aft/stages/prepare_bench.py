"""Stage `prepare_bench`: one benchmark's questions in the project's schema.

exact_match: the miniature's held-out queries with their known answers.
alpaca_eval2: the 805 AlpacaEval instructions in canonical order. mt_bench: the 80 two-turn questions.
The paper benchmarks read the files `download_source` wrote (--source).

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.prepare_bench --config CFG --bench NAME [--source FILE...] --out FILE --metrics FILE
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from aft.eval.registry import benchmark
from aft.miniature import world
from aft.pipeline.config import DataConfig
from aft.pipeline.io import write_jsonl
from aft.pipeline.sources import read_all_records
from aft.pipeline.stage import Outcome, run_stage


def bench_rows(data: DataConfig, bench: str, files: list[Path]) -> list[dict]:
    spec = benchmark(bench)
    if data.kind != spec.data_kind:
        raise ValueError(f"benchmark {bench!r} needs data.kind={spec.data_kind!r}")
    code = importlib.import_module(spec.module)  # the benchmark's module, named by its registry entry
    if spec.data_kind == "miniature":
        return code.question_rows(world.split_tasks(data.miniature, data.seed)["eval"])
    if not files:
        raise ValueError(f"benchmark {bench!r} reads its source files: give --source FILE...")
    return code.question_rows(read_all_records(files))


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bench", required=True)
    p.add_argument("--source", type=Path, nargs="*", default=[], help="the benchmark's source files")
    p.add_argument("--out", type=Path, required=True)


def run(data: DataConfig, bench: str, files: list[Path], out: Path) -> dict:
    rows = bench_rows(data, bench, files)
    if not rows:
        raise SystemExit(f"benchmark {bench!r}: no question in {[str(f) for f in files] or 'the world'}")
    return {"n_questions": write_jsonl(out, rows)}


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        return Outcome(run(cfg["data"], a.bench, a.source, a.out), [a.out])

    run_stage("prepare_bench", __doc__, argv, arguments, {"data": DataConfig}, body)


if __name__ == "__main__":
    main()
