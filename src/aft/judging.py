"""Scoring of generated answers. exact_match: the miniature's judge (known answers)."""

from __future__ import annotations

from collections import defaultdict

from aft.world import extract_answer


def exact_match(answers: list[dict], questions: list[dict]) -> dict:
    """Accuracy (%) of the last turn's answer against the known answer, overall and per category."""
    gold = {q["id"]: q for q in questions}
    missing = sorted(set(gold) - {a["id"] for a in answers})
    if missing:
        raise ValueError(f"{len(missing)} questions have no answer, e.g. {missing[:3]}")
    per_cat: dict[str, list[bool]] = defaultdict(list)
    formed = 0
    for a in answers:
        q = gold[a["id"]]
        got = extract_answer(a["outputs"][-1])
        formed += got is not None
        per_cat[q["category"]].append(got == q["answer"])
    hits = [h for v in per_cat.values() for h in v]
    return {
        "scores": {"accuracy": 100.0 * sum(hits) / len(hits)},
        "n": len(hits),
        "well_formed": 100.0 * formed / len(hits),
        "per_category": {k: 100.0 * sum(v) / len(v) for k, v in sorted(per_cat.items())},
    }
