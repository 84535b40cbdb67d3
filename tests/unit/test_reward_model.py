"""Best-of-N's reward model: preference pairs from UltraFeedback-schema ratings, the held-out split by
query, the held-out accuracy with its interval over queries, the scorer (a real sequence-classification
model), and the train_reward_model stage end to end on a throwaway base (TRL's RewardTrainer)."""

from __future__ import annotations

import json

import pytest

from aft.eval import reward_models
from aft.eval.stats import cluster_interval
from aft.method.preferences import is_heldout, pair_accuracy, preference_pairs, split_heldout
from aft.method.proposals import query_id


def completion(text: str, score: float | None) -> dict:
    return {"response": text, "fine-grained_score": score, "overall_score": None}


ROWS = [
    {"instruction": "Q1", "completions": [completion("a", 4.0), completion("b", 2.0), completion("c", 4.0)]},
    {"instruction": "Q1", "completions": [completion("x", 5.0), completion("y", 1.0)]},  # repeated: skipped
    {"instruction": "Q2", "completions": [completion("d", None), completion("e", 3.5), completion("e", 1.0)]},
    {"instruction": " ", "completions": [completion("f", 5.0), completion("g", 1.0)]},  # no query
]


def test_pairs_are_every_two_completions_with_different_ratings_and_texts():
    pairs = preference_pairs(ROWS, "fine_grained")
    got = [(p["chosen"][1]["content"], p["rejected"][1]["content"], p["margin"]) for p in pairs]
    # Q1: a>b and c>b (a = c tie dropped); the repeated Q1 row and Q2's same-text pair and unrated d give none
    assert got == [("a", "b", 2.0), ("c", "b", 2.0)]
    assert [p["id"] for p in pairs] == [f"{query_id('Q1')}-0", f"{query_id('Q1')}-1"]
    assert pairs[0]["chosen"][0] == {"role": "user", "content": "Q1"}
    assert preference_pairs(ROWS, "overall") == []  # no overall ratings here


def test_the_heldout_split_is_by_query_and_does_not_depend_on_order():
    pairs = [{"id": f"q{i}-{k}", "query_id": f"q{i}"} for i in range(200) for k in range(3)]
    train, held = split_heldout(pairs, 0.2, seed=1)
    assert len(train) + len(held) == 600 and 60 <= len(held) <= 180
    held_queries = {p["query_id"] for p in held}
    assert held_queries.isdisjoint(p["query_id"] for p in train)  # every pair of a held-out query
    assert split_heldout(list(reversed(pairs)), 0.2, seed=1)[1] == list(reversed(held))
    assert {p["query_id"] for p in split_heldout(pairs, 0.2, seed=2)[1]} != held_queries
    assert is_heldout("q7", 0.2, 1) == ("q7" in held_queries)


def test_accuracy_counts_ties_as_wrong_and_its_interval_resamples_queries():
    assert pair_accuracy([2.0, 1.0, 0.5], [1.0, 1.0, 0.0]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no pair"):
        pair_accuracy([], [])
    rows = [{"id": f"q{i}-{k}", "correct": int(i % 4 != 0)} for i in range(40) for k in range(3)]
    est = reward_models.accuracy(rows)
    assert est.mean == pytest.approx(75.0) and est.n == 40 and est.over == "clusters"
    assert est.lo < 75.0 < est.hi
    # one cluster of 3 wrong and one of 1 right: the mean is over items, not clusters
    assert cluster_interval({"a": [0.0, 0.0, 0.0], "b": [1.0]}).mean == pytest.approx(0.25)
    table = reward_models.markdown({"mini-rm": rows}, {"sky": "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2"})
    assert "| mini-rm | trained here (TRL RewardTrainer) | 120 (40) | 75.0 [" in table
    assert "| sky | Skywork/Skywork-Reward-Llama-3.1-8B-v0.2 (hub) | not measured here | - |" in table
    assert reward_models.markdown({}, {}) == ""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The stage on a throwaway base: 60 queries whose right answer is rated 5 and wrong ones 1."""
    from aft.miniature.basemodel import build_tokenizer, init_model, save_base
    from aft.stages import train_reward_model
    from tests.conftest import load_yaml, tiny_pretrain

    tmp = tmp_path_factory.mktemp("rm")
    tok = build_tokenizer([f"What is {i} + 1? The answer is {i + 1}." for i in range(60)], 300)
    save_base(init_model(tok, tiny_pretrain()), tok, tmp / "base")
    rows = [
        {
            "instruction": f"What is {i} + 1?",
            "completions": [
                completion(f"The answer is {i + 1}.", 5.0),
                completion(f"The answer is {i}.", 1.0),
            ],
        }
        for i in range(60)
    ]
    uf = tmp / "uf.jsonl"
    uf.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "reward_train": {
            "base": "mini",
            "rating": "fine_grained",
            "heldout_fraction": 0.25,
            "learning_rate": 0.003,
            "num_train_epochs": 2,
            "batch_size": 4,
            "max_length": 64,
            "seed": 0,
        },
        "base": load_yaml("config/config.yaml")["bases"]["mini"],
    }
    train_reward_model.main([
        "--config", json.dumps(cfg), "--ultrafeedback", str(uf), "--base-model", str(tmp / "base"),
        "--out", str(tmp / "rm"), "--heldout", str(tmp / "heldout.jsonl"), "--metrics", str(tmp / "m.json"),
    ])  # fmt: skip
    return tmp


def test_the_stage_trains_saves_and_measures_on_heldout_queries(trained):
    metrics = json.loads((trained / "m.json").read_text())["metrics"]
    held = [json.loads(line) for line in (trained / "heldout.jsonl").read_text().splitlines()]
    assert metrics["n_pairs"] == 60 and metrics["n_train_pairs"] + metrics["n_heldout_pairs"] == 60
    assert len(held) == metrics["n_heldout_pairs"] > 0
    assert metrics["heldout_accuracy"] == pytest.approx(sum(r["correct"] for r in held) / len(held))
    assert all(r["correct"] == int(r["chosen_score"] > r["rejected_score"]) for r in held)
    assert (trained / "rm" / "config.json").is_file() and (trained / "rm" / "chat_template.jinja").is_file()
    assert not (trained / "rm.saving").exists()


def test_the_scorer_gives_the_same_score_in_any_batch_and_counts_cuts(trained):
    from aft.gen.reward import RewardScorer

    convs = [
        [
            {"role": "user", "content": f"What is {i} + 1?"},
            {"role": "assistant", "content": "The answer is" + " 1" * i},
        ]
        for i in range(1, 6)
    ]
    one = RewardScorer(str(trained / "rm"), "float32", 1, 64).score(convs)
    batched = RewardScorer(str(trained / "rm"), "float32", 5, 64).score(convs)
    assert [s.score for s in batched] == pytest.approx([s.score for s in one], abs=1e-5)
    assert [s.tokens for s in one] == sorted(s.tokens for s in one) and not any(s.cut for s in one)
    short = RewardScorer(str(trained / "rm"), "float32", 5, one[2].tokens).score(convs)
    assert [s.cut for s in short] == [False, False, False, True, True]
    assert [s.tokens for s in short][3:] == [one[2].tokens] * 2
