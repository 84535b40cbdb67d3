"""The miniature base model: tokenizer, chat template, pretraining loop, save/reload, build_base CLI."""

from __future__ import annotations

import json
import os

import pytest

from aft.miniature import world
from aft.miniature.basemodel import (
    SPECIAL_TOKENS,
    _lr_factor,
    build_tokenizer,
    init_model,
    pretrain,
    save_base,
)
from aft.pipeline.config import MiniatureWorld
from aft.stages import build_base
from tests.conftest import tiny_pretrain

MW = MiniatureWorld(
    tasks=["add", "sub", "max", "min", "sort", "reverse", "count"],
    max_operand=20,
    n_pretrain=300,
    n_train=10,
    n_eval=10,
    pretrain_wrong_fraction=0.3,
    offpolicy_model_accuracies=[0.5],
)
TINY = tiny_pretrain(max_position_embeddings=64, steps=30, batch_size=8, seq_len=32, lr=0.01)
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 4 plus 9?"},
    {"role": "assistant", "content": "The answer is 13."},
]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """pretrain() uses os.cpu_count() threads; a model this tiny runs fastest (and steadiest on a
    busy machine) on one."""
    monkeypatch.setattr(os, "cpu_count", lambda: 1)


@pytest.fixture(scope="module")
def corpus() -> str:
    return world.corpus_text(MW, world.split_tasks(MW, 0)["pretrain"], 1)


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return build_tokenizer([corpus, "Below are queries and the answers of a careful assistant."], 300)


def test_tokenizer_round_trips_text(tokenizer, corpus):
    for text in [
        corpus[:2000],
        "Query: Spell kalo in reverse.\nAnswer: The answer is olak.\n\n",
        "naïve ✓ 42",
    ]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert len(tokenizer) == 300  # the corpus has enough distinct words to fill the vocabulary


def test_tokenizer_has_the_special_tokens(tokenizer):
    for token in SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert ids == [tokenizer.convert_tokens_to_ids(token)], token
    assert tokenizer.bos_token == "<|begin|>"
    assert tokenizer.eos_token == "<|end|>"
    assert tokenizer.pad_token == "<|pad|>"
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    # the tokenizer adds no BOS of its own: vLLM sees raw text exactly as it was pretrained on
    assert tokenizer("Query: x")["input_ids"] == tokenizer("Query: x", add_special_tokens=False)["input_ids"]


def test_chat_template_renders_and_masks_assistant_content(tokenizer):
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert text == (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nWhat is 4 plus 9?<|end|>\n"
        "<|assistant|>\nThe answer is 13.<|end|>\n"
    )
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|system|>\nBe brief.<|end|>\n<|user|>\nWhat is 4 plus 9?<|end|>\n<|assistant|>\n"

    out = tokenizer.apply_chat_template(
        CONVERSATION, tokenize=True, return_assistant_tokens_mask=True, return_dict=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    masked = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(masked) == "The answer is 13.<|end|>"
    assert masked[-1] == tokenizer.eos_token_id
    # the masked tokens are one contiguous run: the assistant content and its end-of-turn token
    first = mask.index(1)
    assert mask[first : first + len(masked)] == [1] * len(masked)


def test_lr_schedule_warms_up_then_decays_to_zero():
    steps = 100  # warmup = 5 steps
    factors = [_lr_factor(s, steps) for s in range(steps)]
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factors[5] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[5:], factors[6:], strict=False))
    assert factors[-1] == pytest.approx(0.0, abs=1e-3)
    assert _lr_factor(0, 1) == 1.0  # a one-step run still takes a full step


def test_pretrain_lowers_the_loss_and_is_deterministic(tokenizer, corpus):
    import torch

    threads = torch.get_num_threads()
    first = pretrain(init_model(tokenizer, TINY), tokenizer, corpus, TINY, log_every=10)
    assert torch.get_num_threads() == threads  # the process is left as it was
    assert [r["step"] for r in first] == list(range(1, TINY.steps + 1))
    losses = [r["loss"] for r in first]
    assert losses[0] == pytest.approx(5.70, abs=0.3)  # about ln(300): a uniform guess at the start
    assert sum(losses[-5:]) / 5 < losses[0] - 1.0
    again = pretrain(init_model(tokenizer, TINY), tokenizer, corpus, TINY, log_every=10)
    assert [r["loss"] for r in again] == losses


def test_pretrain_rejects_a_corpus_shorter_than_a_window(tokenizer):
    with pytest.raises(ValueError, match="fewer than seq_len"):
        pretrain(init_model(tokenizer, TINY), tokenizer, "Query: x", TINY)


def test_save_base_reloads_with_auto_classes(tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = init_model(tokenizer, TINY)
    save_base(model, tokenizer, tmp_path / "base")
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "base")

    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    assert model2.generation_config.eos_token_id == end_id
    assert model2.generation_config.bos_token_id == tokenizer.convert_tokens_to_ids("<|begin|>")
    assert model2.generation_config.pad_token_id == tokenizer.convert_tokens_to_ids("<|pad|>")
    assert model2.config.eos_token_id == end_id
    assert tok2.eos_token_id == end_id
    assert tok2.chat_template == tokenizer.chat_template
    text = "Query: What is 4 plus 9?\nAnswer: The answer is 13.\n\n"
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert tok2(text, return_tensors="pt")["input_ids"].tolist() == ids.tolist()
    with torch.no_grad():
        before, after = model.eval()(input_ids=ids).logits, model2.eval()(input_ids=ids).logits
    assert torch.equal(before, after)


def test_build_base_cli_writes_model_and_metrics(corpus, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "corpus.txt").write_text(corpus)
    (tmp_path / "extra.txt").write_text("quokka " * 2000)
    base = {"source": "build", "chat_template": "miniature", "build": TINY.model_dump()}
    args = ["--config", json.dumps({"base": base}), "--corpus", str(tmp_path / "corpus.txt")]
    args += ["--extra-text", str(tmp_path / "extra.txt"), "--out", str(tmp_path / "model")]
    build_base.main([*args, "--metrics", str(tmp_path / "metrics.json")])

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["stage"] == "build_base"
    m = metrics["metrics"]
    assert m["vocab_size"] == 300
    assert m["tokens_seen"] == TINY.steps * TINY.batch_size * TINY.seq_len
    assert 0 < m["final_loss"] < m["first_loss"]
    assert m["num_parameters"] > 10_000 and m["train_tokens_per_s"] > 0
    assert (tmp_path / "model" / "config.json").is_file()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "model")
    assert "Ġquokka" in tok.get_vocab()  # the extra text got merges, though it is not pretrained on


def test_build_base_cli_refuses_a_hub_base(tmp_path):
    base = {"source": "hub", "model": "some/model", "chat_template": "llama3"}
    args = ["--config", json.dumps({"base": base}), "--corpus", "c.txt", "--out", str(tmp_path / "m")]
    with pytest.raises(SystemExit, match="source='build'"):
        build_base.main([*args, "--metrics", str(tmp_path / "metrics.json")])


def test_summarize_uses_the_last_tenth_of_steps():
    history = [{"step": s, "loss": 10.0 if s <= 90 else 1.0} for s in range(1, 101)]
    m = build_base.summarize(history, tokens_per_step=64, train_seconds=2.0)
    assert m == {"final_loss": 1.0, "first_loss": 10.0, "tokens_seen": 6400, "train_tokens_per_s": 3200.0}


def test_thin_keeps_the_curve_in_at_most_max_rows():
    history = [{"step": s, "loss": float(s)} for s in range(1, 1001)]
    rows = build_base.thin(history, max_rows=100)
    assert len(rows) == 100
    assert rows[0] == {"step": 10, "loss": 5.5}  # mean of steps 1..10
    assert rows[-1] == {"step": 1000, "loss": 995.5}
    short = [{"step": s, "loss": 1.0} for s in range(1, 8)]
    assert build_base.thin(short, max_rows=100) == short
