import pytest

from aft.method.dataset import aggregation_loss, build_examples, filter_by_length, token_lengths
from aft.method.targets import best_rated_targets
from aft.miniature.exact_match import oracle_targets

RECORDS = [
    {
        "id": f"q{i}",
        "messages": [{"role": "user", "content": f"Q{i}"}],
        "proposals": ["p1", "p2"],
        "ratings": [1.0, 3.0],
    }
    for i in range(50)
]
TARGETS = {f"q{i}": f"T{i}" for i in range(49)}  # q49 has no target


def test_sft_is_direct_examples_only():
    ex, counts = build_examples("sft", RECORDS, TARGETS, "TPL", direct_fraction=0.5, seed=0)
    assert len(ex) == 49 and counts["direct"] == 49 and counts["dropped_no_target"] == 1
    e = next(x for x in ex if x["id"] == "q3-direct")
    assert e["messages"] == [
        {"role": "system", "content": "\n"},
        {"role": "user", "content": "Q3"},
        {"role": "assistant", "content": "T3"},
    ]


def test_aft_has_aggregation_examples_and_direct_share():
    ex, counts = build_examples("aft_off", RECORDS, TARGETS, "TPL", direct_fraction=1.0, seed=0)
    assert counts["aggregation"] == 49 and counts["direct"] == 49
    agg = next(x for x in ex if x["id"] == "q3-agg")
    assert agg["messages"] == [
        {"role": "system", "content": "TPL\n1. p1\n2. p2"},
        {"role": "user", "content": "Q3"},
        {"role": "assistant", "content": "T3"},
    ]
    _, none = build_examples("aft_on", RECORDS, TARGETS, "TPL", direct_fraction=0.0, seed=0)
    assert none["direct"] == 0
    _, half = build_examples("aft_on", RECORDS, TARGETS, "TPL", direct_fraction=0.5, seed=0)
    assert 15 < half["direct"] < 35


def test_examples_are_shuffled_deterministically():
    a, _ = build_examples("aft_off", RECORDS, TARGETS, "TPL", 1.0, seed=1)
    b, _ = build_examples("aft_off", RECORDS, TARGETS, "TPL", 1.0, seed=1)
    c, _ = build_examples("aft_off", RECORDS, TARGETS, "TPL", 1.0, seed=2)
    assert a == b and [x["id"] for x in a] != [x["id"] for x in c]


def test_filter_by_length_counts_drops_per_kind_and_keeps_order():
    ex, _ = build_examples("aft_off", RECORDS[:10], TARGETS, "TPL", 1.0, 0)
    lengths = [99 if e["kind"] == "aggregation" and e["id"] < "q5" else 10 for e in ex]
    kept, counts = filter_by_length(ex, lengths, max_length=50)
    assert [e["id"] for e in kept] == [e["id"] for e, n in zip(ex, lengths) if n <= 50]
    assert counts["dropped_too_long"] == 5 and counts["dropped_too_long_aggregation"] == 5
    assert counts["dropped_too_long_direct"] == 0
    assert counts["tokens_total"] == 10 * 15 and counts["tokens_max"] == 10


def test_oracle_and_best_rated_targets():
    assert oracle_targets(RECORDS[:1], {"q0": "7"}) == [
        {"id": "q0", "target": "The answer is 7.", "teacher": "oracle"}
    ]
    best = best_rated_targets(
        [
            {"id": "a", "proposals": ["x", "y", "z"], "ratings": [3.0, None, 3.0]},
            {"id": "b", "proposals": ["x"], "ratings": [None]},
        ]
    )
    assert best == [{"id": "a", "target": "x", "teacher": "best_rated"}]  # tie -> first; unrated skipped


@pytest.mark.parametrize("family", ["miniature", "llama3", "mistral"])
def test_token_lengths_equal_the_chat_template_tokenization(family):
    """The batched count is what training tokenizes: apply_chat_template(tokenize=True), per family."""
    from aft.method.chat_templates import load_chat_template
    from aft.miniature.basemodel import build_tokenizer

    words = [
        "the",
        "a",
        "query",
        "answer",
        "proposal",
        "aggregate",
        "model",
        "response",
        "refine",
        "list",
        "two",
        "three",
    ]
    tok = build_tokenizer([" ".join(words[i:] + words[:i]) for i in range(len(words))] * 20, 300)
    tok.add_special_tokens(
        {"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "</s>"]}
    )
    tok.chat_template = load_chat_template(family)
    ex, _ = build_examples("aft_off", RECORDS[:6], TARGETS, "Aggregate these:", 1.0, 0)
    conversations = [e["messages"] for e in ex]
    expected = [
        len(tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]) for c in conversations
    ]
    assert token_lengths(tok, conversations, batch_size=4) == expected


def test_an_aft_set_that_lost_its_aggregation_examples_is_refused():
    examples = [{"kind": "aggregation"}] * 10 + [{"kind": "direct"}] * 10
    assert aggregation_loss(examples, examples, 0.2) is None
    assert aggregation_loss(examples, examples[2:], 0.2) is None  # 2 of 10 dropped: at the limit
    msg = aggregation_loss(examples, examples[3:], 0.2)
    assert msg and "dropped 3 of 10 aggregation examples (30% > dataset.max_dropped_fraction = 20%)" in msg
    assert "dropped 10 of 10" in aggregation_loss(examples, examples[10:], 0.2)  # "AFT" = SFT: refused
    assert aggregation_loss(examples[10:], examples[10:], 0.0) is None  # SFT has none to lose
