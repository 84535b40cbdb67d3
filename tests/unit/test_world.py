import random

import pytest

from aft.method.proposals import ASPECT_KEYS
from aft.miniature import world
from aft.pipeline.config import MiniatureWorld

MW = MiniatureWorld(
    tasks=["add", "sub", "max", "min", "sort", "reverse", "count"],
    max_operand=20,
    n_pretrain=400,
    n_train=100,
    n_eval=50,
    pretrain_wrong_fraction=0.3,
    offpolicy_model_accuracies=[0.9, 0.5],
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 42.", "42"),
        ("Let me work it out. The answer is 1, 2, 3.", "1, 2, 3"),
        ("The answer is 4. No wait, The answer is 5.", "5"),
        ("The answer is olak.<|end|>", None),
        ("I do not know.", None),
        ("The answer is  7 .", "7"),  # spacing is normalised
    ],
)
def test_extract_answer(text, expected):
    assert world.extract_answer(text) == expected


@pytest.mark.parametrize("kind", MW.tasks)
def test_tasks_are_right_and_mistakes_are_wrong(kind):
    rng = random.Random(0)
    for _ in range(200):
        t = world.make_task(kind, rng, 20)
        assert world.is_correct(world.format_answer(t.answer), t.answer)
        wrong = world.wrong_answer(t, rng)
        assert wrong != t.answer and not world.is_correct(world.format_answer(wrong), t.answer)


def test_splits_are_disjoint_and_deterministic():
    a, b = world.split_tasks(MW, 0), world.split_tasks(MW, 0)
    assert a == b
    queries = {k: {t.query for t in v} for k, v in a.items()}
    assert [len(a[k]) for k in ("pretrain", "train", "eval")] == [400, 100, 50]
    assert not queries["eval"] & queries["train"] and not queries["eval"] & queries["pretrain"]
    assert not queries["train"] & queries["pretrain"]


def test_sizing_the_evaluation_set_changes_nothing_the_models_learn_from():
    small, large = world.split_tasks(MW, 0), world.split_tasks(MW.model_copy(update={"n_eval": 200}), 0)
    assert small["train"] == large["train"] and small["pretrain"] == large["pretrain"]
    assert large["eval"][:50] == small["eval"] and len(large["eval"]) == 200


def test_corpus_has_the_configured_share_of_wrong_answers():
    tasks = world.split_tasks(MW, 0)["pretrain"]
    blocks = world.corpus_text(MW, tasks, 1).strip().split("\n\n")
    assert len(blocks) == len(tasks)
    wrong = sum(not world.is_correct(b, t.answer) for b, t in zip(blocks, tasks))
    assert 0.2 < wrong / len(tasks) < 0.4


def test_ultrafeedback_rows_have_the_published_schema_and_accuracy():
    tasks = world.split_tasks(MW, 0)["train"]
    rows = world.ultrafeedback_rows(MW, tasks, 2)
    row = rows[0]
    assert set(row) == {
        "source",
        "instruction",
        "models",
        "completions",
        "correct_answers",
        "incorrect_answers",
    }
    c = row["completions"][0]
    assert {"model", "principle", "custom_system_prompt", "response", "annotations", "critique"} <= set(c)
    assert set(ASPECT_KEYS.values()) <= set(c)
    assert set(c["annotations"]) == set(world.ASPECTS)
    acc = [
        sum(world.is_correct(r["completions"][i]["response"], t.answer) for r, t in zip(rows, tasks))
        / len(rows)
        for i in range(2)
    ]
    assert acc[0] > 0.75 and 0.3 < acc[1] < 0.7


def test_response_style_does_not_reveal_the_simulated_model():
    rows = world.ultrafeedback_rows(MW, world.split_tasks(MW, 0)["train"], 2)
    prefixes = {r["completions"][0]["response"].split("The answer is")[0] for r in rows}
    assert len(prefixes) == len(world.STYLES)
