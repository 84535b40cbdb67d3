"""Scoring of generated answers. exact_match: the miniature's judge (known answers); and which LLM
judges produced the paper's numbers (the AlpacaEval 2 and MT-Bench judges: alpaca_eval2.py, mt_bench.py)."""

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


# The judges behind the paper's numbers (spec/method.md): AlpacaEval 2's GPT-4 Turbo annotator, and
# FastChat's "gpt-4" for MT-Bench (an alias; gpt-4-0613 is its dated snapshot: our ASSUMPTION).
PAPER_JUDGES: dict[str, tuple[str, ...]] = {
    "alpaca_eval2": ("gpt-4-1106-preview",),
    "mt_bench": ("gpt-4", "gpt-4-0613"),
}
PAPER_JUDGE_NAMES = {"alpaca_eval2": "GPT-4 Turbo", "mt_bench": "GPT-4"}


def is_paper_judge(bench: str, model: str, on_openai_api: bool) -> bool:
    """Whether a result comes from the judge the paper used: its model, served by the OpenAI API."""
    return on_openai_api and model in PAPER_JUDGES.get(bench, ())


def exact_match_rows(answers: list[dict], questions: list[dict]) -> list[dict]:
    """Per question: the known answer, the one extracted from the last turn, and whether they match."""
    by_id = {a["id"]: a for a in answers}
    rows = []
    for q in questions:
        got = extract_answer(by_id[q["id"]]["outputs"][-1]) if q["id"] in by_id else None
        rows.append(
            {
                "id": q["id"],
                "category": q["category"],
                "expected": q["answer"],
                "got": got,
                "correct": got == q["answer"],
            }
        )
    return rows
