"""The miniature base model: a byte-level BPE tokenizer and a tiny Llama, built from the corpus.

Saved with `save_pretrained` (weights, tokenizer, chat template, generation config), so everything
downstream loads it exactly as it loads a hub model.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from aft.method.chat_templates import END_OF_TURN, load_chat_template
from aft.pipeline.config import PretrainConfig

log = logging.getLogger("aft")

SPECIAL_TOKENS = ["<|begin|>", "<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tokenizer(texts: list[str], vocab_size: int):
    """Train a byte-level BPE on `texts`; wrap it as a HF fast tokenizer with the miniature template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin|>",
        eos_token=END_OF_TURN["miniature"],
        pad_token="<|pad|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    hf.chat_template = load_chat_template("miniature")
    return hf


def init_model(tokenizer, cfg: PretrainConfig):
    """A randomly initialised tiny Llama sized by `cfg`, its special ids matching the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def _lr_factor(step: int, steps: int) -> float:
    """Linear warmup over the first 5% of steps, then cosine decay to zero (step counts from 0)."""
    warmup = max(1, round(0.05 * steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def pretrain(model, tokenizer, text: str, cfg: PretrainConfig, log_every: int = 50) -> list[dict]:
    """Next-token pretraining on random `cfg.seq_len` windows of the tokenised corpus.

    AdamW (weight decay 0.1, betas 0.9/0.95), 5% linear warmup then cosine decay, gradient clipping
    at 1.0. Deterministic under `cfg.seed`. Returns one row per step: {"step": s, "loss": l}.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        return _train(model, tokenizer, text, cfg, log_every)
    finally:
        torch.set_num_threads(threads)  # leave the process as it was


def _train(model, tokenizer, text: str, cfg: PretrainConfig, log_every: int) -> list[dict]:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
    window = cfg.seq_len + 1  # seq_len inputs, each predicting the next token
    if len(ids) < window:
        raise ValueError(f"corpus has {len(ids)} tokens, fewer than seq_len + 1 = {window}")
    log.info(
        "pretraining on %d corpus tokens: %d steps x %d x %d",
        len(ids),
        cfg.steps,
        cfg.batch_size,
        cfg.seq_len,
    )

    gen = torch.Generator().manual_seed(cfg.seed)
    offsets = torch.arange(window)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [  # no decay on norm gains (1-D), the usual practice
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optim = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: _lr_factor(s, cfg.steps))
    model.train()
    history: list[dict] = []
    tokens_per_step = cfg.batch_size * cfg.seq_len
    t0 = tick = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        starts = torch.randint(0, len(ids) - window + 1, (cfg.batch_size,), generator=gen)
        batch = ids[starts[:, None] + offsets]
        logits = model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        history.append({"step": step, "loss": loss.item()})
        if step % log_every == 0 or step == cfg.steps:
            now = time.perf_counter()
            n = step % log_every or log_every
            recent = sum(r["loss"] for r in history[-n:]) / n
            log.info(
                "step %d/%d loss %.4f lr %.2e %.0f tokens/s",
                step,
                cfg.steps,
                recent,
                sched.get_last_lr()[0],
                n * tokens_per_step / (now - tick),
            )
            tick = now
    model.eval()
    elapsed = time.perf_counter() - t0
    log.info(
        "pretraining done: %d tokens in %.1fs (%.0f tokens/s)",
        cfg.steps * tokens_per_step,
        elapsed,
        cfg.steps * tokens_per_step / elapsed,
    )
    return history


def save_base(model, tokenizer, out: Path) -> None:
    """Save weights, tokenizer (with the chat template) and a generation config whose eos is the
    end-of-turn token, so vLLM and `generate` stop where an assistant turn ends."""
    from transformers import GenerationConfig

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,  # <|end|>: ends an assistant turn after fine-tuning
        "pad_token_id": tokenizer.pad_token_id,
    }
    for key, value in special.items():
        setattr(model.config, key, value)
    model.generation_config = GenerationConfig(**special)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
