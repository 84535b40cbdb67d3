"""Aggregation targets: what the model learns to write after reading the proposals.

best_rated (the top-rated UltraFeedback completion: no teacher needed) or model (a teacher LLM prompted
with the aggregation template). The miniature's oracle teacher is in aft.miniature.exact_match.
"""

from __future__ import annotations

from collections import Counter

from aft.method.interface import Engine, Sampling, request_seed
from aft.method.prompts import aggregation_messages


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
    records: list[dict],
    engine: Engine,
    template: str,
    sampling: Sampling,
    seed: int,
    name: str,
    max_prompt_tokens: int | None = None,
) -> tuple[list[dict], Counter]:
    """A teacher model aggregates each record's proposals with the same template the student sees.

    Each request is seeded from (seed, record id), so a resumed run asks exactly what an unbroken one
    would. With `max_prompt_tokens` (an in-process engine), prompts that long or longer are dropped and
    counted instead of failing the batch; empty answers are dropped and counted."""
    prompts = [aggregation_messages(r["messages"], r["proposals"], template) for r in records]
    keep = list(range(len(records)))
    counts: Counter = Counter(records_in=len(records))
    if max_prompt_tokens is not None and prompts:
        lengths = engine.chat_prompt_lengths(prompts)
        keep = [i for i in keep if lengths[i] < max_prompt_tokens]
        counts["dropped_prompt_too_long"] = len(records) - len(keep)
    seeds = [request_seed(seed, records[i]["id"]) for i in keep]
    outs = engine.chat([prompts[i] for i in keep], sampling, seeds=seeds)
    targets = []
    for i, o in zip(keep, outs, strict=True):
        text = o[0].strip()
        if text:
            targets.append({"id": records[i]["id"], "target": text, "teacher": name})
        else:
            counts["dropped_empty_target"] += 1
    counts["targets_out"] = len(targets)
    return targets, counts
