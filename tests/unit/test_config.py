import json
from pathlib import Path

import pytest

from aft.pipeline.config import json_schema, load_config
from tests.conftest import ROOT, load_yaml

SHIPPED = ["config/config.yaml", "config/paper.yaml"]


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_configs_validate(path):
    cfg = load_config(load_yaml(path))
    assert cfg.grid.variants == ["sft", "aft_off", "aft_on"]


# the config an overlay is stacked on (its header says so); the miniature unless listed
OVERLAY_BASE = {"released_checkpoints.yaml": "config/paper.yaml"}


@pytest.mark.parametrize("overlay", sorted(p.name for p in (ROOT / "config/experiments").glob("*.yaml")))
def test_overlays_validate_on_their_base(overlay):
    base = OVERLAY_BASE.get(overlay, "config/config.yaml")
    load_config(_merge(load_yaml(base), load_yaml(f"config/experiments/{overlay}")))


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


def test_paper_config_is_the_full_grid():
    cfg = load_config(load_yaml("config/paper.yaml"))
    assert sorted(cfg.bases) == ["llama31-8b", "mistral-7b"]
    assert cfg.grid.modes == ["direct", "agg"]
    assert cfg.grid.benchmarks == ["alpaca_eval2", "mt_bench"]
    assert cfg.train.gradient_accumulation_steps == 8  # 128 / (2 x 8)
    assert (cfg.inference.n, cfg.inference.num_aggregation, cfg.inference.seed) == (5, 2, 2025)


BAD = [
    (
        "batch-not-divisible",
        {"train": {"global_batch_size": 33}},
        "train",
        "divisible by per_device_batch_size",
    ),
    ("typo-key", {"inference": {"temprature": 0.7}}, "inference.temprature", "Extra inputs"),
    ("wrong-type", {"inference": {"n": "five"}}, "inference.n", "valid integer"),
    ("negative", {"inference": {"n": 0}}, "inference.n", "greater than or equal to 1"),
    ("top-p-range", {"inference": {"top_p": 1.5}}, "inference.top_p", "less than or equal to 1"),
    (
        "unknown-variant",
        {"grid": {"variants": ["sft", "dpo"]}},
        "grid.variants.1",
        "'sft', 'aft_off' or 'aft_on'",
    ),
    ("bf16-on-cpu", {"train": {"bf16": True}}, "train", "bf16=true needs num_gpus >= 1"),
    ("base-name-underscore", {"bases": {"my_base": None}}, "bases", "pattern"),
    ("paper-bases-unknown", {"report": {"paper_bases": {"nope": None}}}, "<config>", "not in bases"),
]


@pytest.mark.parametrize(("case", "patch", "key", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_rejected_naming_key_and_expectation(case, patch, key, expected):
    raw = load_yaml("config/config.yaml")
    if case == "base-name-underscore":
        raw["bases"]["my_base"] = raw["bases"].pop("mini")
        raw["report"]["paper_bases"] = {}
    else:
        raw = _merge(raw, patch)
    with pytest.raises(ValueError) as err:
        load_config(raw)
    msg = str(err.value)
    assert key in msg and expected in msg, msg


def test_committed_schema_is_not_stale():
    committed = json.loads((ROOT / "workflow/schemas/config.schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), (
        "workflow/schemas/config.schema.json is stale: run `make schema`"
    )


def test_template_files_named_in_configs_exist():
    for path in SHIPPED:
        cfg = load_config(load_yaml(path))
        for f in (
            cfg.inference.template_file,
            cfg.dataset.template_file,
            cfg.targets.template_file,
            cfg.on_policy.icl_prompt_file,
        ):
            assert Path(ROOT / f).is_file(), f


def test_released_checkpoint_overlay_evaluates_the_four_released_models_with_the_official_template():
    cfg = load_config(
        _merge(load_yaml("config/paper.yaml"), load_yaml("config/experiments/released_checkpoints.yaml"))
    )
    models = {(b, v): c.model for b, vs in cfg.checkpoints.items() for v, c in vs.items()}
    assert models == {
        ("llama31-8b", "aft_off"): "linzw/Llama-AFT-Off-Policy",
        ("llama31-8b", "aft_on"): "linzw/Llama-AFT-On-Policy",
        ("mistral-7b", "aft_off"): "linzw/Mistral-AFT-Off-Policy",
        ("mistral-7b", "aft_on"): "linzw/Mistral-AFT-On-Policy",
    }
    assert cfg.grid.variants == ["aft_off", "aft_on"] and cfg.grid.modes == ["direct", "agg"]
    name = cfg.sources.aggregation_template.files[0].name
    assert cfg.inference.template_file == f"results/download_source/aggregation_template/{name}"
    assert cfg.sources.aggregation_template.files[0].sha256.startswith("5263016f")


def test_paper_judges_are_pinned_and_labelled():
    cfg = load_config(load_yaml("config/paper.yaml"))
    assert cfg.judge.model_for("alpaca_eval2") == "gpt-4-1106-preview"
    assert cfg.judge.model_for("mt_bench") == "gpt-4-0613"
    assert (
        cfg.judge.endpoint.base_url is None
        and cfg.judge.alpaca_eval2.annotator == "weighted_alpaca_eval_gpt4_turbo"
    )
    assert (cfg.judge.mt_bench.temperature, cfg.judge.mt_bench.max_tokens) == (0.0, 2048)
    assert cfg.inference.mt_bench.max_new_tokens == 1024
    assert cfg.inference.mt_bench.temperature_by_category["writing"] == 0.7


PAPER_BAD = [
    (
        "judge-alias-on-openai",
        {"judge": {"model": "gpt-4"}},
        "judge",
        "model='gpt-4': the OpenAI API needs a pinned",
    ),
    (
        "mt-judge-alias-on-openai",
        {"judge": {"mt_bench": {"model": "gpt-4o"}}},
        "judge",
        "mt_bench.model='gpt-4o': the OpenAI API needs a pinned",
    ),
    (
        "cache-outside-results",
        {"judge": {"cache_dir": "/tmp/cache"}},
        "judge",
        "must be a relative path under results/",
    ),
    ("cache-escapes-results", {"judge": {"cache_dir": "results/../x"}}, "judge", "under results/"),
    (
        "endpoint-scheme",
        {"judge": {"endpoint": {"base_url": "localhost:8000/v1"}}},
        "judge.endpoint",
        "http://",
    ),
    (
        "key-env-name",
        {"judge": {"endpoint": {"api_key_env": "sk-123"}}},
        "judge.endpoint.api_key_env",
        "pattern",
    ),
    (
        "concurrency",
        {"judge": {"endpoint": {"concurrency": 0}}},
        "judge.endpoint.concurrency",
        "greater than or equal to 1",
    ),
    (
        "annotator",
        {"judge": {"alpaca_eval2": {"annotator": "alpaca_eval_gpt4"}}},
        "judge.alpaca_eval2.annotator",
        "weighted",
    ),
    ("no-mt-section", {"judge": {"mt_bench": None}}, "<config>", "judge.mt_bench must be given, got null"),
    ("no-endpoint", {"judge": {"endpoint": None}}, "<config>", "judge.endpoint must be given, got null"),
    (
        "no-judge-prompts",
        {"sources": {"mt_bench_judge_prompts": None}},
        "<config>",
        "sources.mt_bench_judge_prompts",
    ),
    (
        "mt-temperature",
        {"inference": {"mt_bench": {"temperature_by_category": {"math": -1}}}},
        "inference.mt_bench",
        ">= 0",
    ),
    (
        "checkpoint-base",
        {"checkpoints": {"nope": {"aft_on": {"model": "x/y", "revision": None}}}},
        "<config>",
        "not in bases",
    ),
    (
        "checkpoint-variant",
        {"checkpoints": {"mistral-7b": {"dpo": {"model": "x/y", "revision": None}}}},
        "checkpoints",
        "dpo",
    ),
]


@pytest.mark.parametrize(("case", "patch", "key", "expected"), PAPER_BAD, ids=[b[0] for b in PAPER_BAD])
def test_bad_judge_values_are_rejected_naming_key_and_expectation(case, patch, key, expected):
    with pytest.raises(ValueError) as err:
        load_config(_merge(load_yaml("config/paper.yaml"), patch))
    msg = str(err.value)
    assert key in msg and expected in msg, msg
