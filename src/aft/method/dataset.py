"""Training sets: SFT = direct examples (query -> target); AFT = aggregation examples
(query + proposals -> target) plus direct examples for a configured share of the queries.

Prompts are built by aft.method.prompts, the same functions inference uses.
"""

from __future__ import annotations

import random
from collections import Counter

from aft.method.interface import Message
from aft.method.prompts import aggregation_messages, proposal_messages


def direct_example(record: dict, target: str) -> dict:
    messages = [*proposal_messages(record["messages"]), {"role": "assistant", "content": target}]
    return {"id": f"{record['id']}-direct", "kind": "direct", "messages": messages}


def aggregation_example(record: dict, target: str, template: str) -> dict:
    prompt = aggregation_messages(record["messages"], record["proposals"], template)
    return {
        "id": f"{record['id']}-agg",
        "kind": "aggregation",
        "messages": [*prompt, {"role": "assistant", "content": target}],
    }


def build_examples(
    variant: str,
    records: list[dict],
    targets: dict[str, str],
    template: str,
    direct_fraction: float,
    seed: int,
) -> tuple[list[dict], Counter]:
    """The examples of one training variant, shuffled with `seed`."""
    counts: Counter = Counter(records_in=len(records))
    rng = random.Random(seed)
    examples = []
    for r in records:
        target = targets.get(r["id"])
        if target is None:
            counts["dropped_no_target"] += 1
            continue
        if variant == "sft":
            examples.append(direct_example(r, target))
            continue
        examples.append(aggregation_example(r, target, template))
        if rng.random() < direct_fraction:
            examples.append(direct_example(r, target))
    rng.shuffle(examples)
    counts.update(k["kind"] for k in examples)
    return examples, counts


def filter_by_length(examples: list[dict], lengths: list[int], max_length: int) -> tuple[list[dict], Counter]:
    """Drop examples whose rendered conversation exceeds `max_length` tokens; count drops per kind."""
    kept, counts = [], Counter()
    for e, n in zip(examples, lengths, strict=True):
        if n <= max_length:
            kept.append(e)
            counts["tokens_total"] += n
            counts["tokens_max"] = max(counts["tokens_max"], n)
        else:
            counts["dropped_too_long"] += 1
            counts[f"dropped_too_long_{e['kind']}"] += 1
    return kept, counts


def token_lengths(tokenizer, conversations: list[list[Message]], batch_size: int = 512) -> list[int]:
    """Tokens of each conversation rendered with the tokenizer's chat template, as training sees it.

    Renders to text, then tokenizes in batches without adding special tokens (the template writes
    them): the same ids as apply_chat_template(tokenize=True), much faster at paper scale."""
    lengths: list[int] = []
    for i in range(0, len(conversations), batch_size):
        texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations[i : i + batch_size]]
        lengths += [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return lengths


def aggregation_loss(examples: list[dict], kept: list[dict], max_dropped_fraction: float) -> str | None:
    """Why a length-filtered AFT set cannot be trained, or None: it lost more than `max_dropped_fraction`
    of its aggregation examples (all of them: "AFT" would silently train as SFT)."""
    before = sum(e["kind"] == "aggregation" for e in examples)
    after = sum(e["kind"] == "aggregation" for e in kept)
    if before == 0 or (before - after) <= max_dropped_fraction * before:
        return None
    return (
        f"the length filter dropped {before - after} of {before} aggregation examples"
        f" ({(before - after) / before:.0%} > dataset.max_dropped_fraction = {max_dropped_fraction:.0%}):"
        " raise dataset.max_length (and train.max_length) or shorten the proposals"
    )
