"""Message construction for propose-and-aggregate, matching the official code (Linzwcs/AFT, 4230de5).

Used identically by the training-set builder, the teacher and inference, so the prompts a model is
trained on are byte for byte the prompts it is asked at inference.
"""

from __future__ import annotations

from pathlib import Path

from aft.method.interface import Message

PROPOSAL_SYSTEM = "\n"  # the official proposal layer's system message: a bare newline


def load_template(path: str | Path) -> str:
    """Read an aggregation template exactly as stored: no strip, no newline translation."""
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def _with_system(content: str, conversation: list[Message]) -> list[Message]:
    """The layer's system message before the conversation, as the official get_conversations does
    (`[{system}] + conversation`): a system message the conversation has is kept after it."""
    return [{"role": "system", "content": content}, *(dict(m) for m in conversation)]


def proposal_messages(conversation: list[Message]) -> list[Message]:
    """The proposal layer's prompt: the system message "\\n", then the conversation."""
    return _with_system(PROPOSAL_SYSTEM, conversation)


def aggregation_system(proposals: list[str], template: str) -> str:
    numbered = "\n".join(f"{i + 1}. {p}" for i, p in enumerate(proposals))
    return template + "\n" + numbered


def aggregation_messages(conversation: list[Message], proposals: list[str], template: str) -> list[Message]:
    """An aggregation layer's prompt: system = template + "\\n" + "1. p1\\n2. p2...", then the conversation
    (history kept)."""
    return _with_system(aggregation_system(proposals, template), conversation)
