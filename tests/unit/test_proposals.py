import pytest

from aft.method.proposals import (
    clean_sample,
    collect_samples,
    degenerate_reason,
    icl_prompt,
    normalise_ultrafeedback,
    on_policy_records,
    query_id,
    shuffled,
    trim_sample,
)


def _c(text, fine=4.0, overall=8.0, model="m"):
    return {"model": model, "response": text, "fine-grained_score": fine, "overall_score": overall}


ROWS = [
    {"instruction": "Q1", "completions": [_c("a", 4.5), _c("b", "N/A"), _c("c", float("nan")), _c("d", 2)]},
    {"instruction": "Q1", "completions": [_c("x")] * 4},  # duplicate query
    {"instruction": "  ", "completions": [_c("x")] * 4},  # empty query
    {"instruction": "Q2", "completions": [_c("a"), _c(" a "), _c(""), _c("b")]},  # dup + empty completions
    {"instruction": "Q3", "completions": [_c("p", model="m1"), _c("q", model="m2"), _c("r"), _c("s")]},
]


def test_normalise_ultrafeedback_counts_every_drop():
    records, counts = normalise_ultrafeedback(ROWS, num_proposals=4, rating="fine_grained", seed=0)
    assert [r["messages"][0]["content"] for r in records] == ["Q1", "Q3"]
    assert counts["rows_in"] == 5 and counts["rows_out"] == 2
    assert counts["dropped_duplicate_query"] == 1
    assert counts["dropped_empty_query"] == 1
    assert counts["dropped_too_few_completions"] == 1
    assert counts["completions_dropped_duplicate"] == 1 and counts["completions_dropped_empty"] == 1
    assert counts["ratings_missing"] == 2  # "N/A" and NaN


def test_ratings_travel_with_their_proposal_after_shuffling():
    records, _ = normalise_ultrafeedback(ROWS, 4, "fine_grained", seed=0)
    q1 = records[0]
    by_text = dict(zip(q1["proposals"], q1["ratings"]))
    assert by_text == {"a": 4.5, "b": None, "c": None, "d": 2.0}
    q3 = records[1]
    assert dict(zip(q3["proposals"], q3["proposal_models"]))["p"] == "m1"


def test_shuffle_is_deterministic_per_seed_and_example():
    a, _ = normalise_ultrafeedback(ROWS, 4, "overall", seed=0)
    b, _ = normalise_ultrafeedback(ROWS, 4, "overall", seed=0)
    assert a == b
    orders = {tuple(shuffled(list("abcdef"), s, "k")) for s in range(10)}
    assert len(orders) > 5  # different seeds give different orders
    assert records_ids(a) == [query_id("Q1"), query_id("Q3")]


def records_ids(records):
    return [r["id"] for r in records]


def test_overall_rating_is_used_when_configured():
    records, _ = normalise_ultrafeedback([ROWS[4]], 4, "overall", seed=0)
    assert records[0]["ratings"] == [8.0] * 4


def test_icl_prompt_inserts_query():
    assert icl_prompt("Demo\nQuery: {query}\nAnswer:", "Add 1 and 2.") == "Demo\nQuery: Add 1 and 2.\nAnswer:"


def test_clean_sample_drops_empty_and_degenerate():
    assert clean_sample("  The answer is 3. ") == "The answer is 3."
    assert clean_sample("   ") is None
    assert clean_sample("is is is is is is is is is") is None


def test_on_policy_records_drop_queries_without_enough_clean_samples():
    queries = [
        {"id": "a", "messages": [{"role": "user", "content": "A"}]},
        {"id": "b", "messages": [{"role": "user", "content": "B"}]},
    ]
    samples = [[" x", "y", "z"], ["x", "", ""]]
    records, counts = on_policy_records(queries, samples, num_proposals=3, seed=0)
    assert [r["id"] for r in records] == ["a"]
    assert sorted(records[0]["proposals"]) == ["x", "y", "z"]
    assert counts["samples_dropped"] == 2 and counts["dropped_too_few_samples"] == 1


def test_repeated_completions_are_kept_when_configured():
    # Q2 has "a" twice (after stripping), one empty and "b": kept = 3 < 4 either way; with 3 proposals
    # asked the repeat survives as agreement
    records, counts = normalise_ultrafeedback([ROWS[3]], 3, "overall", seed=0, drop_duplicates=False)
    assert sorted(records[0]["proposals"]) == ["a", "a", "b"]
    assert counts["completions_dropped_duplicate"] == 0 and counts["completions_dropped_empty"] == 1
    dropped, counts = normalise_ultrafeedback([ROWS[3]], 3, "overall", seed=0, drop_duplicates=True)
    assert dropped == [] and counts["dropped_too_few_completions"] == 1


# ----------------------------------------------------------------------- on-policy sample cleaning
LOOP = " ".join(["the cat sat on the mat and then"] * 6)  # 48 words, a looping continuation


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("is is is is is is is is is", "degenerate", id="one-word-repeated"),
        pytest.param(LOOP, "degenerate", id="4-gram-loop"),
        pytest.param("The answer is 3.", None, id="short-answer"),
        pytest.param(" ".join(f"word{i}" for i in range(60)), None, id="long-varied"),
        pytest.param(
            "1. Put the main point first.\n2. Keep paragraphs short.\n3. End with a step.", None, id="list"
        ),
    ],
)
def test_degenerate_reason(text, reason):
    assert degenerate_reason(text) == reason


def test_trim_sample_removes_the_closing_fence_once():
    assert trim_sample("  Hello.```\n\n", "```") == "Hello."
    assert (
        trim_sample("Code:\n```python\nx = 1\n```\nDone.\n```", "```")
        == "Code:\n```python\nx = 1\n```\nDone."
    )
    assert trim_sample(" Hello. ", "") == "Hello."
    assert clean_sample("```", suffix="```") is None  # nothing left after the fence


def test_collect_samples_resamples_short_queries_then_gives_up():
    # query 0 is clean at once; query 1 gets one clean sample per round; query 2 never gets one
    script = {0: ["a", "b"], 1: ["", "x"], 2: ["", "  "]}
    calls = []

    def sample(indices, round_):
        calls.append((list(indices), round_))
        return [[f"{t}{round_}" if t.strip() else t for t in script[i]] for i in indices]

    kept, counts = collect_samples(3, sample, num_proposals=2, resample_rounds=2)
    assert calls == [([0, 1, 2], 0), ([1, 2], 1), ([2], 2)]
    assert kept == [["a0", "b0"], ["x0", "x1"], []]
    assert counts["resampled_queries"] == 3  # two in round 1, one in round 2
    assert counts["samples_total"] == 6 + 4 + 2
    assert counts["samples_dropped_empty"] == counts["samples_dropped"] == 1 + 2 + 1 + 2 + 2


def test_collect_samples_without_resampling_matches_cleaning_each_sample():
    raw = [["  p ", "", "q"], ["is is is is is is is is is", "r"]]
    kept, counts = collect_samples(2, lambda idx, r: [raw[i] for i in idx], 2, resample_rounds=0)
    assert kept == [["p", "q"], ["r"]]
    assert counts["samples_dropped_empty"] == 1 and counts["samples_dropped_degenerate"] == 1
    records, rc = on_policy_records([{"id": "a", "messages": []}, {"id": "b", "messages": []}], kept, 2, 0)
    assert [r["id"] for r in records] == ["a"] and rc["dropped_too_few_samples"] == 1


def test_schema_errors_in_ultrafeedback_rows_are_counted_drops_not_crashes():
    from aft.method.proposals import normalise_ultrafeedback

    good = [{"response": f"answer {i}", "fine-grained_score": 4.0} for i in range(4)]
    rows = [
        {"instruction": ["not", "a", "string"], "completions": good},
        {"instruction": "q1", "completions": {"not": "a list"}},
        {"instruction": "q2", "completions": ["not an object", {"response": 7}, *good]},
        {"instruction": "q3"},  # no completions: sparsity, not a schema error
    ]
    records, counts = normalise_ultrafeedback(rows, 4, "fine_grained", 0)
    assert [r["messages"][0]["content"] for r in records] == ["q2"]
    assert counts["dropped_schema_instruction_not_string"] == 1
    assert counts["dropped_schema_completions_not_list"] == 1
    assert counts["completions_dropped_schema_not_object"] == 1
    assert counts["completions_dropped_schema_response_not_string"] == 1
    assert counts["dropped_too_few_completions"] == 1 and counts["rows_out"] == 1
