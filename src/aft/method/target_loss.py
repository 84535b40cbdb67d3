"""The paper's §6.1 analysis, its pure part: which records are measured, the two prompts each target is
scored under (the query alone, as a direct example; the query with its proposals, as an aggregation
example: the same prompts training and inference use), and what the per-record losses add up to.

The forward passes are aft.stages.measure_target_loss's.
"""

from __future__ import annotations

import math
import random

from aft.method.interface import Message
from aft.method.prompts import aggregation_messages, proposal_messages

CONTEXTS = ("query", "query_and_proposals")  # what the target is conditioned on


def sample_records(records: list[dict], targets: dict[str, str], k: int, seed: int) -> list[dict]:
    """A seeded sample of k records that have a target and proposals, in file order (all if fewer)."""
    usable = [r for r in records if r["id"] in targets and r.get("proposals")]
    if len(usable) <= k:
        return usable
    keep = set(random.Random(seed).sample(range(len(usable)), k))
    return [r for i, r in enumerate(usable) if i in keep]


def prompts(record: dict, template: str) -> dict[str, list[Message]]:
    """The prompt of each context, exactly as build_dataset renders its examples."""
    return {
        "query": proposal_messages(record["messages"]),
        "query_and_proposals": aggregation_messages(record["messages"], record["proposals"], template),
    }


def target_span(prompt_ids: list[int], full_ids: list[int]) -> tuple[int, int]:
    """The target's token positions in the full conversation: what follows the rendered prompt (with its
    generation prompt). The chat template must render the prompt as a prefix of the conversation."""
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the chat template does not render the prompt as a prefix of the conversation")
    if len(full_ids) <= len(prompt_ids):
        raise ValueError("the target has no token")
    return len(prompt_ids), len(full_ids)


def summary(losses: dict[str, dict[str, float]], tokens: dict[str, int]) -> dict[str, float]:
    """Per context: the mean per-token loss over all target tokens (nats) and its perplexity; `losses`
    maps context -> record id -> the record's summed loss, `tokens` record id -> its target tokens."""
    n = sum(tokens.values())
    out = {}
    for ctx in CONTEXTS:
        mean = sum(losses[ctx].values()) / n
        out[f"loss_{ctx}"] = mean
        out[f"perplexity_{ctx}"] = math.exp(mean)
    out["loss_reduction"] = out["loss_query"] - out["loss_query_and_proposals"]
    return out


def per_record_means(
    losses: dict[str, dict[str, float]], tokens: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Per context and record: the mean per-token loss (what the paired interval resamples)."""
    return {ctx: {rid: total / tokens[rid] for rid, total in losses[ctx].items()} for ctx in CONTEXTS}
