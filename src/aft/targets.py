"""Aggregation targets: what the model learns to write after reading the proposals.

oracle (miniature: the known answer in canonical form), best_rated (the top-rated UltraFeedback
completion: no teacher needed), or model (a teacher LLM prompted with the aggregation template).
"""

from __future__ import annotations

from aft.engine import Engine, Sampling
from aft.prompts import aggregation_messages
from aft.world import format_answer


def oracle_targets(records: list[dict], answers: dict[str, str]) -> list[dict]:
    missing = [r["id"] for r in records if r["id"] not in answers]
    if missing:
        raise ValueError(f"oracle teacher: no known answer for {len(missing)} queries, e.g. {missing[:3]}")
    return [{"id": r["id"], "target": format_answer(answers[r["id"]]), "teacher": "oracle"} for r in records]


def best_rated_targets(records: list[dict]) -> list[dict]:
    """The highest-rated proposal (ties: the first in the record's order); unrated queries are skipped."""
    out = []
    for r in records:
        rated = [(x, i) for i, x in enumerate(r["ratings"]) if x is not None]
        if rated:
            best = max(rated, key=lambda xi: (xi[0], -xi[1]))[1]
            out.append({"id": r["id"], "target": r["proposals"][best], "teacher": "best_rated"})
    return out


def teacher_targets(
    records: list[dict], engine: Engine, template: str, max_tokens: int, temperature: float, name: str
) -> list[dict]:
    """A teacher model aggregates each record's proposals with the same template the student sees."""
    prompts = [aggregation_messages(r["messages"], r["proposals"], template) for r in records]
    outs = engine.chat(prompts, Sampling(1, temperature, 1.0, max_tokens))
    return [
        {"id": r["id"], "target": o[0].strip(), "teacher": name}
        for r, o in zip(records, outs, strict=True)
        if o[0].strip()
    ]
