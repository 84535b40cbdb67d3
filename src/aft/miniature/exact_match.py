"""The miniature's benchmark `exact_match`: its held-out queries with their known answers, scored by
extracting the answer from the last turn; and the oracle teacher (the known answer in canonical form)."""

from __future__ import annotations

from collections import defaultdict

from aft.eval.registry import JudgeFiles
from aft.method.proposals import query_id
from aft.miniature.world import Task, extract_answer, format_answer


def question_rows(tasks: list[Task]) -> list[dict]:
    """The benchmark's rows (held-out tasks) in the project's schema, with their known answers."""
    return [
        {"id": query_id(t.query), "turns": [t.query], "answer": t.answer, "category": t.kind} for t in tasks
    ]


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


def score(answers: list[dict], questions: list[dict], files: JudgeFiles) -> tuple[dict, list[dict]]:
    """The registry's scorer: accuracy and the per-question rows (`files`: none are read)."""
    return exact_match(answers, questions), judgment_rows(answers, questions)


def judgment_rows(answers: list[dict], questions: list[dict]) -> list[dict]:
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


def oracle_targets(records: list[dict], answers: dict[str, str]) -> list[dict]:
    missing = [r["id"] for r in records if r["id"] not in answers]
    if missing:
        raise ValueError(f"oracle teacher: no known answer for {len(missing)} queries, e.g. {missing[:3]}")
    return [{"id": r["id"], "target": format_answer(answers[r["id"]]), "teacher": "oracle"} for r in records]


def question_scores(rows: list[dict]) -> dict[str, float]:
    """Per question: 100 if the extracted answer is right, else 0 (the accuracy's per-question form)."""
    return {r["id"]: 100.0 * bool(r["correct"]) for r in rows}


def vote_answers(responses: list[str]) -> list[str | None]:
    """The answer each response gives (its last canonical answer), for a majority vote."""
    return [extract_answer(r) for r in responses]
