"""Preference pairs for a reward model, from an UltraFeedback-schema file: every pair of a query's
completions whose ratings differ, the higher-rated one chosen (the pairs reward models are trained on),
and a held-out split by query, so no held-out query was seen in training.

Pure: rows in, pairs out. A pair, in TRL's conversational preference format with its prompt implicit:
    {"id", "query_id", "chosen": [user, assistant], "rejected": [user, assistant], "margin": float}
"""

from __future__ import annotations

import hashlib
from itertools import combinations

from aft.method.proposals import query_id, rating_of


def preference_pairs(rows: list[dict], rating: str) -> list[dict]:
    """Every pair of completions of a row with two different ratings and texts (unrated ones are left
    out), the higher-rated as `chosen`, in row order then completion order."""
    pairs, seen = [], set()
    for row in rows:
        query = (row.get("instruction") or "").strip()
        if not query or query in seen:  # a repeated instruction: its first row only (as the queries)
            continue
        seen.add(query)
        qid = query_id(query)
        rated = [
            (c["response"], r)
            for c in row.get("completions", [])
            if (r := rating_of(c, rating)) is not None and c.get("response")
        ]
        user = {"role": "user", "content": query}
        distinct = [(a, b) for a, b in combinations(rated, 2) if a[1] != b[1] and a[0] != b[0]]
        for k, ((a, ra), (b, rb)) in enumerate(distinct):
            (chosen, rc), (rejected, rr) = ((a, ra), (b, rb)) if ra > rb else ((b, rb), (a, ra))
            pairs.append(
                {
                    "id": f"{qid}-{k}",
                    "query_id": qid,
                    "chosen": [user, {"role": "assistant", "content": chosen}],
                    "rejected": [user, {"role": "assistant", "content": rejected}],
                    "margin": rc - rr,
                }
            )
    return pairs


def is_heldout(qid: str, fraction: float, seed: int) -> bool:
    """Whether a query is held out: a seeded hash of its id, so the split does not depend on row order."""
    digest = hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()
    return int(digest[:8], 16) / 2**32 < fraction


def split_heldout(pairs: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out) pairs: every pair of a held-out query is held out."""
    train, heldout = [], []
    for p in pairs:
        (heldout if is_heldout(p["query_id"], fraction, seed) else train).append(p)
    return train, heldout


def pair_accuracy(chosen_scores: list[float], rejected_scores: list[float]) -> float:
    """The share of pairs whose chosen completion scores strictly higher (a tie counts as wrong)."""
    if not chosen_scores:
        raise ValueError("no pair to measure")
    wins = sum(c > r for c, r in zip(chosen_scores, rejected_scores, strict=True))
    return wins / len(chosen_scores)
