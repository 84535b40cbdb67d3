"""The inference-scaling analysis (aft.eval.scaling): strategy shapes, cost means, the points of the
curves and which strategies each scaling claim compares, with its paired interval. Pure: made-up
per-question scores, no model."""

from __future__ import annotations

import pytest

from aft.eval.scaling import (
    StrategyShape,
    check,
    cost_means,
    markdown,
    matched,
    plot,
    points,
    scaling_claims,
)

SHAPES = {
    "direct": StrategyShape("direct", 1, 0),
    "agg": StrategyShape("propose_aggregate", 5, 2),
    "w1d1": StrategyShape("propose_aggregate", 1, 1),
    "w4d1": StrategyShape("propose_aggregate", 4, 1),
    "w1d2": StrategyShape("propose_aggregate", 1, 2),
    "w4d2": StrategyShape("propose_aggregate", 4, 2),
    "w4d3": StrategyShape("propose_aggregate", 4, 3),
    "vote-4": StrategyShape("majority_vote", 4, 0),
    "vote-16": StrategyShape("majority_vote", 16, 0),
    "bon-8": StrategyShape("best_of_n", 8, 0),
    "bon-16": StrategyShape("best_of_n", 16, 0),
}
TOKENS = {
    "direct": 10,
    "agg": 110,
    "w1d1": 20,
    "w4d1": 50,
    "w1d2": 30,
    "w4d2": 90,
    "w4d3": 130,
    "vote-4": 40,
    "vote-16": 160,
    "bon-8": 80,
    "bon-16": 160,
}
QUESTIONS = [f"q{i}" for i in range(40)]


def right(k: int) -> dict[str, float]:
    """The first k questions right (100), the rest wrong."""
    return {q: 100.0 * (i < k) for i, q in enumerate(QUESTIONS)}


# the aggregator gets better with width and depth; vote-16 is worse than agg
CORRECT = {
    "direct": 10,
    "agg": 34,
    "w1d1": 12,
    "w4d1": 20,
    "w1d2": 14,
    "w4d2": 30,
    "w4d3": 36,
    "vote-4": 16,
    "vote-16": 18,
    "bon-8": 30,
    "bon-16": 36,  # best-of-16 two questions ahead of agg: too few to call either way
}
SCORES = {("mini", "exact_match", "aft_on", m): {"0": right(k)} for m, k in CORRECT.items()}
SCORES[("mini", "exact_match", "sft", "agg")] = {"0": right(5)}
COSTS = {k: {"generated_tokens": float(TOKENS[k[3]]), "computed_prompt_tokens": 7.0} for k in SCORES}


def test_shapes_count_generations_and_name_their_curve():
    assert SHAPES["agg"].generations == 11 and SHAPES["w4d3"].generations == 13
    assert SHAPES["vote-16"].generations == 16 and SHAPES["direct"].generations == 1
    assert SHAPES["bon-16"].generations == 16
    assert [SHAPES[m].family for m in ("direct", "w4d2", "vote-4", "bon-8")] == [
        "direct",
        "agg depth 2",
        "majority vote",
        "best-of-N",
    ]


def test_cost_means_are_per_question_over_every_seed():
    seed0 = [
        {"usage": {"generated_tokens": 10, "prompt_tokens": 30, "cached_prompt_tokens": 10, "requests": 2}}
    ]
    seed1 = [
        {
            "usage": {
                "generated_tokens": 20,
                "prompt_tokens": 30,
                "cached_prompt_tokens": 30,
                "requests": 2,
                "reward_tokens": 50,
            }
        }
    ]
    assert cost_means([seed0, seed1]) == {
        "generated_tokens": 15.0,
        "computed_prompt_tokens": 10.0,
        "reward_tokens": 25.0,  # answers without the field (before best-of-N) read none
    }
    assert cost_means([[{"id": "q"}]]) is None  # answers made before cost accounting


def test_rows_without_a_cost_are_left_out_of_points_and_claims():
    costs = {k: v for k, v in COSTS.items() if k[3] != "vote-16"}
    assert "vote-16" not in {p.mode for p in points(SCORES, costs, SHAPES)}
    assert [c.lower[1] for _, _, c in scaling_claims(SCORES, costs, SHAPES)][-2] == "vote-4"


def test_matched_is_the_cheapest_with_at_least_as_many_tokens():
    tokens = {"agg": 110, "vote-4": 40, "vote-16": 160, "vote-8": 80}
    assert matched("agg", ["vote-4", "vote-8", "vote-16"], tokens) == "vote-16"
    assert matched("agg", ["vote-4", "vote-8"], tokens) == "vote-8"  # none enough: the largest
    assert matched("agg", [], tokens) is None


def test_scaling_claims_compare_the_extremes_of_the_most_swept_dimension():
    texts = [(c.higher, c.lower) for _, _, c in scaling_claims(SCORES, COSTS, SHAPES)]
    # width: depth 1 and 2 both have two widths (and agg's depth 2 a third): depth 2, n=5 vs n=1
    # depth: width 4 has depths 1, 2, 3: 3 vs 1; agg vs the vote and the best-of-N with >= 110 tokens
    assert texts == [
        (("aft_on", "agg"), ("aft_on", "w1d2")),
        (("aft_on", "w4d3"), ("aft_on", "w4d1")),
        (("aft_on", "agg"), ("aft_on", "vote-16")),
        (("aft_on", "agg"), ("aft_on", "bon-16")),
    ]  # and none for SFT, not trained to aggregate


def test_scaling_claims_get_paired_intervals_and_verdicts():
    rows = check(SCORES, COSTS, SHAPES)
    assert [r.verdict for r in rows] == ["reproduced", "reproduced", "reproduced", "inconclusive"]
    width, depth, vote, bon = rows
    assert bon.interval.diff == pytest.approx(100 * (34 - 36) / 40)
    assert "best-of-N at matched tokens (agg 110 vs bon-16 160" in bon.claim.text
    assert width.interval.diff == pytest.approx(100 * (34 - 14) / 40)
    assert depth.interval.diff == pytest.approx(100 * (36 - 20) / 40)
    assert vote.interval.lo > 0 and vote.interval.n == 40 and vote.paper_diff is None
    assert "agg 110 vs vote-16 160 generated tokens/question" in vote.claim.text
    # a worse wide aggregation is contradicted, not hidden
    worse = dict(SCORES) | {("mini", "exact_match", "aft_on", "agg"): {"0": right(2)}}
    assert check(worse, COSTS, SHAPES)[0].verdict == "contradicted"


def test_points_are_ordered_by_generations_with_question_intervals(tmp_path):
    pts = points(SCORES, COSTS, SHAPES)
    on = [p for p in pts if p.variant == "aft_on"]
    assert [p.mode for p in on][:3] == ["direct", "w1d1", "w1d2"]
    agg = next(p for p in on if p.mode == "agg")
    assert agg.score.mean == pytest.approx(85.0) and agg.score.lo < 85.0 < agg.score.hi
    assert agg.tokens == 110.0 and agg.shape.n == 5
    table = markdown(pts, {"exact_match": "EM acc. %"})
    assert (
        "| mini | exact_match (EM acc. %) | AFT-on-policy | agg | propose_aggregate | 5 | 2 | 11 | 110.0"
        " | 7.0 | 0.0 | 85.0 [" in table
    )
    plot(pts, tmp_path / "scaling.png", {"exact_match": "EM acc. %"})
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
