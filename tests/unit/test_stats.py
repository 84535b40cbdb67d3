"""Intervals over seeds and questions (aft.eval.stats): known values, and the crossed bootstrap's parts."""

from __future__ import annotations

import pytest

from aft.eval.stats import crossed_bootstrap, question_interval, seed_interval

IDS = [f"q{i}" for i in range(100)]


def test_seed_interval_is_the_t_interval_over_the_seeds():
    e = seed_interval([10.0, 12.0, 14.0])
    # mean 12, sd 2, t(0.975, 2) = 4.3027: half-width 4.3027 * 2 / sqrt(3) = 4.968
    assert e.mean == 12.0 and e.n == 3 and e.over == "seeds"
    assert e.lo == pytest.approx(12.0 - 4.968, abs=1e-3) and e.hi == pytest.approx(12.0 + 4.968, abs=1e-3)
    assert e.formatted() == "12.0 [7.0, 17.0]"


def test_one_seed_has_no_interval_over_seeds():
    e = seed_interval([42.0])
    assert (e.mean, e.lo, e.hi) == (42.0, None, None) and e.formatted() == "42.0"


def test_question_interval_brackets_the_mean_of_a_half_right_benchmark():
    e = question_interval({i: 100.0 * (n % 2) for n, i in enumerate(IDS)})
    # sd 50 / sqrt(100) = 5: the 95% interval is about 50 +- 9.8
    assert e.mean == 50.0 and e.n == 100
    assert 39.0 < e.lo < 42.5 and 57.5 < e.hi < 61.0
    assert question_interval({i: 100.0 * (n % 2) for n, i in enumerate(IDS)}) == e  # seeded


def test_crossed_bootstrap_with_equal_seeds_matches_the_question_spread():
    # every seed the same: resampling seeds adds nothing; the width is the questions' alone
    higher = [{i: 100.0 * (n % 2) for n, i in enumerate(IDS)}] * 3
    lower = [{i: 0.0 for i in IDS}] * 3
    diff, lo, hi, n = crossed_bootstrap(higher, lower)
    assert diff == 50.0 and n == 100 and 39.0 < lo < 42.5 and 57.5 < hi < 61.0


def test_crossed_bootstrap_uses_only_questions_every_seed_scored():
    higher = [{"a": 1.0, "b": 3.0}, {"a": 1.0, "b": 3.0, "c": 9.0}]
    lower = [{"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 0.0, "b": 0.0}]
    diff, _, _, n = crossed_bootstrap(higher, lower)
    assert n == 2 and diff == 2.0
    with pytest.raises(ValueError, match="2 seeds on one side and 1"):
        crossed_bootstrap(higher, lower[:1])
