"""Message construction for propose-and-aggregate, matching the official code (Linzwcs/AFT, 4230de5).

Used identically by the training-set builder, the teacher and inference, so the prompts a model is
trained on are byte for byte the prompts it is asked at inference.
"""

from __future__ import annotations

from pathlib import Path

from aft.method.interface import Message

PROPOSAL_SYSTEM = "\n"  # the official proposer replaces the system message with a bare newline


def load_template(path: str | Path) -> str:
    """Read an aggregation template exactly as stored: no strip, no newline translation."""
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def _without_system(conversation: list[Message]) -> list[Message]:
    return [dict(m) for m in conversation if m["role"] != "system"]


def proposal_messages(conversation: list[Message]) -> list[Message]:
    """The proposal layer's prompt: the conversation with its system message replaced by "\\n"."""
    return [{"role": "system", "content": PROPOSAL_SYSTEM}, *_without_system(conversation)]


def aggregation_system(proposals: list[str], template: str) -> str:
    numbered = "\n".join(f"{i + 1}. {p}" for i, p in enumerate(proposals))
    return template + "\n" + numbered


def aggregation_messages(conversation: list[Message], proposals: list[str], template: str) -> list[Message]:
    """An aggregation layer's prompt: system = template + "\\n" + "1. p1\\n2. p2...", history kept."""
    system = {"role": "system", "content": aggregation_system(proposals, template)}
    return [system, *_without_system(conversation)]
