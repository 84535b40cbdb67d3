"""The method's side of generation: chat messages, sampling settings, the engine interface every
engine (aft.gen.engine) implements, its token accounting, and per-request seeds. Pure: the method's
modules depend on this, never on an engine."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

Message = dict[str, str]


@dataclass(frozen=True)
class Sampling:
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...] = ()


@dataclass
class EngineStats:
    """Token accounting: what a stage cost, logged to metrics.json and MLflow."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    # how each generation ended: the model's end-of-turn token, a stop string, or max_tokens (cut off)
    finished_eos: int = 0
    finished_stop_string: int = 0
    finished_length: int = 0
    empty_outputs: int = 0

    def as_dict(self, prefix: str = "") -> dict[str, int]:
        return {f"{prefix}{k}": v for k, v in self.__dict__.items()}

    def snapshot(self) -> EngineStats:
        return EngineStats(**self.__dict__)

    def cost_since(self, before: EngineStats) -> dict[str, int]:
        """Cost accounting since `before`: requests, tokens in (of which prefix-cached), tokens out."""
        return {
            "requests": self.requests - before.requests,
            "tokens_in": self.prompt_tokens - before.prompt_tokens,
            "tokens_in_cached": self.cached_prompt_tokens - before.cached_prompt_tokens,
            "tokens_out": self.generated_tokens - before.generated_tokens,
        }


Seeds = list[int] | None  # one sampling seed per request (None: the engine's own stream)


@dataclass(frozen=True)
class Usage:
    """What answering one question cost: requests, prompt tokens submitted (of which served from the
    prefix cache, so not computed), tokens generated, and tokens a reward model read (best-of-N).
    Summed over a question's layers and turns."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    reward_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self.__dict__.values(), other.__dict__.values(), strict=True)))

    def as_dict(self) -> dict[str, int]:
        """The counts; reward_tokens only where a reward model read something (best-of-N), so the other
        strategies' answer files stay byte for byte what they were before best-of-N existed."""
        out = dict(self.__dict__)
        if not out["reward_tokens"]:
            del out["reward_tokens"]
        return out


class Engine(Protocol):
    stats: EngineStats

    def chat(
        self, conversations: list[list[Message]], sampling: Sampling, seeds: Seeds = None
    ) -> list[list[str]]:
        """n completions per conversation, in sampling order."""
        ...

    def complete(self, prompts: list[str], sampling: Sampling, seeds: Seeds = None) -> list[list[str]]:
        """n raw-text continuations per prompt (base models, ICL)."""
        ...


class MeteredEngine(Engine, Protocol):
    """An engine that says what each item of its last call cost (the answer strategies' accounting)."""

    last_usage: list[Usage]  # one per conversation or prompt of the last chat/complete call, in order


def request_seed(seed: int, key: str, round_: int = 0) -> int:
    """A per-item sampling seed from (seed, item key, round): the same item always draws the same samples,
    whichever shard or run it is generated in."""
    digest = hashlib.sha256(f"{seed}:{key}:{round_}".encode()).hexdigest()
    return int(digest[:8], 16)  # 32 bits: vLLM adds the sample index for n > 1
