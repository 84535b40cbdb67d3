"""The paper data stages' cost estimate: token counts follow from the config."""

import json

import pytest

from aft.costs import DataStages, Lengths, Throughput, estimate, main, measure_ultrafeedback
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
    assert on.jobs == 2 and on.requests == 2 * 1000
    assert on.tokens_out == 2 * 1000 * 4 * 2048  # bases x queries x K x max_new_tokens
    assert on.tokens_in == 2 * 1000 * (100 + 10)  # ICL prompt + query
    # engine time: the ICL preamble is prefilled once (prefix cache), the queries each time
    assert on.gpu_hours == pytest.approx(2 * ((1000 * 10 + 100) / 1000 + 1000 * 4 * 2048 / 100) / 3600)
    t = rows["build_targets"]
    assert t.jobs == 3 and t.requests == 3 * 1000 and t.gpus == 4
    assert t.tokens_out == 3 * 1000 * 4096
    assert t.tokens_in == 1000 * ((30 + 4 * 20 + 10) + 2 * (30 + 4 * 2048 + 10))


def test_typical_caps_generated_length_and_an_api_teacher_costs_no_gpu():
    cfg = paper(api_base_url="https://api.example/v1")
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
    ]
    with pytest.raises(SystemExit, match="data.kind='paper'"):
        main(["--configfile", "config/config.yaml"])
