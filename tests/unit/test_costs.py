"""The paper data stages' cost estimate: token counts follow from the config."""

import json

import pytest

from aft.eval.registry import Sizes
from aft.pipeline.config import StrategyShape, shape_of
from aft.tools.costs import (
    BENCHES,
    Compute,
    DataStages,
    Lengths,
    PaperRun,
    Throughput,
    answer_load,
    estimate,
    inference_rows,
    judge_load,
    judge_rows,
    main,
    measure_ultrafeedback,
    params_of,
    reward_tokens,
    target_loss_rows,
    train_gpu_hours,
    train_rows,
    train_set,
)
from tests.conftest import load_yaml


def paper(**targets) -> DataStages:
    raw = load_yaml("config/paper.yaml")
    raw["targets"] |= targets
    return DataStages.model_validate({k: raw[k] for k in DataStages.model_fields})


ONE = Throughput(prefill_tps=1000.0, decode_tps=100.0)


def by_stage(rows):
    return {r.stage: r for r in rows}


def test_upper_bound_runs_every_generation_to_max_new_tokens():
    cfg = paper()
    rows = by_stage(estimate(cfg, 1000, Lengths(10, 20, 5), 100, 30, ONE, ONE, upper_bound=True))
    on = rows["build_proposals_on"]
    assert on.jobs == 2 * 4 and on.requests == 2 * 1000  # bases x on_policy.num_jobs scatter jobs
    assert on.tokens_out == 2 * 1000 * 4 * 2048  # bases x queries x K x max_new_tokens
    assert on.tokens_in == 2 * 1000 * (100 + 10)  # ICL prompt + query
    # engine time: the ICL preamble is prefilled once (prefix cache), the queries each time
    assert on.gpu_hours == pytest.approx(2 * ((1000 * 10 + 100) / 1000 + 1000 * 4 * 2048 / 100) / 3600)
    t = rows["build_targets"]
    assert t.jobs == 3 * 8 and t.requests == 3 * 1000 and t.gpus == 4  # proposal sets x targets.num_jobs
    assert t.tokens_out == 3 * 1000 * 4096
    assert t.tokens_in == 1000 * ((30 + 4 * 20 + 10) + 2 * (30 + 4 * 2048 + 10))


def test_typical_caps_generated_length_and_an_api_teacher_costs_no_gpu():
    endpoint = {
        "base_url": "https://api.example/v1",
        "api_key_env": "TEACHER_KEY",
        "concurrency": 64,
        "timeout_s": 120,
        "max_retries": 5,
        "backoff_initial_s": 1,
        "backoff_max_s": 60,
    }
    cfg = paper(endpoint=endpoint)
    rows = by_stage(estimate(cfg, 10, Lengths(10, 20, 5000), 0, 0, ONE, ONE, upper_bound=False))
    assert rows["build_proposals_on"].tokens_out == 2 * 10 * 4 * 2048  # 5000 capped at max_new_tokens
    assert rows["build_targets"].gpu_hours is None and rows["build_targets"].gpus == 0


def test_best_rated_needs_no_teacher():
    rows = by_stage(estimate(paper(teacher="best_rated"), 10, Lengths(1, 1, 1), 0, 0, ONE, ONE, False))
    assert rows["build_targets"].tokens_in == rows["build_targets"].tokens_out == 0


def test_lengths_are_measured_from_ultrafeedback_files(tmp_path):
    rows = [
        {"instruction": "abcd" * 10, "completions": [{"response": "x" * 80}, {"response": "y" * 40}]},
        {"instruction": "abcd" * 10, "completions": [{"response": "z" * 60}]},  # same query
        {"instruction": "q" * 20, "completions": []},
    ]
    f = tmp_path / "uf.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    n, lengths = measure_ultrafeedback([f], chars_per_token=4.0, max_queries=None)
    assert n == 2 and lengths.query == pytest.approx((40 + 20) / 2 / 4) and lengths.completion == 60 / 4


def test_cli_prints_both_estimates(capsys):
    main(["--configfile", "config/paper.yaml", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"typical", "upper_bound"}
    assert [r["stage"] for r in out["upper_bound"]] == [
        "build_proposals_off",
        "build_proposals_on",
        "build_targets",
        "build_dataset",
        *["train_model"] * 3,
        "measure_target_loss",
        # (direct, agg) x benchmarks, then the sweep's 11 (mode, bench) and best-of-N's 6
        *["generate_answers"] * (8 + 11 + 6),
        *["judge_answers"] * 2,
    ]
    assert [r["part"] for r in out["upper_bound"][4:7]] == ["sft", "aft_off", "aft_on"]
    with pytest.raises(SystemExit, match="data.kind='paper'"):
        main(["--configfile", "config/config.yaml"])


# ------------------------------------------------------------- the rest of the run: train, answer, judge
def run(**sections) -> PaperRun:
    """The paper config with some keys of some sections replaced."""
    raw = load_yaml("config/paper.yaml")
    for name, keys in sections.items():
        raw[name] = raw[name] | keys if isinstance(raw.get(name), dict) else keys
    return PaperRun.model_validate({k: raw[k] for k in PaperRun.model_fields if k in raw})


def test_training_gpu_hours_are_six_flops_a_parameter_a_token():
    # 6 x 8e9 x 1e9 = 4.8e19 FLOPs at 1e15 x 0.5 FLOP/s = 96,000 GPU seconds
    assert train_gpu_hours(8e9, 1e9, Compute(1e15, 0.5)) == pytest.approx(96_000 / 3600)


def test_training_sets_by_hand():
    cfg = run(dataset={"direct_fraction": 0.5})  # K = 4 proposals; max_length 4096
    lengths = Lengths(query=10, completion=20, generated=30)  # a target is 30 tokens (below 4096)
    assert train_set(cfg, "sft", 100, lengths, 5, False) == (100, 100 * (10 + 30))
    # aggregation example: template 5 + 4 proposals + query 10 + target 30; 50 queries also give a direct one
    assert train_set(cfg, "aft_off", 100, lengths, 5, False) == (150, 100 * (5 + 4 * 20 + 10 + 30) + 50 * 40)
    assert train_set(cfg, "aft_on", 100, lengths, 5, False) == (150, 100 * (5 + 4 * 30 + 10 + 30) + 50 * 40)
    # upper bound: targets run to 4096 tokens, so every example is capped at max_length 4096
    assert train_set(cfg, "aft_on", 100, lengths, 5, True) == (150, 150 * 4096)


def test_training_rows_by_hand_and_checkpoints_are_not_trained():
    cfg = run(
        train={"num_train_epochs": 2},
        checkpoints={"mistral-7b": {"aft_off": {"model": "org/released", "revision": None}}},
    )
    params = {"llama31-8b": 8e9, "mistral-7b": 7e9}
    rows = train_rows(cfg, 100, Lengths(10, 20, 30), 5, params, Compute(1e15, 0.5), False)
    sft, aft_off = rows[0], rows[1]
    assert (sft.stage, sft.part, sft.jobs, sft.gpus) == ("train_model", "sft", 2, 8)
    assert sft.requests == 2 * 100 and sft.tokens_in == 2 * 2 * 100 * 40 and sft.tokens_out == 0
    assert sft.gpu_hours == pytest.approx(6 * (8e9 + 7e9) * 2 * 100 * 40 / 5e14 / 3600)
    # direct_fraction 1.0: every query gives an aggregation (125 tokens) and a direct (40 tokens) example
    assert aft_off.jobs == 1 and aft_off.requests == 200 and aft_off.tokens_in == 2 * 100 * (125 + 40)
    assert aft_off.gpu_hours == pytest.approx(6 * 8e9 * 2 * 100 * (125 + 40) / 5e14 / 3600)


TINY = Sizes(10, query_chars=(40.0, 20.0), judge_chars=(400.0, 800.0), reference_chars=(40.0, 80.0),
             judge_reply_tokens=None)  # fmt: skip


def test_agg_inference_requests_and_tokens_by_hand():
    ic = run(inference={"n": 3, "num_aggregation": 2}).inference
    # 4 characters a token: questions of 10 and 5 tokens; turn 2 is asked after turn 1's 100-token answer
    direct = answer_load(shape_of("direct", ic, {}), TINY, 100, 8, 4.0)
    assert (direct.requests, direct.tokens_in, direct.tokens_out) == (20, 10 * (10 + 115), 20 * 100)
    agg = answer_load(shape_of("agg", ic, {}), TINY, 100, 8, 4.0)
    # a turn: proposal prompt (3 samples), an intermediate and a final aggregation prompt holding 3 answers
    assert agg.requests == 20 * 3
    assert agg.tokens_out == 20 * (3 + 3 + 1) * 100
    assert agg.tokens_in == 10 * ((10 + 2 * (8 + 300 + 10)) + (115 + 2 * (8 + 300 + 115)))
    one_layer = answer_load(StrategyShape(kind="propose_aggregate", n=3, depth=1), TINY, 100, 8, 4.0)
    assert one_layer.requests == 20 * 2 and one_layer.tokens_out == 20 * (3 + 1) * 100  # propose, then final
    vote = answer_load(StrategyShape(kind="majority_vote", n=8, depth=0), TINY, 100, 8, 4.0)
    # one direct prompt a turn, sampled 8 times: direct's prompt tokens, 8 times its generations
    assert (vote.requests, vote.tokens_in, vote.tokens_out) == (20, direct.tokens_in, 8 * direct.tokens_out)
    bon = StrategyShape(kind="best_of_n", n=8, depth=0)
    assert answer_load(bon, TINY, 100, 8, 4.0) == vote  # the same sampling
    # and the reward model reads each of the 8 samples with its conversation: turn 1, then turn 2
    assert reward_tokens(bon, TINY, 100, 4.0) == 10 * 8 * ((10 + 100) + (115 + 100))
    assert reward_tokens(StrategyShape(kind="majority_vote", n=8, depth=0), TINY, 100, 4.0) == 0


def test_the_target_loss_measurement_is_forward_passes_of_every_measured_model():
    cfg = run()
    compute = Compute(1e15, 0.5)
    (row,) = target_loss_rows(
        cfg, Lengths(10, 20, 400), 8, {"llama31-8b": 8e9, "mistral-7b": 7e9}, compute, False
    )
    cap = min(cfg.train.max_length, cfg.dataset.max_length)
    target = min(400, cfg.targets.max_new_tokens)
    record = min(10 + target, cap) + min(8 + 4 * 20 + 10 + target, cap)  # query alone, then with proposals
    assert (row.jobs, row.requests) == (2, 2 * 200 * (4 + 4))  # two contexts x 200 records x 4 models a base
    assert row.tokens_in == 2 * 4 * 200 * record
    assert row.gpu_hours == pytest.approx(2 * (8e9 + 7e9) * 4 * 200 * record / 5e14 / 3600)
    given = {"model": "x/y", "revision": None}
    released = run(checkpoints={"llama31-8b": {v: given for v in ("sft", "aft_off", "aft_on")}})
    assert (
        target_loss_rows(released, Lengths(10, 20, 400), 8, {"mistral-7b": 7e9}, compute, False)[0].jobs == 1
    )
    unmeasured = run().model_copy(update={"target_loss": None})
    assert target_loss_rows(unmeasured, Lengths(10, 20, 400), 8, {}, compute, False) == []


def test_a_scoped_strategy_costs_only_its_jobs():
    vote = {"kind": "majority_vote", "n": 16, "variants": ["aft_on"], "benchmarks": ["gsm8k"]}
    cfg = run(grid={"modes": ["direct", "vote-16"]}, strategies={"vote-16": vote})
    rows = {r.part: r for r in inference_rows(cfg, Lengths(10, 20, 400), 44, ONE, 4.0, False)}
    assert "vote-16, alpaca_eval2" not in rows and rows["vote-16, gsm8k"].jobs == 2  # 2 bases x aft_on
    assert rows["vote-16, gsm8k"].tokens_out == 2 * 1319 * 16 * 400
    assert rows["direct, gsm8k"].jobs == 2 * 3


def test_paper_inference_rows_count_mt_bench_twice_and_cap_its_answers():
    rows = {r.part: r for r in inference_rows(run(), Lengths(10, 20, 400), 44, ONE, 4.0, False)}
    jobs = 2 * 3  # bases x variants
    assert rows["direct, mt_bench"].requests == jobs * 80 * 2
    assert rows["agg, mt_bench"].requests == jobs * 80 * 2 * 3  # n 5, num_aggregation 2: 3 prompts a turn
    assert rows["agg, mt_bench"].tokens_out == jobs * 80 * 2 * 11 * 400  # 5 + 5 + 1 generations
    assert rows["direct, alpaca_eval2"].requests == jobs * 805
    assert rows["direct, alpaca_eval2"].tokens_in == jobs * round(805 * 165 / 4)
    upper = {r.part: r for r in inference_rows(run(), Lengths(10, 20, 400), 44, ONE, 4.0, True)}
    assert upper["direct, mt_bench"].tokens_out == jobs * 160 * 1024  # FastChat's budget
    assert upper["direct, alpaca_eval2"].tokens_out == jobs * 805 * 4096
    d = upper["direct, alpaca_eval2"]
    assert d.gpus == 1 and d.gpu_hours == pytest.approx(jobs * (805 * 41.25 / 1000 + 805 * 4096 / 100) / 3600)


def test_judge_calls_and_tokens_by_hand():
    load = judge_load(TINY, answer=100, judgment=50, chars_per_token=4.0)
    # turn 1: prompt + question + reference, one answer; turn 2: both questions and answers
    assert load.requests == 20
    assert load.tokens_in == 10 * (((400 + 40 + 40) / 4 + 100) + ((800 + 60 + 80) / 4 + 200))
    assert load.tokens_out == 20 * 50
    rows = {
        r.part: r
        for r in judge_rows(run(grid={"modes": ["direct", "agg"]}), Lengths(10, 20, 400), 200, 4.0, False)
    }
    jobs = 2 * 3 * 2  # bases x variants x modes (without the scaling sweep)
    ae, mt = rows["alpaca_eval2"], rows["mt_bench"]
    assert ae.requests == jobs * 805 and ae.tokens_out == jobs * 805  # a 1-token verdict
    assert ae.tokens_in == jobs * round(805 * ((1300 + 165 + 2049) / 4 + 400))
    assert mt.requests == jobs * 160 and mt.tokens_out == jobs * 160 * 200
    assert ae.gpu_hours is None and ae.gpus == 0
    upper = {
        r.part: r
        for r in judge_rows(run(grid={"modes": ["direct", "agg"]}), Lengths(10, 20, 400), 200, 4.0, True)
    }
    # the sweep's AlpacaEval 2 strategies (4 agg + 3 best-of-N, AFT-on-policy, both bases) are judged too
    assert {r.part: r for r in judge_rows(run(), Lengths(10, 20, 400), 200, 4.0, False)}[
        "alpaca_eval2"
    ].jobs == 12 + 14
    assert upper["mt_bench"].tokens_out == jobs * 160 * 2048  # judge.mt_bench.max_tokens
    assert BENCHES["mt_bench"].turns == 2 and BENCHES["alpaca_eval2"].turns == 1


def test_parameter_counts_by_model_id_and_unknown_models_name_the_base(tmp_path):
    cfg = run()
    assert params_of("llama31-8b", cfg.bases["llama31-8b"], {}) == 8.03e9
    local = cfg.bases["mistral-7b"].model_copy(update={"model": "/models/Mistral-7B-v0.1/"})
    assert params_of("mistral-7b", local, {}) == 7.24e9
    odd = cfg.bases["llama31-8b"].model_copy(update={"model": "org/Qwen2.5-3B"})
    with pytest.raises(
        ValueError, match=r"base 'llama31-8b' \(model 'org/Qwen2.5-3B'\).*--params llama31-8b="
    ):
        params_of("llama31-8b", odd, {})
    assert params_of("llama31-8b", odd, {"llama31-8b": 3.1e9}) == 3.1e9
    overlay = tmp_path / "odd.yaml"
    overlay.write_text("bases:\n  llama31-8b:\n    model: org/Qwen2.5-3B\n")
    with pytest.raises(SystemExit, match="base 'llama31-8b'"):
        main(["--configfile", "config/paper.yaml", str(overlay), "--json"])
    main(["--configfile", "config/paper.yaml", str(overlay), "--json", "--params", "llama31-8b=3.1e9"])
