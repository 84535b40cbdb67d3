"""Benchmark files in one schema: {"id", "turns": [user messages], "answer", "category", ...}."""

from __future__ import annotations


def alpaca_eval_rows(instructions: list[dict]) -> list[dict]:
    """The 805 AlpacaEval instructions (chat-query records), canonical order kept."""
    rows = []
    for i, rec in enumerate(instructions):
        query = rec["query"] if "query" in rec else [{"role": "user", "content": rec["instruction"]}]
        turns = [m["content"] for m in query if m["role"] == "user"]
        rows.append({"id": f"ae{i:03d}", "turns": turns, "answer": None, "category": "alpaca_eval"})
    return rows


def mt_bench_rows(questions: list[dict]) -> list[dict]:
    return [
        {"id": str(q["question_id"]), "turns": list(q["turns"]), "answer": None, "category": q["category"]}
        for q in questions
    ]
