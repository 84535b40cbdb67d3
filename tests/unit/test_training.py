"""The training helpers: SFTConfig mapping, the assistant-only loss mask (through TRL's own dataset
preparation), resume bookkeeping, and every shipped DeepSpeed config resolving and parsing."""

from __future__ import annotations

import json
import math
import random

import pytest

from aft.method.chat_templates import END_OF_TURN, load_chat_template
from aft.miniature.basemodel import build_tokenizer, init_model
from aft.pipeline.config import BaseModelConfig, TrainConfig
from aft.train.training import (
    accumulation_steps,
    checkpoint_dir,
    checkpoint_step,
    end_of_turn_ids,
    fingerprint,
    history_rows,
    last_complete_checkpoint,
    optimizer_steps,
    prepare_tokenizer,
    sft_config_kwargs,
    train_metrics,
)
from tests.conftest import ROOT, load_yaml, tiny_pretrain

WORDS = [
    "add",
    "sub",
    "max",
    "min",
    "sort",
    "reverse",
    "count",
    "the",
    "answer",
    "is",
    "query",
    "of",
    "and",
    "numbers",
    "list",
    "you",
    "are",
    "terse",
]
CONVERSATION = [
    {"role": "system", "content": "you are terse"},
    {"role": "user", "content": "add 3 and 4"},
    {"role": "assistant", "content": "the answer is 7"},
    {"role": "user", "content": "max of 9 and 2"},
    {"role": "assistant", "content": "the answer is 9"},
]
DEEPSPEED = sorted((ROOT / "config" / "deepspeed").glob("*.json"))


def train_cfg(**over) -> TrainConfig:
    """The shipped `train` section as a job gets it (the workflow adds a replica's seed), with some keys
    replaced (tracks the schema as it changes)."""
    return TrainConfig.model_validate(load_yaml("config/config.yaml")["train"] | {"seed": 0} | over)


def tiny_tokenizer():
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(10)) + f" {rng.randint(0, 99)}" for _ in range(300)]
    return build_tokenizer(texts, vocab_size=300)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


# ------------------------------------------------------------------------------- SFTConfig mapping
@pytest.mark.parametrize(
    "global_batch,per_device,gpus,ranks,accumulation",
    [
        pytest.param(128, 4, 8, None, 4, id="paper-128-over-4x8-gpus"),
        pytest.param(128, 2, 8, None, 8, id="paper-128-over-2x8-gpus"),
        pytest.param(32, 32, 0, None, 1, id="miniature-cpu"),
        pytest.param(32, 8, 0, None, 4, id="cpu-accumulates"),
        pytest.param(128, 4, 8, 16, 2, id="more-ranks-than-configured-keep-global-batch"),
    ],
)
def test_gradient_accumulation_keeps_the_global_batch(global_batch, per_device, gpus, ranks, accumulation):
    cfg = train_cfg(
        global_batch_size=global_batch, per_device_batch_size=per_device, num_gpus=gpus, bf16=gpus > 0
    )
    kwargs = sft_config_kwargs(cfg, "/tmp/ckpt", ranks=ranks)
    assert kwargs["gradient_accumulation_steps"] == accumulation
    assert kwargs["per_device_train_batch_size"] == per_device
    if ranks is None:
        assert accumulation == cfg.gradient_accumulation_steps
    assert per_device * accumulation * (ranks or max(gpus, 1)) == global_batch


def test_ranks_that_do_not_divide_the_global_batch_are_rejected():
    cfg = train_cfg(global_batch_size=32, per_device_batch_size=8, num_gpus=0)
    with pytest.raises(ValueError, match="not divisible"):
        accumulation_steps(cfg, ranks=3)


def test_kwargs_map_every_train_key():
    cfg = train_cfg(
        learning_rate=2e-5,
        lr_scheduler_type="cosine",
        warmup_ratio=0.03,
        num_train_epochs=3,
        global_batch_size=128,
        per_device_batch_size=4,
        num_gpus=8,
        max_length=2048,
        bf16=True,
        deepspeed="config/deepspeed/zero3.json",
        gradient_checkpointing=True,
        sampling_strategy="group_by_length",
        seed=7,
    )
    kw = sft_config_kwargs(cfg, "/x/model.checkpoints", save_steps=25)
    expected = {
        "output_dir": "/x/model.checkpoints",
        "learning_rate": 2e-5,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,
        "num_train_epochs": 3.0,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 4,
        "max_length": 2048,
        "bf16": True,
        "fp16": False,
        "use_cpu": False,
        "deepspeed": "config/deepspeed/zero3.json",
        "gradient_checkpointing": True,
        "train_sampling_strategy": "group_by_length",
        "seed": 7,
        "assistant_only_loss": True,
        "packing": False,
        "save_strategy": "steps",
        "save_steps": 25,
        "save_total_limit": 1,
        "save_only_model": False,
        "report_to": "none",
        "dataloader_pin_memory": True,
        "dataloader_num_workers": 0,
    }
    assert {k: kw[k] for k in expected} == expected


@pytest.mark.parametrize(
    "gpus,deepspeed,use_cpu",
    [
        pytest.param(0, None, True, id="cpu"),
        pytest.param(8, None, False, id="gpus"),
        # use_cpu would stop TrainingArguments from starting DeepSpeed; it finds the CPU by itself
        pytest.param(0, "config/deepspeed/zero3_cpu_offload.json", False, id="cpu-deepspeed"),
    ],
)
def test_use_cpu(gpus, deepspeed, use_cpu):
    cfg = train_cfg(
        num_gpus=gpus, bf16=gpus > 0, deepspeed=deepspeed, global_batch_size=32, per_device_batch_size=4
    )
    kw = sft_config_kwargs(cfg, "/tmp/c")
    assert kw["use_cpu"] is use_cpu
    assert kw["dataloader_pin_memory"] is (gpus > 0)


def test_sft_config_accepts_the_kwargs_and_reads_warmup_as_a_ratio(tmp_path):
    from trl import SFTConfig

    cfg = train_cfg(warmup_ratio=0.03, global_batch_size=32, per_device_batch_size=8, num_gpus=0)
    args = SFTConfig(**sft_config_kwargs(cfg, tmp_path / "c", save_steps=3))
    assert args.gradient_accumulation_steps == 4
    assert args.get_warmup_steps(200) == 6  # ceil(0.03 x 200): the ratio survived transformers 5
    assert args.assistant_only_loss and not args.bf16 and not args.gradient_checkpointing
    assert args.save_steps == 3 and args.save_total_limit == 1
    assert args.report_to == [] or args.report_to == "none"


@pytest.mark.parametrize(
    "rows,per_device,global_batch,ranks,epochs,steps",
    [
        pytest.param(64, 4, 8, 1, 2, 16, id="even"),
        pytest.param(64, 4, 8, 1, 1.25, 10, id="fractional-epochs"),
        pytest.param(64, 2, 8, 2, 0.5, 4, id="two-ranks"),
        pytest.param(70, 4, 8, 1, 1, 9, id="partial-last-step"),
        pytest.param(3, 4, 32, 1, 1, 1, id="fewer-rows-than-a-batch"),
    ],
)
def test_optimizer_steps(rows, per_device, global_batch, ranks, epochs, steps):
    cfg = train_cfg(
        per_device_batch_size=per_device, global_batch_size=global_batch, num_gpus=0, num_train_epochs=epochs
    )
    assert optimizer_steps(cfg, rows, ranks) == steps


# ----------------------------------------------------------------------------------- the tokenizer
def test_prepare_tokenizer_sets_template_and_pad(tokenizer):
    tok = tiny_tokenizer()
    tok.chat_template = "{{ messages }}"
    tok.pad_token = None
    prepare_tokenizer(tok, "miniature")
    assert tok.chat_template == load_chat_template("miniature")
    assert tok.pad_token == "<|pad|>"  # a reserved pad token in the vocabulary beats eos


def test_prepare_tokenizer_rejects_a_family_whose_end_of_turn_is_missing(tokenizer):
    with pytest.raises(ValueError, match="<\\|eot_id\\|>"):
        prepare_tokenizer(tiny_tokenizer(), "llama3")


def test_end_of_turn_ids(tokenizer):
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    assert end_of_turn_ids(tokenizer, "miniature") == end
    tok = tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|eot_id|>"]})
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert end_of_turn_ids(tok, "llama3") == [eot, end]  # eos (<|end|>) still stops generation


# ------------------------------------------------------------------------------- the loss mask
def family_tokenizer(family: str):
    """The tiny tokenizer with the special tokens a family's template uses."""
    tok = tiny_tokenizer()
    if family == "llama3":
        tok.add_special_tokens(
            {"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
        )
    if family == "mistral":
        tok.add_special_tokens({"eos_token": "</s>"})
    return prepare_tokenizer(tok, family)


def spans(ids: list[int], keep: list[bool]) -> list[list[int]]:
    """Runs of consecutive ids where keep is true."""
    runs, current = [], []
    for i, k in zip(ids, keep, strict=True):
        if k:
            current.append(i)
        elif current:
            runs, current = [*runs, current], []
    return runs + ([current] if current else [])


@pytest.mark.parametrize("family", ["miniature", "llama3", "mistral"])
def test_trl_trains_exactly_the_assistant_tokens(family, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok = family_tokenizer(family)
    model = init_model(tok, tiny_pretrain())
    cfg = train_cfg(
        num_gpus=0, bf16=False, deepspeed=None, global_batch_size=8, per_device_batch_size=8, max_length=256
    )
    data = Dataset.from_list([{"messages": CONVERSATION}])
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**sft_config_kwargs(cfg, tmp_path)),
        train_dataset=data,
        processing_class=tok,
    )
    row = trainer.train_dataset[0]
    ids, labels = row["input_ids"], row["labels"]

    # the sequence is the template's rendering, and labels copy the ids wherever they are not -100
    assert tok.decode(ids) == tok.apply_chat_template(CONVERSATION, tokenize=False)
    assert all(lab in (-100, i) for i, lab in zip(ids, labels, strict=True))
    eot = END_OF_TURN[family]
    trained = [tok.decode(run) for run in spans(ids, [lab != -100 for lab in labels])]
    assert trained == ["the answer is 7" + eot, "the answer is 9" + eot]
    masked = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab == -100])
    for text in ("you are terse", "add 3 and 4", "max of 9 and 2"):
        assert text in masked


def test_trl_agrees_the_end_of_turn_is_trained(tokenizer):
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    assert is_chat_template_stop_token_trained(prepare_tokenizer(tiny_tokenizer(), "miniature"))


def _mixed_rows(n: int) -> list[dict]:
    """Short direct-like and long aggregation-like conversations, as AFT's training sets mix them."""
    rng = random.Random(1)
    rows = []
    for i in range(n):
        words = 2 if i % 2 else 40
        user = " ".join(rng.choice(WORDS) for _ in range(words))
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": f"the answer is {i}"},
                ]
            }
        )
    return rows


def test_batch_rebalance_keeps_the_random_batch_gradient_with_less_padding(tmp_path):
    """The miniature's sampling: each optimizer step is a random draw of global_batch_size rows, split by
    length over the accumulation micro-batches; the summed micro-batch gradients (TRL scaling the loss by
    the step's assistant tokens) equal the gradient of the same rows as one padded batch."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok = family_tokenizer("miniature")
    cfg = train_cfg(
        global_batch_size=16, per_device_batch_size=4, sampling_strategy="batch_rebalance", max_length=256
    )
    torch.manual_seed(0)
    trainer = SFTTrainer(
        model=init_model(tok, tiny_pretrain()),
        args=SFTConfig(**sft_config_kwargs(cfg, tmp_path)),
        train_dataset=Dataset.from_list(_mixed_rows(32)),
        processing_class=tok,
    )
    lengths = [len(r["input_ids"]) for r in trainer.train_dataset]
    micro = list(trainer._get_train_sampler())
    steps = [micro[i : i + 4] for i in range(0, len(micro), 4)]
    assert len(steps) == 2 and all(len(s) == 4 for s in steps)
    rows = [sorted(i for mb in step for i in mb) for step in steps]
    assert [len(r) for r in rows] == [16, 16] and sorted(rows[0] + rows[1]) == list(range(32))
    padded = sum(max(lengths[i] for i in mb) * len(mb) for mb in micro)
    as_one_batch = sum(max(lengths[i] for i in r) * len(r) for r in rows)
    assert padded < 0.75 * as_one_batch  # the long rows share micro-batches

    model, collate = trainer.model, trainer.data_collator
    batches = [collate([trainer.train_dataset[i] for i in mb]) for mb in steps[0]]
    _, items = trainer.get_batch_samples(iter(batches), 4, torch.device("cpu"))
    trainer.current_gradient_accumulation_steps = 4

    def grads(inputs_list):
        model.zero_grad()
        for inputs in inputs_list:
            trainer.training_step(model, inputs, num_items_in_batch=items)
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    split = grads(batches)
    whole = grads([collate([trainer.train_dataset[i] for i in rows[0]])])
    assert items == sum(int((b["labels"] != -100).sum()) for b in batches)
    torch.testing.assert_close(split, whole, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------- resume bookkeeping
def test_checkpoint_dir_sits_beside_the_output(tmp_path):
    assert checkpoint_dir(tmp_path / "results" / "model") == tmp_path / "results" / "model.checkpoints"


def test_last_complete_checkpoint_skips_half_written_ones(tmp_path):
    assert last_complete_checkpoint(tmp_path / "absent") is None
    states = {
        4: '{"global_step": 4}',
        10: '{"global_step": 10}',
        9: '{"global_step": 9}',
        12: None,  # killed before trainer_state.json
        11: '{"global_step": 11, "log_hist',
    }  # killed while writing it
    for step, state in states.items():
        (tmp_path / f"checkpoint-{step}").mkdir()
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-x").mkdir()
    last = last_complete_checkpoint(tmp_path)
    assert last == tmp_path / "checkpoint-10"
    assert checkpoint_step(last) == 10 and checkpoint_step(None) == 0


def test_fingerprint_changes_with_every_input():
    cfg = train_cfg()
    base = BaseModelConfig.model_validate(load_yaml("config/config.yaml")["bases"]["mini"])
    ref = fingerprint(cfg, base, "base/model", "aa", ranks=1)["hash"]
    assert fingerprint(cfg, base, "base/model", "aa", ranks=1)["hash"] == ref
    changed = [
        fingerprint(train_cfg(learning_rate=cfg.learning_rate * 2), base, "base/model", "aa", 1),
        fingerprint(cfg, base, "other/model", "aa", 1),
        fingerprint(cfg, base, "base/model", "bb", 1),
        fingerprint(cfg, base, "base/model", "aa", 2),
    ]
    assert all(f["hash"] != ref for f in changed)


def test_history_rows_and_metrics_survive_a_resume():
    log_history = [
        {"loss": 3.0, "learning_rate": 1e-3, "num_tokens": 100.0, "mean_token_accuracy": 0.1, "step": 1},
        {"loss": 2.5, "learning_rate": 1e-3, "num_tokens": 200.0, "mean_token_accuracy": 0.2, "step": 2},
        # resumed from step 2: TRL's token count restarts at zero
        {"loss": 2.0, "learning_rate": 5e-4, "num_tokens": 100.0, "mean_token_accuracy": 0.3, "step": 3},
        {"train_runtime": 4.0, "train_loss": 2.0, "step": 3},
    ]
    rows = history_rows(log_history, resumed_from_step=2)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["num_tokens"] for r in rows] == [100.0, 200.0, 300.0]
    assert rows[2] == {
        "step": 3,
        "loss": 2.0,
        "learning_rate": 5e-4,
        "num_tokens": 300.0,
        "mean_token_accuracy": 0.3,
    }
    m = train_metrics(rows, {"train_runtime": 4.0, "train_loss": 2.25}, global_step=3, rows=10, kept=9)
    assert m["train_loss"] == 2.25 and m["final_loss"] == 2.0  # the Trainer's mean; the last step's
    assert m["train_tokens"] == 300.0 and m["final_token_accuracy"] == 0.3
    assert not {"loss", "num_tokens", "mean_token_accuracy"} & set(m)  # the streamed series' names
    assert (m["train_steps"], m["train_samples"], m["train_rows_dropped"]) == (3, 9, 1)
    assert math.isnan(train_metrics([], {}, 0, 0, 0)["train_loss"])


# -------------------------------------------------------------------------------------- DeepSpeed
EXPECTED_DS = {
    "zero2.json": {"stage": 2, "bf16": True, "offload": None},
    "zero3.json": {"stage": 3, "bf16": True, "offload": None},
    "zero3_cpu_offload.json": {"stage": 3, "bf16": False, "offload": "cpu"},
}


def test_every_shipped_deepspeed_config_is_checked():
    assert sorted(p.name for p in DEEPSPEED) == sorted(EXPECTED_DS)


@pytest.mark.parametrize("path", DEEPSPEED, ids=lambda p: p.name)
def test_deepspeed_config_resolves_and_parses(path, tokenizer, tmp_path):
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig
    from trl import SFTConfig

    want = EXPECTED_DS[path.name]
    raw = json.loads(path.read_text())
    # a DeepSpeed scheduler would silently replace train.lr_scheduler_type
    assert "scheduler" not in raw
    cfg = train_cfg(global_batch_size=32, per_device_batch_size=4, num_gpus=0, bf16=False, deepspeed=None)
    # the Trainer's own arguments (no DeepSpeed process group in a unit test); bf16 as on the target machine
    args = SFTConfig(**sft_config_kwargs(cfg, tmp_path) | {"bf16": want["bf16"]})
    hf = HfTrainerDeepSpeedConfig(str(path))
    hf.trainer_config_process(args)
    hf.trainer_config_finalize(args, init_model(tokenizer, tiny_pretrain()), num_training_steps=100)
    resolved = hf.config
    assert '"auto"' not in json.dumps(resolved)
    assert resolved["train_batch_size"] == 32 and resolved["gradient_accumulation_steps"] == 8

    ds = DeepSpeedConfig(resolved)
    assert ds.zero_optimization_stage == want["stage"]
    assert ds.train_batch_size == 32
    assert ds.train_micro_batch_size_per_gpu == 4 and ds.gradient_accumulation_steps == 8
    assert ds.gradient_clipping == args.max_grad_norm
    assert ds.bfloat16_config.enabled is want["bf16"]
    assert ds.zero_config.overlap_comm and ds.zero_config.contiguous_gradients
    if want["stage"] == 3:
        # save_model writes whole 16-bit weights only when ZeRO-3 gathers them
        assert ds.zero_config.gather_16bit_weights_on_model_save
        assert ds.zero_config.prefetch_bucket_size == int(0.9 * 32 * 32)
    for offload in (ds.zero_config.offload_optimizer, ds.zero_config.offload_param):
        device = getattr(offload.device, "value", offload.device) if offload else None
        assert device in ((want["offload"],) if want["offload"] else (None, "none"))
    if want["offload"] == "cpu":
        assert ds.optimizer_name == "adamw"  # DeepSpeedCPUAdam steps the offloaded fp32 weights
        assert resolved["optimizer"]["params"]["lr"] == cfg.learning_rate
