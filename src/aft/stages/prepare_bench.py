"""Stage `prepare_bench`: one benchmark's questions in the project's schema.

exact_match: the miniature's held-out queries with their known answers.
alpaca_eval2: the 805 AlpacaEval instructions in canonical order. mt_bench: the 80 two-turn questions.
gsm8k: the 1,319 test problems. ifeval: the 541 prompts. The paper benchmarks read the files
`download_source` wrote (--source). The config's `benchmarks.<bench>` (its `bench` section, when given)
takes an evenly spaced slice and wraps the first turn in the prompt file it names.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.prepare_bench --config CFG --bench NAME [--source FILE...] --out FILE \
        --metrics FILE
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from aft.eval.registry import benchmark
from aft.miniature import world
from aft.pipeline.config import BenchConfig, DataConfig
from aft.pipeline.io import write_jsonl
from aft.pipeline.sources import read_all_records
from aft.pipeline.stage import Outcome, read_text_input, run_stage

QUESTION = "{question}"


def evenly_spaced(rows: list[dict], n: int | None) -> list[dict]:
    """n rows spread evenly over the canonical order (the first always in), all if n is None or larger:
    a slice that spans a benchmark's categories, the same on every machine."""
    if n is None or n >= len(rows):
        return rows
    return [rows[i * len(rows) // n] for i in range(n)]


def with_prompt(rows: list[dict], prompt: str) -> list[dict]:
    """Each row's first turn wrapped in the prompt (its {question} marker replaced; no other brace is
    special, so a prompt may hold JSON or code)."""
    return [r | {"turns": [prompt.replace(QUESTION, r["turns"][0]), *r["turns"][1:]]} for r in rows]


def bench_rows(data: DataConfig, bench: str, files: list[Path]) -> list[dict]:
    spec = benchmark(bench)
    if spec.data_kind == "miniature" and data.kind != "miniature":
        raise ValueError(f"benchmark {bench!r} needs data.kind='miniature'")
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


def run(data: DataConfig, settings: BenchConfig | None, bench: str, files: list[Path], out: Path) -> dict:
    prompt = None
    if settings is not None and settings.prompt_file is not None:
        prompt = read_text_input(f"benchmarks.{bench}.prompt_file", settings.prompt_file, QUESTION)
    rows = bench_rows(data, bench, files)
    if not rows:
        raise SystemExit(f"benchmark {bench!r}: no question in {[str(f) for f in files] or 'the world'}")
    n_all = len(rows)
    rows = evenly_spaced(rows, settings.max_questions if settings else None)
    if prompt is not None:
        rows = with_prompt(rows, prompt)
    return {"n_questions": write_jsonl(out, rows), "n_questions_in_source": n_all}


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        return Outcome(run(cfg["data"], cfg.get("bench"), a.bench, a.source, a.out), [a.out])

    # `bench` is given only when the config names the benchmark (a config without the section keeps its keys)
    models = {"data": DataConfig, "bench": BenchConfig}
    run_stage("prepare_bench", __doc__, argv, arguments, models, body, optional=("bench",))


if __name__ == "__main__":
    main()
