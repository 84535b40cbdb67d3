"""A reward model as best-of-N and the held-out check read it: a sequence-classification model with one
output (TRL's RewardTrainer makes these; so are the open ones, e.g. Skywork-Reward), scoring whole
conversations rendered with the model's own chat template, as TRL tokenizes them in training."""

from __future__ import annotations

from dataclasses import dataclass

from aft.method.interface import Message
from aft.pipeline.progress import Progress


@dataclass(frozen=True)
class Scored:
    score: float
    tokens: int  # tokens the model read (after any cut)
    cut: bool  # longer than max_length: cut from the right


class RewardScorer:
    """`model`: a model folder; `dtype`: float32 | bfloat16; conversations longer than `max_length`
    tokens are cut from the right. Scoring logs a line about every tenth of the conversations."""

    def __init__(
        self,
        model: str,
        dtype: str,
        batch_size: int,
        max_length: int,
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.batch_size, self.max_length = batch_size, max_length
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        net = AutoModelForSequenceClassification.from_pretrained(
            model, dtype=getattr(torch, dtype), num_labels=1
        )
        if net.config.pad_token_id is None:  # the score is read at the last token that is not padding
            tok = self.tokenizer
            net.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.net = net.to(self.device).eval()

    def tokens(self, conversation: list[Message]) -> list[int]:
        rendered = self.tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)
        return list(rendered["input_ids"])

    def score(self, conversations: list[list[Message]]) -> list[Scored]:
        """One scalar per conversation (its last message the reply being judged), longest batches first
        so memory peaks early."""
        import torch

        ids = [self.tokens(c) for c in conversations]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out: list[Scored | None] = [None] * len(ids)
        pad = self.net.config.pad_token_id
        progress = Progress("reward model", len(ids), "conversations")
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            rows = [ids[i][: self.max_length] for i in batch]
            width = max(len(r) for r in rows)
            input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
            with torch.no_grad():
                logits = self.net(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().tolist()
            for i, r, s in zip(batch, rows, logits, strict=True):
                out[i] = Scored(s, len(r), len(ids[i]) > self.max_length)
            progress.advance(len(batch))
        return out  # type: ignore[return-value]
