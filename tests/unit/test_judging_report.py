import pytest

from aft.config import load_config
from aft.judging import exact_match
from aft.launch import train_launcher
from aft.report import PAPER, direction_checks, markdown_table
from tests.conftest import load_yaml

QUESTIONS = [
    {"id": "a", "answer": "5", "category": "add"},
    {"id": "b", "answer": "x", "category": "reverse"},
    {"id": "c", "answer": "3", "category": "add"},
]


def test_exact_match_scores_last_turn():
    answers = [
        {"id": "a", "outputs": ["The answer is 5."]},
        {"id": "b", "outputs": ["no idea"]},
        {"id": "c", "outputs": ["The answer is 3.", "The answer is 4."]},
    ]
    r = exact_match(answers, QUESTIONS)
    assert r["scores"]["accuracy"] == pytest.approx(100 / 3)
    assert r["per_category"] == {"add": 50.0, "reverse": 0.0}
    assert r["well_formed"] == pytest.approx(200 / 3) and r["n"] == 3


def test_exact_match_refuses_missing_answers():
    with pytest.raises(ValueError, match="no answer"):
        exact_match([{"id": "a", "outputs": ["x"]}], QUESTIONS)


def _result(base, variant, mode, bench, **scores):
    return {
        "bench": bench,
        "judge": "j",
        "scores": scores,
        "wildcards": {"base": base, "variant": variant, "mode": mode, "bench": bench},
    }


def test_table_has_paper_shape_and_paper_numbers_beside_matching_bench():
    results = [
        _result("llama", v, m, "alpaca_eval2", lc_win_rate=10.0 + i, win_rate=20.0)
        for i, (v, m) in enumerate([("sft", "direct"), ("aft_off", "direct"), ("aft_off", "agg")])
    ]
    text = markdown_table(results, {"llama": "Llama-3.1-8B"}, paper_table=True)
    lines = text.splitlines()
    assert lines[0] == "| base | model | AE2 LC % | AE2 LC % (paper) | AE2 WR % | AE2 WR % (paper) |"
    assert lines[2] == "| llama | SFT | 10.0 | 8.0 | 20.0 | 7.3 |"
    assert lines[4] == "| llama | AFT-off-policy w/ Agg. | 12.0 | 40.3 | 20.0 | 47.8 |"
    assert PAPER["Llama-3.1-8B"]["AFT-off-policy w/ Agg."]["ae2_lc"] == 40.3


def test_miniature_table_has_no_paper_column():
    text = markdown_table(
        [_result("mini", "sft", "direct", "exact_match", accuracy=50.0)], {"mini": None}, True
    )
    assert text.splitlines()[0] == "| base | model | EM acc. % |"


def test_direction_checks():
    rs = [
        _result("m", "sft", "direct", "exact_match", accuracy=40.0),
        _result("m", "aft_off", "direct", "exact_match", accuracy=45.0),
        _result("m", "aft_off", "agg", "exact_match", accuracy=60.0),
        _result("m", "aft_on", "direct", "exact_match", accuracy=39.0),
        _result("m", "aft_on", "agg", "exact_match", accuracy=50.0),
    ]
    checks = direction_checks(rs)
    assert checks == [
        "m / exact_match / AFT-off-policy: w/ Agg. 60.0 > AFT 45.0 > SFT 40.0: holds",
        "m / exact_match / AFT-on-policy: w/ Agg. 50.0 > AFT 39.0 > SFT 40.0: does NOT hold",
    ]


def test_train_launcher():
    mini = load_config(load_yaml("config/config.yaml")).train
    paper = load_config(load_yaml("config/paper.yaml")).train
    assert train_launcher(mini) == "python"
    assert train_launcher(paper) == "torchrun --standalone --nproc_per_node=8"
