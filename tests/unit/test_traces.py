import pytest

from aft.miniature.traces import trace_stats


def _a(qid, proposals, agg, final):
    fmt = [f"The answer is {x}." for x in proposals]
    return {"id": qid, "trace": [[fmt, [f"The answer is {x}." for x in agg], [f"The answer is {final}."]]]}


def test_trace_stats_count_majorities_and_copying():
    answers = [
        _a("q1", ["1", "1", "1", "2", "3"], ["1", "1", "2", "1", "1"], "1"),  # right majority, copied 4/5
        _a("q2", ["5", "6", "7", "8", "9"], ["4", "4", "4", "4", "4"], "4"),  # right answer 4 never proposed
    ]
    s = trace_stats(answers, {"q1": "1", "q2": "4"})
    assert s["layer0_accuracy"] == pytest.approx(100 * (3 / 5) / 2)
    assert s["layer0_any_correct"] == 50.0 and s["layer0_majority_vote"] == 50.0
    assert s["layer1_accuracy"] == pytest.approx(100 * (4 / 5 + 1) / 2)
    assert s["layer2_accuracy"] == 100.0
    assert s["queries_with_strict_majority"] == 50.0
    assert s["agg_copies_strict_majority"] == pytest.approx(80.0)
    assert s["agg_answer_among_proposals"] == pytest.approx(100 * (5 / 5 + 0) / 2)
    assert s["agg_correct_given_a_correct_proposal"] == pytest.approx(80.0)
