"""The §6.1 analysis: which records are measured, the prompts a target is scored under, the target's
token span, the summary and the claim rows (pure parts), and the stage on the miniature's tiny models."""

from __future__ import annotations

import json
import math

import pytest

from aft.eval import aggregation_learning
from aft.method.prompts import aggregation_messages, proposal_messages
from aft.method.target_loss import per_record_means, prompts, sample_records, summary, target_span

RECORDS = [
    {"id": f"r{i}", "messages": [{"role": "user", "content": f"q{i}"}], "proposals": ["a", "b"]}
    for i in range(10)
]
TARGETS = {f"r{i}": "t" for i in range(9)}  # r9 has no target


def test_a_seeded_sample_of_records_with_a_target_in_file_order():
    picked = sample_records(RECORDS, TARGETS, 4, seed=0)
    assert len(picked) == 4 and picked == sorted(picked, key=lambda r: int(r["id"][1:]))
    assert (
        picked == sample_records(RECORDS, TARGETS, 4, seed=0) != sample_records(RECORDS, TARGETS, 4, seed=1)
    )
    assert [r["id"] for r in sample_records(RECORDS, TARGETS, 50, seed=0)] == [f"r{i}" for i in range(9)]


def test_the_two_prompts_are_trainings_direct_and_aggregation_prompts():
    p = prompts(RECORDS[0], "TPL")
    assert p["query"] == proposal_messages(RECORDS[0]["messages"])
    assert p["query_and_proposals"] == aggregation_messages(RECORDS[0]["messages"], ["a", "b"], "TPL")


def test_the_target_is_what_follows_the_prompt():
    assert target_span([1, 2, 3], [1, 2, 3, 7, 8]) == (3, 5)
    with pytest.raises(ValueError, match="not .* a prefix"):
        target_span([1, 2, 3], [1, 9, 3, 7])
    with pytest.raises(ValueError, match="no token"):
        target_span([1, 2], [1, 2])


LOSSES = {"query": {"a": 6.0, "b": 2.0}, "query_and_proposals": {"a": 3.0, "b": 1.0}}
TOKENS = {"a": 3, "b": 1}


def test_summary_weighs_tokens_and_records_weigh_equally_in_the_claim():
    s = summary(LOSSES, TOKENS)
    assert s["loss_query"] == pytest.approx(2.0) and s["loss_query_and_proposals"] == pytest.approx(1.0)
    assert s["perplexity_query"] == pytest.approx(math.e**2) and s["loss_reduction"] == pytest.approx(1.0)
    assert per_record_means(LOSSES, TOKENS) == {
        "query": {"a": 2.0, "b": 2.0},
        "query_and_proposals": {"a": 1.0, "b": 1.0},
    }


def test_the_claim_reads_the_paired_interval_over_records():
    model = {
        "loss_query": 2.0,
        "loss_query_and_proposals": 1.0,
        "perplexity_query": 7.39,
        "perplexity_query_and_proposals": 2.72,
        "per_record": {
            "query": {f"r{i}": 2.0 + 0.1 * i for i in range(20)},
            "query_and_proposals": {f"r{i}": 1.0 + 0.1 * i for i in range(20)},
        },
    }
    worse = model | {
        "per_record": {
            "query": model["per_record"]["query_and_proposals"],
            "query_and_proposals": model["per_record"]["query"],
        }
    }
    measured = {
        "mini": {
            "base": "mini",
            "records": [f"r{i}" for i in range(20)],
            "models": {"aft_on": model, "base": worse},
        }
    }
    rows = aggregation_learning.check(measured)
    assert [(r.claim.text.split(":")[0], r.verdict) for r in rows] == [
        ("base model", "contradicted"),
        ("AFT-on-policy", "reproduced"),
    ]
    assert rows[1].interval.diff == pytest.approx(1.0) and rows[1].interval.n == 20
    text = aggregation_learning.markdown(measured, rows)
    assert "| mini | AFT-on-policy | 20 | 2.000 (7.39) | 1.000 (2.72) |" in text
    assert "not measured" in aggregation_learning.markdown({}, []).lower()


def test_the_stage_measures_the_base_and_trained_models(tmp_path):
    """The stage on an untrained tiny model (the claim is not the point here, the bookkeeping is): one
    entry a model, losses finite, one target length for one target text."""
    from aft.miniature.basemodel import build_tokenizer, init_model, save_base
    from aft.stages import measure_target_loss
    from tests.conftest import load_yaml, tiny_pretrain

    tok = build_tokenizer([f"q{i} The answer is {i}." for i in range(50)], 300)
    save_base(init_model(tok, tiny_pretrain()), tok, tmp_path / "base")
    base = {"path": tmp_path / "base", "config": load_yaml("config/config.yaml")["bases"]["mini"]}
    proposals = tmp_path / "proposals.jsonl"
    proposals.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    targets = tmp_path / "targets.jsonl"
    targets.write_text("".join(json.dumps({"id": k, "target": "The answer is 3."}) + "\n" for k in TARGETS))
    template = tmp_path / "t.txt"
    template.write_text("Synthesize these responses.")
    cfg = {
        "target_loss": {"num_records": 6, "seed": 0, "batch_size": 4},
        "base": base["config"],
    }
    out = tmp_path / "losses.json"
    measure_target_loss.main([
        "--config", json.dumps(cfg), "--base", "mini", "--base-model", str(base["path"]),
        "--models", f"sft={base['path']}", "--proposals", str(proposals), "--targets", str(targets),
        "--template", str(template), "--out", str(out), "--metrics", str(tmp_path / "metrics.json"),
    ])  # fmt: skip
    result = json.loads(out.read_text())
    assert (
        result["base"] == "mini" and len(result["records"]) == 6 and set(result["models"]) == {"base", "sft"}
    )
    for m in result["models"].values():
        assert all(math.isfinite(v) and v > 0 for v in m["per_record"]["query"].values())
        assert len(set(m["target_tokens"].values())) == 1  # one target text, one length
    # the same weights under two names: the same numbers
    assert result["models"]["base"]["loss_query"] == result["models"]["sft"]["loss_query"]
