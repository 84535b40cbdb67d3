"""Stage `prepare_data`: the training queries and the UltraFeedback-schema file.

miniature: generates the world (corpus for the base model, UltraFeedback-like file, queries).
paper: reads the UltraFeedback files written by `download_source`, in order.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.prepare_data --config CFG [--ultrafeedback FILE...] --out DIR --metrics FILE
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from aft.method.proposals import query_id
from aft.miniature import world
from aft.pipeline.config import DataConfig
from aft.pipeline.io import atomic_write_text, write_jsonl
from aft.pipeline.sources import read_all_records
from aft.pipeline.stage import Outcome, run_stage


def prepare_miniature(cfg: DataConfig, out: Path, files: list[Path]) -> dict:
    mw = cfg.miniature
    splits = world.split_tasks(mw, cfg.seed)
    atomic_write_text(out / "corpus.txt", world.corpus_text(mw, splits["pretrain"], cfg.seed + 1))
    queries = [
        {
            "id": query_id(t.query),
            "messages": [{"role": "user", "content": t.query}],
            "answer": t.answer,
            "category": t.kind,
        }
        for t in splits["train"]
    ]
    write_jsonl(out / "queries.jsonl", queries)
    write_jsonl(out / "ultrafeedback.jsonl", world.ultrafeedback_rows(mw, splits["train"], cfg.seed + 2))
    return {f"n_{k}": len(v) for k, v in splits.items() if k != "eval"}


def prepare_paper(cfg: DataConfig, out: Path, files: list[Path]) -> dict:
    if not files:
        raise SystemExit("data.kind is 'paper': give the UltraFeedback files (--ultrafeedback FILE...)")
    all_rows = read_all_records(files)
    rows = all_rows[: cfg.paper.max_queries]
    write_jsonl(out / "ultrafeedback.jsonl", rows)
    queries, drops = training_queries(rows)
    if not queries:
        raise SystemExit(f"no training query in {len(rows)} UltraFeedback rows: {dict(drops)}")
    write_jsonl(out / "queries.jsonl", queries)
    return {
        "n_ultrafeedback_files": len(files),
        "n_ultrafeedback_rows_read": len(all_rows),
        "n_ultrafeedback_rows": len(rows),  # after max_queries
        "n_train": len(queries),  # distinct non-empty queries (on-policy sampling reads these)
    } | {f"n_{k}": v for k, v in sorted(drops.items())}


def training_queries(rows: list[dict]) -> tuple[list[dict], Counter]:
    """The distinct non-empty instructions as queries, in row order, and every row dropped, by reason."""
    seen, queries, drops = set(), [], Counter()
    for r in rows:
        instruction = r.get("instruction")
        if not isinstance(instruction, str | None):
            drops["dropped_schema_instruction_not_string"] += 1
            continue
        q = (instruction or "").strip()
        if not q:
            drops["dropped_empty_instruction"] += 1
        elif q in seen:
            drops["dropped_duplicate_instruction"] += 1
        else:
            seen.add(q)
            queries.append(
                {
                    "id": query_id(q),
                    "messages": [{"role": "user", "content": q}],
                    "answer": None,
                    "category": r.get("source", "ultrafeedback"),
                }
            )
    return queries, drops


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ultrafeedback", type=Path, nargs="*", default=[], help="paper: UltraFeedback files")
    p.add_argument("--out", type=Path, required=True)


def run(data: DataConfig, ultrafeedback: list[Path], out: Path) -> dict:
    prepare = prepare_miniature if data.kind == "miniature" else prepare_paper
    return prepare(data, out, ultrafeedback)


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        metrics = run(cfg["data"], a.ultrafeedback, a.out)
        return Outcome(metrics, sorted(f for f in a.out.rglob("*") if f.is_file()))

    run_stage("prepare_data", __doc__, argv, arguments, {"data": DataConfig}, body)


if __name__ == "__main__":
    main()
