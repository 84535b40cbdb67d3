"""The benchmark `gsm8k`: the 1,319 grade-school math test problems, scored by lm-eval's own code.

The answer extraction and the comparison are lm-eval's task `gsm8k_cot_llama` (0.4.13), read from the
task's YAML file in the installed package: its two filter pipelines (`strict-match`: the number after
"The final answer is"; `flexible-extract`: the last number in the answer) built by lm-eval's
`build_filter_ensemble` and applied to lm-eval `Instance`s, and its `exact_match` metric with the task's
arguments (case, commas, "$", a final "."). The prompt that asks for that answer format is the task's
own text, kept as config/prompts/gsm8k_cot_llama.txt (zero-shot: ASSUMPTION, docs/downstream.md).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from aft.eval.registry import JudgeFiles

TASK = "gsm8k_cot_llama"
INVALID = "[invalid]"  # lm-eval's filters' value when nothing matched
FILTERS = {"strict-match": "strict_match", "flexible-extract": "flexible_extract"}  # lm-eval -> ours


def gold_answer(solution: str) -> str:
    """The reference final answer: lm-eval's doc_to_target for this task (the text after '####')."""
    return solution.split("####")[-1].strip()


def question_rows(records: list[dict]) -> list[dict]:
    """GSM8K test problems ({question, answer} records, file order) in the project's schema."""
    return [
        {
            "id": f"gsm{i:04d}",
            "turns": [r["question"]],
            "answer": gold_answer(r["answer"]),
            "category": "gsm8k",
        }
        for i, r in enumerate(records)
    ]


@cache
def task_config() -> dict:
    """The task's YAML as lm-eval ships it (no custom tags in this file)."""
    import lm_eval
    import yaml

    path = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / f"{TASK.replace('_', '-')}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def extract(responses: list[str]) -> dict[str, list[str]]:
    """Each filter's extracted answer for each response, through lm-eval's filter pipelines."""
    from lm_eval.api.instance import Instance
    from lm_eval.filters import build_filter_ensemble

    out = {}
    for spec in task_config()["filter_list"]:
        steps = [[f["function"], {k: v for k, v in f.items() if k != "function"}] for f in spec["filter"]]
        instances = [
            Instance("generate_until", doc={}, arguments=("", {}), idx=0, resps=[r]) for r in responses
        ]
        build_filter_ensemble(spec["name"], steps).apply(instances)
        out[FILTERS[spec["name"]]] = [inst.filtered_resps[spec["name"]] for inst in instances]
    return out


def matches(predictions: list[str], references: list[str]) -> list[bool]:
    """lm-eval's exact_match with the task's arguments, one question at a time."""
    from lm_eval.api.metrics import exact_match_hf_evaluate

    (metric,) = task_config()["metric_list"]
    kwargs = {k: metric[k] for k in ("ignore_case", "ignore_punctuation", "regexes_to_ignore") if k in metric}
    return [
        bool(exact_match_hf_evaluate(predictions=[p], references=[r], **kwargs)["exact_match"])
        for p, r in zip(predictions, references, strict=True)
    ]


def vote_answers(responses: list[str]) -> list[str | None]:
    """The answer each response gives, for a majority vote: the flexible extraction (the claim's), with
    the task's exact_match normalisation applied (lm-eval's regexes_to_ignore and case), so "$1,000." and
    "1000" are one vote; None where no number was found."""
    (metric,) = task_config()["metric_list"]
    out: list[str | None] = []
    for got in extract(responses)["flexible_extract"]:
        if got == INVALID:
            out.append(None)
            continue
        for regex in metric.get("regexes_to_ignore", []):
            got = re.sub(regex, "", got)
        out.append(got.lower() if metric.get("ignore_case") else got)
    return out


def judgment_rows(answers: list[dict], questions: list[dict]) -> list[dict]:
    """Per question: the reference, each filter's extraction from the final answer, and its verdict."""
    by_id = {a["id"]: a for a in answers}
    missing = [q["id"] for q in questions if q["id"] not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} questions have no answer, e.g. {missing[:3]}")
    responses = [by_id[q["id"]]["outputs"][-1] for q in questions]
    gold = [q["answer"] for q in questions]
    extracted = extract(responses)
    verdicts = {name: matches(preds, gold) for name, preds in extracted.items()}
    return [
        {"id": q["id"], "category": q["category"], "expected": q["answer"]}
        | {f"got_{name}": extracted[name][i] for name in extracted}
        | {name: verdicts[name][i] for name in verdicts}
        for i, q in enumerate(questions)
    ]


def score(answers: list[dict], questions: list[dict], files: JudgeFiles) -> tuple[dict, list[dict]]:
    """Accuracy (%) under both of lm-eval's extractions, and the per-question rows."""
    rows = judgment_rows(answers, questions)
    n = len(rows)
    scores = {name: 100.0 * sum(r[name] for r in rows) / n for name in FILTERS.values()}
    return {"scores": scores, "n": n, "scorer": f"lm-eval {TASK}"}, rows


def question_scores(rows: list[dict]) -> dict[str, float]:
    """Per question: 100 if the flexible extraction matches the reference, else 0 (the claim's units)."""
    return {r["id"]: 100.0 * bool(r["flexible_extract"]) for r in rows}
