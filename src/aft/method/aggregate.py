"""Propose-and-aggregate inference with the official semantics (see spec/method.md), batched.

Every layer is one engine call for all conversations: vLLM samples n per prompt with the prompt
prefilled once, where the official code repeats each prompt n times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aft.method.interface import Engine, Message, Sampling
from aft.method.prompts import aggregation_messages, proposal_messages


@dataclass(frozen=True)
class AggSettings:
    n: int
    num_aggregation: int
    temperature: float
    top_p: float
    final_temperature: float
    final_top_p: float
    max_tokens: int

    @property
    def layer(self) -> Sampling:
        return Sampling(self.n, self.temperature, self.top_p, self.max_tokens)

    @property
    def final(self) -> Sampling:
        return Sampling(1, self.final_temperature, self.final_top_p, self.max_tokens)


def propose_and_aggregate(
    engine: Engine, conversations: list[list[Message]], s: AggSettings, template: str
) -> tuple[list[str], list[list[list[str]]]]:
    """Final answers, and every layer's outputs per conversation (layer, conversation, sample).

    Proposal layer (n samples, system "\\n"), then num_aggregation - 1 intermediate layers (n samples),
    then the final layer (1 sample, final sampling settings); each sees only the previous layer.
    """
    outputs = engine.chat([proposal_messages(c) for c in conversations], s.layer)
    layers = [outputs]
    for _ in range(s.num_aggregation - 1):
        prompts = [aggregation_messages(c, o, template) for c, o in zip(conversations, outputs)]
        outputs = engine.chat(prompts, s.layer)
        layers.append(outputs)
    prompts = [aggregation_messages(c, o, template) for c, o in zip(conversations, outputs)]
    final = engine.chat(prompts, s.final)
    layers.append(final)
    return [f[0] for f in final], layers


def direct(engine: Engine, conversations: list[list[Message]], s: AggSettings) -> list[str]:
    """One answer per conversation: the proposal-layer prompt with the final-layer sampling."""
    return [o[0] for o in engine.chat([proposal_messages(c) for c in conversations], s.final)]


AnswerFn = Callable[[list[list[Message]]], tuple[list[str], list]]


def answer_dialogues(
    turns: list[list[str]], answer: AnswerFn, batch_size: int | None = None
) -> tuple[list[list[str]], list[list]]:
    """Answer multi-turn dialogues turn by turn: turn t is asked after the final answers to turns < t.

    `turns[i]` are dialogue i's user messages. `answer` maps conversations to (answers, traces).
    Returns the assistant answers and traces per dialogue and turn. All dialogues that still have a
    turn t go in one call (or in calls of `batch_size`).
    """
    answers: list[list[str]] = [[] for _ in turns]
    traces: list[list] = [[] for _ in turns]
    for t in range(max((len(x) for x in turns), default=0)):
        active = [i for i, x in enumerate(turns) if len(x) > t]
        convs = []
        for i in active:
            history: list[Message] = []
            for user, assistant in zip(turns[i][:t], answers[i]):
                history += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
            convs.append([*history, {"role": "user", "content": turns[i][t]}])
        step = batch_size or len(convs) or 1
        outs: list[str] = []
        outs_trace: list = []
        for k in range(0, len(convs), step):
            a, tr = answer(convs[k : k + step])
            outs += a
            outs_trace += tr
        for i, out, tr in zip(active, outs, outs_trace, strict=True):
            answers[i].append(out)
            traces[i].append(tr)
    return answers, traces


def answerer(mode: str, engine: Engine, s: AggSettings, template: str) -> AnswerFn:
    """The answer function of an inference mode; traces hold every layer's outputs (agg mode)."""
    if mode == "direct":
        return lambda convs: (direct(engine, convs, s), [None] * len(convs))
    if mode == "agg":

        def agg(convs: list[list[Message]]) -> tuple[list[str], list]:
            finals, layers = propose_and_aggregate(engine, convs, s, template)
            return finals, [[layer[j] for layer in layers] for j in range(len(convs))]

        return agg
    raise ValueError(f"unknown inference mode {mode!r}; expected 'direct' or 'agg'")
