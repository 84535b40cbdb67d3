import pytest

from aft.eval import claims
from aft.eval.registry import REGISTRY
from aft.eval.report import claims_section, headline_metrics, markdown_table, question_scores_of
from aft.miniature.exact_match import exact_match
from aft.pipeline.config import load_config
from aft.train.launch import train_launcher
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


def _result(base, variant, mode, bench, judge="j", paper_judge=False, **scores):
    return {
        "bench": bench,
        "judge": judge,
        "paper_judge": paper_judge,
        "scores": scores,
        "wildcards": {"base": base, "variant": variant, "mode": mode, "bench": bench},
    }


def test_table_has_paper_shape_and_paper_numbers_beside_matching_bench():
    results = [
        _result("llama", v, m, "alpaca_eval2", lc_win_rate=10.0 + i, win_rate=20.0)
        for i, (v, m) in enumerate([("sft", "direct"), ("aft_off", "direct"), ("aft_off", "agg")])
    ]
    results[0]["standard_errors"] = {"lc_win_rate": 0.44, "win_rate": 1.26}
    text = markdown_table(results, {"llama": "Llama-3.1-8B"}, paper_table=True)
    lines = text.splitlines()
    assert lines[0] == (
        "| base | model | AE2 LC % [j] | AE2 LC % (paper) [GPT-4 Turbo]"
        " | AE2 WR % [j] | AE2 WR % (paper) [GPT-4 Turbo] |"
    )
    assert lines[2] == "| llama | SFT | 10.0 ± 0.4 | 8.0 | 20.0 ± 1.3 | 7.3 |"
    assert lines[4] == "| llama | AFT-off-policy w/ Agg. | 12.0 | 40.3 | 20.0 | 47.8 |"
    assert REGISTRY["alpaca_eval2"].paper["Llama-3.1-8B"]["AFT-off-policy w/ Agg."]["ae2_lc"] == 40.3


def test_an_open_judges_numbers_are_labelled_as_its_own_not_gpt4s():
    results = [
        _result(
            "llama",
            "sft",
            "direct",
            "mt_bench",
            judge="qwen-72b (10.0.0.5:8000)",
            turn1=7.0,
            turn2=6.0,
            avg=6.5,
        ),
        _result(
            "llama", "sft", "direct", "alpaca_eval2", "gpt-4-1106-preview (OpenAI API)", True, lc_win_rate=9.0
        ),
    ]
    results[0] |= {"n_unparsable": 2}
    text = markdown_table(results, {"llama": "Llama-3.1-8B"}, paper_table=True)
    head = text.splitlines()[0]
    assert "MT 1st [qwen-72b (10.0.0.5:8000)] | MT 1st (paper) [GPT-4] |" in head
    assert "AE2 LC % [gpt-4-1106-preview (OpenAI API)] | AE2 LC % (paper) [GPT-4 Turbo]" in head
    assert "- mt_bench: qwen-72b (10.0.0.5:8000): NOT the paper's judge (GPT-4)" in text
    assert "2 judgments could not be parsed" in text
    assert "- alpaca_eval2: gpt-4-1106-preview (OpenAI API): the paper's judge (GPT-4 Turbo)" in text


def test_miniature_table_has_no_paper_column():
    text = markdown_table(
        [_result("mini", "sft", "direct", "exact_match", accuracy=50.0)], {"mini": None}, True
    )
    assert text.splitlines()[0] == "| base | model | EM acc. % |"


def test_the_report_checks_the_claims_from_the_judgments():
    def judged(correct: list[bool]) -> list[dict]:
        return [{"id": f"q{i}", "correct": c} for i, c in enumerate(correct)]

    rs = [
        _result("m", "sft", "direct", "exact_match", accuracy=30.0),
        _result("m", "aft_off", "direct", "exact_match", accuracy=70.0),
        _result("m", "aft_off", "agg", "exact_match", accuracy=70.0),
    ]
    better = judged([True] * 70 + [False] * 30)  # right where SFT is wrong and the other way round
    js = [judged([False] * 70 + [True] * 30), better, better]
    text, rows = claims_section(rs, question_scores_of(rs, js), {"m": None})
    assert [(r.claim.text, r.verdict) for r in rows] == [
        ("AFT-off-policy > SFT", "reproduced"),  # +40 points, standard error about 9
        ("AFT-off-policy w/ Agg. > AFT-off-policy", "inconclusive"),  # the same answers: exactly 0
    ]
    assert rows[0].interval.diff == 40.0 and rows[0].interval.lo > 20.0
    assert rows[1].interval == claims.Interval(0.0, 0.0, 0.0, 100)
    assert "| m | exact_match (EM acc. %) | AFT-off-policy > SFT | +40.0 [" in text


def test_the_table_gives_each_score_its_interval_over_seeds_or_questions():
    def judged(n_right: int) -> list[dict]:
        return [{"id": f"q{i}", "correct": i < n_right} for i in range(100)]

    one = [_result("m", "sft", "direct", "exact_match", accuracy=50.0)]
    text = markdown_table(one, {"m": None}, False, question_scores_of(one, [judged(50)]))
    # one seed: a bootstrap over the 100 questions of a 50% score (about +-10)
    cell = text.split("| m | SFT | ")[1].split(" |")[0]
    lo, hi = (float(x) for x in cell.removeprefix("50.0 [").removesuffix("]").split(", "))
    assert 38.0 < lo < 42.5 and 57.5 < hi < 62.0
    assert "one seed (0)" in text
    three = [_result("m", "sft", "direct", "exact_match", accuracy=a) for a in (10.0, 12.0, 14.0)]
    for seed, r in enumerate(three):
        r["wildcards"]["seed"] = str(seed)
    text = markdown_table(three, {"m": None}, False)
    assert "| m | SFT | 12.0 [7.0, 17.0] |" in text and "mean over 3 seeds (0, 1, 2)" in text
    assert headline_metrics(three) == {"m.sft.direct.exact_match.accuracy": 12.0}


def test_train_launcher():
    mini = load_config(load_yaml("config/config.yaml")).train
    paper = load_config(load_yaml("config/paper.yaml")).train
    assert train_launcher(mini) == "python"
    assert train_launcher(paper) == "torchrun --standalone --nproc_per_node=8"


def test_headline_metrics_name_each_result_and_leave_out_missing_scores():
    def res(variant: str, bench: str, scores: dict) -> dict:
        wildcards = {"base": "b", "variant": variant, "mode": "agg"}
        return {"bench": bench, "scores": scores, "wildcards": wildcards}

    results = [
        res("sft", "exact_match", {"accuracy": 41.5}),
        res("aft_on", "alpaca_eval2", {"lc_win_rate": None, "win_rate": 30.0}),  # LC fit could not run
        res("aft_on", "mt_bench", {"avg": 6.25, "turn_1": 7.0}),
    ]
    assert headline_metrics(results) == {
        "b.sft.agg.exact_match.accuracy": 41.5,
        "b.aft_on.agg.mt_bench.avg": 6.25,
    }


def test_a_plot_panel_shows_the_raw_win_rate_when_no_row_has_the_lc_one():
    """AlpacaEval 2 without df_gamed.csv: LC is None on every row, so the panel plots the raw win rate
    (the claims' score) rather than an empty frame; with LC, LC as before (the headline)."""
    from aft.eval.report import collect, panel

    no_lc = [
        _result("b", "sft", m, "alpaca_eval2", lc_win_rate=None, win_rate=w)
        for m, w in (("direct", 46.3), ("agg", 43.3))
    ]
    title, bars = panel(collect(no_lc), "b", "alpaca_eval2", None)
    assert title == "AE2 WR %" and [(label, e.mean) for label, e in bars] == [
        ("SFT", 46.3),
        ("SFT w/ Agg.", 43.3),
    ]
    with_lc = [_result("b", "sft", "direct", "alpaca_eval2", lc_win_rate=12.0, win_rate=20.0)]
    title, bars = panel(collect(with_lc), "b", "alpaca_eval2", None)
    assert title == "AE2 LC %" and bars[0][1].mean == 12.0
