"""MT-Bench judging: FastChat's prompts checked against judge_prompts.jsonl field by field, prompt
choice by category and turn, score parsing, FastChat's means, re-asking unparsable judgments, and the
whole loop through the judge client against a faulty fake server (complete, honest result)."""

from __future__ import annotations

import re

import pytest

from aft.eval import mt_bench as mt
from aft.gen.endpoint import EndpointClient
from aft.pipeline.config import EndpointConfig
from aft.pipeline.sources import read_records
from tests.conftest import shared_file
from tests.judge_fakes import FAKE_JUDGE_PROMPTS, FakeJudgeServer, chat_reply


@pytest.fixture(scope="module")
def fastchat():
    prompts = read_records(shared_file("data/mt_bench/judge_prompts.jsonl"))
    questions = mt.question_rows(read_records(shared_file("data/mt_bench/question.jsonl")))
    refs = mt.reference_answers(read_records(shared_file("data/mt_bench/reference_answer_gpt-4.jsonl")))
    return {"prompts": {p["name"]: p for p in prompts}, "questions": questions, "refs": refs}


def fields_in(template: str, filled: str) -> dict[str, str]:
    """Read the placeholder values back out of a filled template: the literal text between the
    placeholders must be the file's, character for character."""
    names = re.findall(r"\{(\w+)\}", template)
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<f{i // 2}>.*)"
        for i, part in enumerate(re.split(r"\{(\w+)\}", template))
    )
    m = re.fullmatch(pattern, filled, flags=re.DOTALL)
    assert m, "the filled prompt does not follow the file's template"
    return {name: m.group(f"f{k}") for k, name in enumerate(names)}


CASES = [  # (question id, turn, FastChat prompt, placeholder -> where its value comes from)
    ("81", 1, "single-v1", {"question": "q1", "answer": "a1"}),
    (
        "81",
        2,
        "single-v1-multi-turn",
        {"question_1": "q1", "answer_1": "a1", "question_2": "q2", "answer_2": "a2"},
    ),
    ("111", 1, "single-math-v1", {"question": "q1", "ref_answer_1": "r1", "answer": "a1"}),
    (
        "111",
        2,
        "single-math-v1-multi-turn",
        {"question_1": "q1", "ref_answer_1": "r1", "question_2": "q2", "ref_answer_2": "r2", "answer_1": "a1"}
        | {"answer_2": "a2"},
    ),
]


@pytest.mark.parametrize(("qid", "turn", "name", "expected"), CASES, ids=[c[2] for c in CASES])
def test_judge_prompts_follow_judge_prompts_jsonl_field_by_field(fastchat, qid, turn, name, expected):
    q = next(x for x in fastchat["questions"] if x["id"] == qid)
    refs = fastchat["refs"][qid] if q["category"] in mt.NEED_REF_CATS else None
    answers = ["FIRST ANSWER {not a placeholder}", "SECOND ANSWER"]
    todo = mt.matches(
        [q],
        [{"id": qid, "outputs": answers}],
        mt.judge_prompts(list(fastchat["prompts"].values())),
        fastchat["refs"],
    )
    match = todo[turn - 1]
    file = fastchat["prompts"][name]
    assert (match.prompt, match.turn) == (name, turn)
    assert file["type"] == "single" and file["output_format"] == "[[rating]]"
    system, user = match.messages
    assert system == {"role": "system", "content": file["system_prompt"]}
    assert user["role"] == "user"
    source = {"q1": q["turns"][0], "q2": q["turns"][1], "a1": answers[0], "a2": answers[1]}
    if refs:
        source |= {"r1": refs[0], "r2": refs[1]}
    assert fields_in(file["prompt_template"], user["content"]) == {k: source[v] for k, v in expected.items()}


def test_single_v1_reads_as_fastchat_writes_it(fastchat):
    msgs = mt.judge_messages(fastchat["prompts"]["single-v1"], ["What is 2+2?", "x"], ["4", "y"], None, 1)
    assert msgs[0]["content"] == "You are a helpful assistant."
    assert msgs[1]["content"].startswith("[Instruction]\nPlease act as an impartial judge")
    assert msgs[1]["content"].endswith(
        "[Question]\nWhat is 2+2?\n\n[The Start of Assistant's Answer]\n4\n[The End of Assistant's Answer]"
    )


def test_every_question_gets_two_judgments_and_math_reasoning_coding_get_references(fastchat):
    qs = fastchat["questions"]
    answers = [{"id": q["id"], "outputs": ["a", "b"]} for q in qs]
    todo = mt.matches(qs, answers, mt.judge_prompts(list(fastchat["prompts"].values())), fastchat["refs"])
    assert len(qs) == 80 and len(todo) == 160
    by_prompt = {}
    for m in todo:
        by_prompt.setdefault(m.prompt, set()).add(m.category)
    assert (
        by_prompt["single-math-v1"]
        == by_prompt["single-math-v1-multi-turn"]
        == {"math", "reasoning", "coding"}
    )
    assert by_prompt["single-v1"] == {"writing", "roleplay", "extraction", "stem", "humanities"}
    math = next(m for m in todo if m.id == "111" and m.turn == 2)
    assert fastchat["refs"]["111"][1] in math.messages[1]["content"]


PROMPT_CHOICE = [
    ("writing", 1, "single-v1"),
    ("stem", 2, "single-v1-multi-turn"),
    ("math", 1, "single-math-v1"),
    ("reasoning", 2, "single-math-v1-multi-turn"),
    ("coding", 1, "single-math-v1"),
]


@pytest.mark.parametrize(("category", "turn", "name"), PROMPT_CHOICE)
def test_prompt_choice(category, turn, name):
    assert mt.prompt_name(category, turn) == name


PARSE = [
    ("double-brackets", "The answer is fine. Rating: [[5]]", 5.0),
    ("decimal", "Rating: [[8.5]]", 8.5),
    ("ten", "[[10]]", 10.0),
    ("single-bracket-fallback", "Rating: [7]", 7.0),
    ("first-double-wins", "Rating: [[3]], not [[9]]", 3.0),
    ("double-beats-earlier-single", "see [2] ... Rating: [[6]]", 6.0),
    ("no-score", "I cannot rate this.", None),
    ("words", "Rating: [[ten]]", None),
    ("empty", "", None),
]


@pytest.mark.parametrize(("case", "text", "score"), PARSE, ids=[p[0] for p in PARSE])
def test_parse_score(case, text, score):
    assert mt.parse_score(text) == score


def J(id_, cat, turn, score, asked=1):
    return {"id": id_, "category": cat, "turn": turn, "score": score, "asked": asked}


def test_scores_are_fastchat_means_with_unparsable_counted_not_averaged():
    judgments = [
        J("1", "writing", 1, 8.0),
        J("1", "writing", 2, 6.0),
        J("2", "math", 1, 4.0, asked=2),
        J("2", "math", 2, None, asked=3),
    ]
    r = mt.scores(judgments)
    assert r["scores"] == {"turn1": 6.0, "turn2": 6.0, "avg": 6.0}
    assert r["per_category"] == {
        "math": {"turn1": 4.0, "turn2": None, "avg": 4.0},
        "writing": {"turn1": 8.0, "turn2": 6.0, "avg": 7.0},
    }
    assert (r["n"], r["n_judgments"], r["n_unparsable"], r["unparsable"], r["n_reasked"]) == (
        2,
        4,
        1,
        ["2/turn2"],
        2,
    )


def _match(i: int) -> mt.Match:
    return mt.Match(str(i), "writing", 1, "single-v1", [{"role": "user", "content": f"q{i}"}])


def test_unparsable_judgments_are_asked_again_up_to_the_limit():
    calls = []

    def ask(convs, attempt):
        calls.append((attempt, [c[0]["content"] for c in convs]))
        return [
            "Rating: [[6]]"
            if c[0]["content"] == "q1" and attempt == 1
            else "no idea"
            if c[0]["content"] != "q0"
            else "[[9]]"
            for c in convs
        ]

    out = mt.judge([_match(0), _match(1), _match(2)], ask, max_parse_retries=2)
    assert calls == [(0, ["q0", "q1", "q2"]), (1, ["q1", "q2"]), (2, ["q2"])]
    assert [(j["score"], j["asked"]) for j in out] == [(9.0, 1), (6.0, 2), (None, 3)]
    assert out[2]["judgment"] == "no idea"


def test_missing_answers_and_references_are_errors():
    q = {"id": "111", "category": "math", "turns": ["a", "b"]}
    with pytest.raises(ValueError, match="have no answer"):
        mt.matches([q], [], {}, {})
    with pytest.raises(ValueError, match="needs a reference answer"):
        mt.matches([q], [{"id": "111", "outputs": ["x", "y"]}], {}, {})


def test_full_loop_through_a_faulty_endpoint_gives_a_complete_honest_result(tmp_path):
    """500s, garbage and timeouts are retried; a judge that never gives a score for one judgment is
    asked again, then that judgment is counted as unparsable: every judgment is accounted for."""
    questions = [
        {"id": "1", "category": "writing", "turns": ["w1", "w2"]},
        {"id": "2", "category": "math", "turns": ["m1", "m2"]},
    ]
    answers = [{"id": "1", "outputs": ["A1", "A2"]}, {"id": "2", "outputs": ["B1", "B2"]}]
    refs = {"2": ["R1", "R2"]}
    faults = {0: (500, "boom", {}, 0.0), 1: (200, "<garbage>", {}, 0.0), 2: (200, "{}", {}, 0.0)}

    def script(k, body, headers):
        if k in faults:
            return faults[k]
        if k == 3:
            return chat_reply("x")[:3] + (1.0,)  # a timeout
        text = body["messages"][1]["content"]
        if text.startswith("m1"):  # math turn 2: never parsable
            return chat_reply("I refuse to score.")
        return chat_reply(f"Rating: [[{9 if 'w1' in text else 5}]]")

    ep = EndpointConfig(
        base_url=None,
        api_key_env="K",
        concurrency=1,
        timeout_s=0.3,
        max_retries=5,
        backoff_initial_s=0.0,
        backoff_max_s=0.0,
    )
    with FakeJudgeServer(script) as srv:
        ep = ep.model_copy(update={"base_url": srv.base_url})
        with EndpointClient(ep, "fake-judge", tmp_path / "cache", {"K": "k"}) as c:
            todo = mt.matches(questions, answers, mt.judge_prompts(FAKE_JUDGE_PROMPTS), refs)

            def ask(convs, attempt):
                replies = c.chat_many(
                    [c.request(x, temperature=0.0, max_tokens=64) for x in convs], [attempt] * len(convs)
                )
                return [r["message"]["content"] for r in replies]

            judgments = mt.judge(todo, ask, max_parse_retries=2)
    r = mt.scores(judgments)
    assert [j["judge_prompt"] for j in judgments] == [
        "single-v1",
        "single-v1-multi-turn",
        "single-math-v1",
        "single-math-v1-multi-turn",
    ]
    assert r["scores"] == {"turn1": 7.0, "turn2": 9.0, "avg": pytest.approx(23 / 3)}
    assert (r["n_judgments"], r["n_unparsable"], r["unparsable"], r["n_reasked"]) == (4, 1, ["2/turn2"], 1)
    assert judgments[3]["asked"] == 3 and judgments[3]["judgment"] == "I refuse to score."
    assert dict(c.stats.errors) == {"http_500": 1, "malformed": 2, "timeout": 1}
    assert c.stats.retries == 4 and c.stats.calls == 6  # 4 judgments + 2 re-asks


@pytest.mark.parametrize(
    "judgment", ["Rating: [[07]]", "Rating: [[\uff18]]"], ids=["leading-zero", "full-width"]
)
def test_scores_literal_eval_cannot_read_are_unparsable_not_a_crash(judgment):
    assert mt.parse_score(judgment) is None  # FastChat's literal_eval raises SyntaxError on both
