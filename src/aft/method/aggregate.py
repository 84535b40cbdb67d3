"""The answer strategies: direct, propose-and-aggregate with the official semantics (see
spec/method.md), majority vote and the samples best-of-N picks from, batched, with what each
question cost.

Every layer is one engine call for all conversations: vLLM samples n per prompt with the prompt
prefilled once, where the official code repeats each prompt n times.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass

from aft.method.interface import Message, MeteredEngine, Sampling, Usage, request_seed
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


class Meter:
    """Each conversation's cost over several engine calls (every call covers the conversations in order)."""

    def __init__(self, engine: MeteredEngine, count: int):
        self.engine = engine
        self.usage = [Usage()] * count

    def chat(
        self, conversations: list[list[Message]], sampling: Sampling, seed: int | None = None
    ) -> list[list[str]]:
        """One engine call; with `seed`, each conversation's request seeded from it and its content."""
        if seed is None:
            out = self.engine.chat(conversations, sampling)
        else:
            out = self.engine.chat(
                conversations, sampling, [layer_seeds(seed, c, 1)[0] for c in conversations]
            )
        self.usage = [u + v for u, v in zip(self.usage, self.engine.last_usage, strict=True)]
        return out


@dataclass(frozen=True)
class Request:
    """One engine request of a question's program: its prompt, sampling and seed (None: the engine's)."""

    messages: list[Message]
    sampling: Sampling
    seed: int | None = None


# A question's propose-and-aggregate as a program: it yields each layer's request, is sent that
# request's samples, and returns every layer's outputs. A scheduler runs many programs: layer by layer
# for all questions together (run_layered), or each advancing on its own (VLLMEngine.run_programs).
Program = Generator[Request, list[str], list[list[str]]]


def aggregation_program(
    conversation: list[Message], s: AggSettings, template: str, seeds: list[int] | None = None
) -> Program:
    """Proposal layer (n samples, system "\\n"), then num_aggregation - 1 intermediate layers (n
    samples), then the final layer (1 sample, final sampling settings); each sees only the previous
    layer. `seeds`: one per layer (num_aggregation + 1), so the samples do not depend on the schedule."""
    if seeds is not None and len(seeds) != s.num_aggregation + 1:
        raise ValueError(f"{len(seeds)} seeds for {s.num_aggregation + 1} layers")
    seed = (lambda k: None) if seeds is None else seeds.__getitem__
    outputs = yield Request(proposal_messages(conversation), s.layer, seed(0))
    layers = [outputs]
    for k in range(1, s.num_aggregation):
        outputs = yield Request(aggregation_messages(conversation, outputs, template), s.layer, seed(k))
        layers.append(outputs)
    final = yield Request(
        aggregation_messages(conversation, outputs, template), s.final, seed(s.num_aggregation)
    )
    layers.append(final)
    return layers


def layer_seeds(seed: int, conversation: list[Message], layers: int) -> list[int]:
    """Per-layer seeds of one question from the inference seed and the conversation's content: the same
    question draws the same samples whatever batch, order or schedule it runs in."""
    key = hashlib.sha256(json.dumps(conversation, sort_keys=True).encode()).hexdigest()
    return [request_seed(seed, key, k) for k in range(layers)]


def run_layered(engine: MeteredEngine, programs: list[Program]) -> tuple[list, list[Usage]]:
    """Advance every program together: each round is one engine call per sampling setting over the
    requests of all programs still running, so every question waits for the round's longest generation
    (the barrier). Returns each program's result and cost."""
    results: list = [None] * len(programs)
    usage = [Usage()] * len(programs)
    pending = {i: next(p) for i, p in enumerate(programs)}
    while pending:
        groups: dict[Sampling, list[int]] = {}
        for i, r in pending.items():
            groups.setdefault(r.sampling, []).append(i)
        following: dict[int, Request] = {}
        for sampling, idx in groups.items():
            seeds = [pending[i].seed for i in idx]
            if len({x is None for x in seeds}) > 1:
                raise ValueError("a round mixes seeded and unseeded requests")
            messages = [pending[i].messages for i in idx]
            outs = (
                engine.chat(messages, sampling)
                if seeds[0] is None
                else engine.chat(messages, sampling, seeds)
            )
            for i, out, cost in zip(idx, outs, engine.last_usage, strict=True):
                usage[i] += cost
                try:
                    following[i] = programs[i].send(out)
                except StopIteration as done:
                    results[i] = done.value
        pending = following
    return results, usage


def propose_and_aggregate(
    engine: MeteredEngine,
    conversations: list[list[Message]],
    s: AggSettings,
    template: str,
    seed: int | None = None,
    barrier_free: bool = False,
) -> tuple[list[str], list[list[list[str]]], list[Usage]]:
    """Final answers, every layer's outputs per conversation (layer, conversation, sample), and each
    conversation's cost (aggregation_program's semantics).

    Layered (default): every layer one engine call over all conversations. barrier_free: each
    conversation's next layer starts as soon as its own previous one is done (the engine's
    run_programs). With `seed`, each question's layers are seeded from it and its content, so both
    schedules give the same samples; without, the engine's own stream (layered only).
    """
    if barrier_free and seed is None:
        raise ValueError(
            "barrier-free scheduling needs per-question seeds (seed), or results would hang on it"
        )
    depth = s.num_aggregation + 1
    programs = [
        aggregation_program(c, s, template, None if seed is None else layer_seeds(seed, c, depth))
        for c in conversations
    ]
    results, usage = engine.run_programs(programs) if barrier_free else run_layered(engine, programs)
    layers = [[r[k] for r in results] for k in range(depth)]
    return [f[0] for f in layers[-1]], layers, usage


def direct(
    engine: MeteredEngine, conversations: list[list[Message]], s: AggSettings, seed: int | None = None
) -> tuple[list[str], list[Usage]]:
    """One answer per conversation: the proposal-layer prompt with the final-layer sampling (`seed`: each
    conversation seeded from it and its content; None: the engine's stream)."""
    meter = Meter(engine, len(conversations))
    outs = meter.chat([proposal_messages(c) for c in conversations], s.final, seed)
    return [o[0] for o in outs], meter.usage


VoteFn = Callable[[list[str]], list[str | None]]  # responses -> the answer each gives (None: none found)


def vote(samples: list[str], answers: list[str | None]) -> tuple[str, dict[str, int]]:
    """The reply a majority vote picks: the first sample giving the most frequent answer (ties go to the
    answer seen first); with no answer found in any sample, the first sample. And the vote counts."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return samples[0], {}
    top = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == top)
    return samples[answers.index(winner)], dict(counts)


def sample(
    engine: MeteredEngine, conversations: list[list[Message]], s: AggSettings, seed: int | None = None
) -> tuple[list[list[str]], list[Usage]]:
    """n samples of the direct prompt per conversation at the layer sampling (s.n, temperature, top_p):
    what majority vote and best-of-N choose from (`seed` as in `direct`)."""
    meter = Meter(engine, len(conversations))
    return meter.chat([proposal_messages(c) for c in conversations], s.layer, seed), meter.usage


def majority_vote(
    engine: MeteredEngine,
    conversations: list[list[Message]],
    s: AggSettings,
    answers_of: VoteFn,
    seed: int | None = None,
) -> tuple[list[str], list[list[str]], list[Usage]]:
    """Self-consistency: the majority answer's first sample as the reply; returns the replies, the
    samples and the costs (`seed` as in `direct`)."""
    samples, usage = sample(engine, conversations, s, seed)
    replies = [vote(x, answers_of(x))[0] for x in samples]
    return replies, samples, usage


def best_of(samples: list[str], scores: list[float]) -> int:
    """The index of the sample a reward model scores highest (ties to the earliest)."""
    if len(samples) != len(scores) or not samples:
        raise ValueError(f"{len(samples)} samples with {len(scores)} scores")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


AnswerFn = Callable[[list[list[Message]]], tuple[list[str], list, list[Usage]]]


def answer_dialogues(
    turns: list[list[str]], answer: AnswerFn, batch_size: int | None = None
) -> tuple[list[list[str]], list[list], list[Usage]]:
    """Answer multi-turn dialogues turn by turn: turn t is asked after the final answers to turns < t.

    `turns[i]` are dialogue i's user messages. `answer` maps conversations to (answers, traces, costs).
    Returns the assistant answers and traces per dialogue and turn, and each dialogue's cost over its
    turns. All dialogues that still have a turn t go in one call (or in calls of `batch_size`).
    """
    answers: list[list[str]] = [[] for _ in turns]
    traces: list[list] = [[] for _ in turns]
    usage = [Usage()] * len(turns)
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
        outs_usage: list[Usage] = []
        for k in range(0, len(convs), step):
            a, tr, u = answer(convs[k : k + step])
            outs += a
            outs_trace += tr
            outs_usage += u
        for i, out, tr, u in zip(active, outs, outs_trace, outs_usage, strict=True):
            answers[i].append(out)
            traces[i].append(tr)
            usage[i] += u
    return answers, traces, usage


KINDS = ("direct", "propose_aggregate", "majority_vote", "sample")


def answerer(
    kind: str,
    engine: MeteredEngine,
    s: AggSettings,
    template: str,
    answers_of: VoteFn | None = None,
    seed: int | None = None,
    barrier_free: bool = False,
) -> AnswerFn:
    """The answer function of a strategy kind. Traces: every layer's outputs (propose_aggregate), the
    samples that voted (majority_vote, as one layer), None (direct). `sample`: the n samples as the
    trace and the first as the reply (best-of-N picks among them once a reward model has scored them).
    `seed`: every request seeded from it and its question's content, so a question draws the same samples
    in any batch, shard or schedule (None: the engine's own stream); `barrier_free`: propose-and-aggregate
    without a barrier between layers (needs `seed`)."""
    if kind == "direct":

        def one(convs: list[list[Message]]) -> tuple[list[str], list, list[Usage]]:
            replies, usage = direct(engine, convs, s, seed)
            return replies, [None] * len(convs), usage

        return one
    if kind == "propose_aggregate":

        def agg(convs: list[list[Message]]) -> tuple[list[str], list, list[Usage]]:
            finals, layers, usage = propose_and_aggregate(
                engine, convs, s, template, seed=seed, barrier_free=barrier_free
            )
            return finals, [[layer[j] for layer in layers] for j in range(len(convs))], usage

        return agg
    if kind == "majority_vote":
        if answers_of is None:
            raise ValueError("majority_vote needs the benchmark's answer extraction (answers_of)")

        def voted(convs: list[list[Message]]) -> tuple[list[str], list, list[Usage]]:
            replies, samples, usage = majority_vote(engine, convs, s, answers_of, seed)
            return replies, [[x] for x in samples], usage

        return voted
    if kind == "sample":

        def sampled(convs: list[list[Message]]) -> tuple[list[str], list, list[Usage]]:
            samples, usage = sample(engine, convs, s, seed)
            return [x[0] for x in samples], [[x] for x in samples], usage

        return sampled
    raise ValueError(f"unknown strategy kind {kind!r}; expected one of {KINDS}")
