"""MT-Bench single-answer grading as FastChat's llm_judge does it (common.py, gen_judgment.py,
show_result.py), with FastChat's judge prompts read from judge_prompts.jsonl.

Each question is judged twice: turn 1 with `single-v1` (the first question and answer), turn 2 with
`single-v1-multi-turn` (the whole conversation, judged on the second answer). Math, reasoning and coding
use the `single-math-v1*` prompts with GPT-4's reference answers. The score is the first "[[n]]" in the
judgment, else the first "[n]"; a judgment without one is asked again up to a limit, then counted as
unparsable (FastChat's -1), listed, and left out of the means.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass

from aft.eval.registry import JudgeFiles
from aft.method.interface import Message
from aft.pipeline.config import JudgeConfig

NEED_REF_CATS = ("math", "reasoning", "coding")
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
PROMPT_NAMES = {  # (needs a reference, turn) -> FastChat judge prompt
    (False, 1): "single-v1",
    (True, 1): "single-math-v1",
    (False, 2): "single-v1-multi-turn",
    (True, 2): "single-math-v1-multi-turn",
}


def judge_prompts(rows: list[dict]) -> dict[str, dict]:
    """judge_prompts.jsonl by name; the four single-answer prompts must be there and rate as [[rating]]."""
    prompts = {r["name"]: r for r in rows}
    for name in PROMPT_NAMES.values():
        if name not in prompts:
            raise ValueError(f"judge prompts lack {name!r}; they have {sorted(prompts)}")
        if prompts[name]["type"] != "single" or prompts[name]["output_format"] != "[[rating]]":
            raise ValueError(f"judge prompt {name!r} is not a single-answer [[rating]] prompt")
    return prompts


def reference_answers(rows: list[dict]) -> dict[str, list[str]]:
    """GPT-4's reference answers (reference_answer/gpt-4.jsonl): question id -> the turns' answers."""
    return {str(r["question_id"]): list(r["choices"][0]["turns"]) for r in rows}


def prompt_name(category: str, turn: int) -> str:
    return PROMPT_NAMES[(category in NEED_REF_CATS, turn)]


def judge_messages(
    prompt: dict, questions: list[str], answers: list[str], references: list[str] | None, turn: int
) -> list[Message]:
    """The judge's conversation for one turn: FastChat's system prompt, then the filled template."""
    kwargs = {}
    if references is not None:
        kwargs = {"ref_answer_1": references[0], "ref_answer_2": references[1]}
    if turn == 1:
        user = prompt["prompt_template"].format(question=questions[0], answer=answers[0], **kwargs)
    elif turn == 2:
        user = prompt["prompt_template"].format(
            question_1=questions[0],
            question_2=questions[1],
            answer_1=answers[0],
            answer_2=answers[1],
            **kwargs,
        )
    else:
        raise ValueError(f"MT-Bench has turns 1 and 2, not {turn}")
    return [{"role": "system", "content": prompt["system_prompt"]}, {"role": "user", "content": user}]


def parse_score(judgment: str) -> float | None:
    """The score in a judgment: the first [[n]], else the first [n]; None when there is none, or when
    FastChat's literal_eval cannot read it ([[07]], full-width digits): counted as unparsable, not a crash."""
    match = ONE_SCORE.search(judgment) or ONE_SCORE_BACKUP.search(judgment)
    if not match:
        return None
    try:
        return float(ast.literal_eval(match.group(1)))
    except (SyntaxError, ValueError):
        return None


@dataclass(frozen=True)
class Match:
    """One judgment to make: a question's turn, the prompt chosen for it, the judge's messages."""

    id: str
    category: str
    turn: int
    prompt: str
    messages: list[Message]


def matches(
    questions: list[dict], answers: list[dict], prompts: dict[str, dict], references: dict[str, list[str]]
) -> list[Match]:
    """Turn 1 and turn 2 of every question, in question order (FastChat's make_match_single)."""
    by_id = {a["id"]: a for a in answers}
    missing = [q["id"] for q in questions if q["id"] not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} MT-Bench questions have no answer, e.g. {missing[:3]}")
    out = []
    for q in questions:
        outputs = by_id[q["id"]]["outputs"]
        if len(q["turns"]) != 2 or len(outputs) != 2:
            raise ValueError(
                f"question {q['id']}: MT-Bench needs 2 turns and 2 answers, got {len(q['turns'])} and"
                f" {len(outputs)}"
            )
        refs = None
        if q["category"] in NEED_REF_CATS:
            if q["id"] not in references:
                raise ValueError(f"question {q['id']} ({q['category']}) needs a reference answer; none given")
            refs = references[q["id"]]
        for turn in (1, 2):
            name = prompt_name(q["category"], turn)
            msgs = judge_messages(prompts[name], q["turns"], outputs, refs, turn)
            out.append(Match(q["id"], q["category"], turn, name, msgs))
    return out


Ask = Callable[[list[list[Message]], int], list[str]]  # (conversations, attempt) -> judgments


def judge(todo: list[Match], ask: Ask, max_parse_retries: int) -> list[dict]:
    """Judge every match; unparsable judgments are asked again (attempt 1, 2, ...) up to the limit."""
    texts: list[list[str]] = [[] for _ in todo]
    pending = list(range(len(todo)))
    for attempt in range(max_parse_retries + 1):
        if not pending:
            break
        replies = ask([todo[i].messages for i in pending], attempt)
        for i, text in zip(pending, replies, strict=True):
            texts[i].append(text)
        pending = [i for i in pending if parse_score(texts[i][-1]) is None]
    return [
        {
            "id": m.id,
            "category": m.category,
            "turn": m.turn,
            "judge_prompt": m.prompt,
            "user_prompt": m.messages[-1]["content"],
            "judgment": t[-1],
            "score": parse_score(t[-1]),
            "asked": len(t),
        }
        for m, t in zip(todo, texts, strict=True)
    ]


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def scores(judgments: list[dict]) -> dict:
    """FastChat's show_result: mean score of turn 1, of turn 2, and of all judgments, overall and per
    category; unparsable judgments are left out of the means and counted."""
    ok = [j for j in judgments if j["score"] is not None]

    def block(rows: list[dict]) -> dict[str, float | None]:
        return {
            "turn1": _mean([j["score"] for j in rows if j["turn"] == 1]),
            "turn2": _mean([j["score"] for j in rows if j["turn"] == 2]),
            "avg": _mean([j["score"] for j in rows]),
        }

    unparsable = [f"{j['id']}/turn{j['turn']}" for j in judgments if j["score"] is None]
    return {
        "scores": block(ok),
        "per_category": {
            c: block([j for j in ok if j["category"] == c])
            for c in sorted({j["category"] for j in judgments})
        },
        "n": len({j["id"] for j in judgments}),
        "n_judgments": len(judgments),
        "n_unparsable": len(unparsable),
        "unparsable": unparsable,
        "n_reasked": sum(j["asked"] > 1 for j in judgments),
    }


def question_rows(questions: list[dict]) -> list[dict]:
    """The 80 two-turn questions in the project's schema."""
    return [
        {"id": str(q["question_id"]), "turns": list(q["turns"]), "answer": None, "category": q["category"]}
        for q in questions
    ]


def judge_answers(
    jc: JudgeConfig,
    answers: list[dict],
    bench: list[dict],
    files: JudgeFiles,
    client,
    generator: str,
) -> tuple[dict, list[dict]]:
    """FastChat single-answer grading of both turns through `client` (aft.gen.endpoint)."""
    if jc.mt_bench is None:
        raise SystemExit("benchmark 'mt_bench' needs the judge.mt_bench section")
    if not files.judge_prompts:
        raise SystemExit("benchmark 'mt_bench' needs FastChat's judge prompts: give --judge-prompts FILE")
    cfg = jc.mt_bench
    todo = matches(bench, answers, judge_prompts(files.judge_prompts), reference_answers(files.reference))

    def ask(conversations: list[list[dict]], attempt: int) -> list[str]:
        decoding = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        requests = [client.request(c, **decoding) for c in conversations]
        replies = client.chat_many(requests, [attempt] * len(requests))
        return [(r.get("message") or {}).get("content") or "" for r in replies]

    judgments = judge(todo, ask, cfg.max_parse_retries)
    return scores(judgments) | {"protocol": "fastchat-single"}, judgments


def question_scores(rows: list[dict]) -> dict[str, float]:
    """Per question: the mean score of its judged turns (unparsable judgments left out, as in the means)."""
    by_id: dict[str, list[float]] = {}
    for r in rows:
        if r.get("score") is not None:
            by_id.setdefault(r["id"], []).append(float(r["score"]))
    return {i: sum(s) / len(s) for i, s in by_id.items()}
