"""The claims check: paired bootstrap intervals over questions and the verdict rule (pure)."""

from __future__ import annotations

import pytest

from aft.eval import claims
from aft.eval.claims import CLAIMS, Interval, check_claims, paired_bootstrap, verdict

IDS = [f"q{i}" for i in range(200)]


def test_identical_rows_differ_by_exactly_zero():
    same = {i: float(k % 2) * 100 for k, i in enumerate(IDS)}
    assert paired_bootstrap(same, same) == Interval(0.0, 0.0, 0.0, 200)


def test_a_row_better_on_every_question_has_an_interval_at_its_difference():
    low = {i: 0.0 for i in IDS}
    high = {i: 100.0 for i in IDS}
    assert paired_bootstrap(high, low) == Interval(100.0, 100.0, 100.0, 200)


def test_the_interval_brackets_the_difference_and_pairs_by_question():
    # row a wins 60 questions the other loses and loses 40 it wins: +10 points, a real spread
    a = {i: 100.0 if k < 60 else 0.0 for k, i in enumerate(IDS[:100])} | {i: 50.0 for i in IDS[100:]}
    b = {i: 0.0 if k < 60 else 100.0 for k, i in enumerate(IDS[:100])} | {i: 50.0 for i in IDS[100:]}
    b["extra"] = 0.0  # a question only one side has is left out
    iv = paired_bootstrap(a, b, resamples=4000, seed=1)
    assert iv.n == 200 and iv.diff == pytest.approx(10.0)
    # the standard error of the mean paired difference: sd 70 / sqrt(200) ~ 4.9 -> about +-9.7
    assert iv.lo < 10.0 < iv.hi and 7.0 < (iv.hi - iv.lo) / 2 < 12.5
    assert paired_bootstrap(a, b, resamples=4000, seed=1) == iv  # seeded: the same interval again


def test_no_shared_question_is_an_error():
    with pytest.raises(ValueError, match="share no scored question"):
        paired_bootstrap({"a": 1.0}, {"b": 1.0})


@pytest.mark.parametrize(
    ("lo", "hi", "greater", "not_greater"),
    [
        (0.5, 3.0, "reproduced", "contradicted"),
        (-3.0, -0.5, "contradicted", "reproduced"),
        (-1.0, 2.0, "inconclusive", "inconclusive"),
        (0.0, 2.0, "inconclusive", "inconclusive"),  # touching zero is not beyond it
    ],
    ids=["above-zero", "below-zero", "spans-zero", "touches-zero"],
)
def test_verdicts(lo, hi, greater, not_greater):
    iv = Interval((lo + hi) / 2, lo, hi, 10)
    assert verdict(iv, "greater") == greater
    assert verdict(iv, "not_greater") == not_greater


def test_each_claim_is_checked_where_both_rows_exist_with_the_papers_difference():
    up = {i: 100.0 for i in IDS}
    down = {i: 0.0 for i in IDS}
    scores = {
        ("b", "x", "sft", "direct"): {"0": down},
        ("b", "x", "aft_off", "direct"): {"0": up},
        ("b", "x", "aft_off", "agg"): {"0": down},
    }
    paper = {("b", "x"): {("sft", "direct"): 8.0, ("aft_off", "direct"): 20.3, ("aft_off", "agg"): 40.3}}
    rows = check_claims(scores, paper)
    assert [(r.claim.text, r.verdict, r.interval.diff, r.paper_diff) for r in rows] == [
        ("AFT-off-policy > SFT", "reproduced", 100.0, 12.3),
        ("AFT-off-policy w/ Agg. > AFT-off-policy", "contradicted", -100.0, 20.0),
    ]
    table = claims.markdown(rows, {"x": "X %"})
    assert (
        "| b | x (X %) | AFT-off-policy > SFT | +100.0 [+100.0, +100.0] | +12.3 | reproduced | 1 | 200 |"
        in table
    )
    assert "Each seed alone" not in table  # one seed: no per-seed table
    assert len(CLAIMS) == 5


def _mixed(k: int, wins: int) -> dict[str, float]:
    """Seed k's row: 100 on the first `wins` of 200 questions."""
    return {i: 100.0 if n < wins else 0.0 for n, i in enumerate(IDS)}


def test_several_seeds_resample_seeds_and_questions_and_each_seed_is_shown():
    # AFT beats SFT by 10, 30 and 50 points in three seeds: the mean is +30, and the seeds' spread widens
    # the interval beyond any one seed's
    sft = {str(s): _mixed(s, 50) for s in range(3)}
    aft = {str(s): _mixed(s, 50 + w) for s, w in zip(range(3), (20, 60, 100), strict=True)}
    scores = {("b", "x", "sft", "direct"): sft, ("b", "x", "aft_off", "direct"): aft}
    (row,) = check_claims(scores)
    assert row.interval.diff == pytest.approx(30.0) and row.interval.n == 200
    assert sorted(row.per_seed) == ["0", "1", "2"]
    assert [row.per_seed[s].diff for s in "012"] == pytest.approx([10.0, 30.0, 50.0])
    widest_seed = max(row.per_seed[s].hi - row.per_seed[s].lo for s in "012")
    assert row.interval.hi - row.interval.lo > widest_seed
    assert row.interval.lo < 30.0 < row.interval.hi and row.verdict == "reproduced"
    table = claims.markdown([row], {"x": "X %"})
    assert "| 3 | 200 |" in table and "| b | x | AFT-off-policy > SFT | +10.0 [" in table


def test_a_claim_no_question_can_decide_is_named_not_checked():
    """A judge that scored nothing (every MT-Bench judgment of a weak open judge unparsable) leaves a row
    with no per-question score: its claims are listed as not checked, the others go on."""
    scores = {
        ("b", "mt", "sft", "direct"): {"0": {}},
        ("b", "mt", "sft", "agg"): {"0": {}},
        ("b", "x", "sft", "direct"): {"0": {i: 0.0 for i in IDS}},
        ("b", "x", "sft", "agg"): {"0": {i: 100.0 for i in IDS}},
    }
    rows = check_claims(scores)
    assert [(r.bench, r.verdict) for r in rows] == [("x", "contradicted")]
    assert claims.unchecked_claims(scores) == ["b mt: SFT w/ Agg. not better than SFT"]
    table = claims.markdown(rows, {"x": "X %"}, claims.unchecked_claims(scores))
    assert table.endswith(
        "Not checked (no question has a score in both rows, e.g. every judgment unparsable):"
        " b mt: SFT w/ Agg. not better than SFT.\n"
    )


def test_seeds_must_match_across_the_two_rows():
    with pytest.raises(ValueError, match="share no seed"):
        claims.claim_interval({"0": {"a": 1.0}}, {"1": {"a": 1.0}})


def test_question_scores_of_each_benchmark():
    from aft.eval import alpaca_eval2, mt_bench
    from aft.miniature import exact_match

    assert exact_match.question_scores([{"id": "a", "correct": True}, {"id": "b", "correct": False}]) == {
        "a": 100.0,
        "b": 0.0,
    }
    rows = [
        {"id": "ae000", "preference": 2.0},
        {"id": "ae001", "preference": 1.25},
        {"id": "ae002", "preference": None},
    ]
    assert alpaca_eval2.question_scores(rows) == {"ae000": 100.0, "ae001": 25.0}
    turns = [
        {"id": "81", "score": 8.0},
        {"id": "81", "score": 6.0},
        {"id": "82", "score": None},
        {"id": "82", "score": 4.0},
    ]
    assert mt_bench.question_scores(turns) == {"81": 7.0, "82": 4.0}
