"""Training sets: SFT = direct examples (query -> target); AFT = aggregation examples
(query + proposals -> target) plus direct examples for a configured share of the queries.

Prompts are built by aft.prompts, the same functions inference uses.
"""

from __future__ import annotations

import random
from collections import Counter

from aft.engine import Message
from aft.prompts import aggregation_messages, proposal_messages


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


def filter_by_length(examples: list[dict], count_tokens, max_length: int) -> tuple[list[dict], int]:
    """Drop examples whose rendered conversation exceeds `max_length` tokens; return the drop count."""
    kept = [e for e in examples if count_tokens(e["messages"]) <= max_length]
    return kept, len(examples) - len(kept)


def token_counter(tokenizer):
    def count(messages: list[Message]) -> int:
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])

    return count
