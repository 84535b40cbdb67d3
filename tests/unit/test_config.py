import json
from pathlib import Path

import pytest

from aft.config import json_schema, load_config
from tests.conftest import ROOT, load_yaml

SHIPPED = ["config/config.yaml", "config/paper.yaml"]


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_configs_validate(path):
    cfg = load_config(load_yaml(path))
    assert cfg.grid.variants == ["sft", "aft_off", "aft_on"]


@pytest.mark.parametrize("overlay", sorted(p.name for p in (ROOT / "config/experiments").glob("*.yaml")))
def test_overlays_validate_on_the_miniature(overlay):
    load_config(_merge(load_yaml("config/config.yaml"), load_yaml(f"config/experiments/{overlay}")))


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
