"""Propose-and-aggregate call semantics, checked with a recording engine (pure logic: no model)."""

from dataclasses import dataclass, field

import pytest

from aft.gen.engine import RepeatedPromptEngine
from aft.method.aggregate import (
    AggSettings,
    answer_dialogues,
    answerer,
    best_of,
    layer_seeds,
    propose_and_aggregate,
    vote,
)
from aft.method.interface import EngineStats, Sampling, Usage

S = AggSettings(
    n=3, num_aggregation=2, temperature=0.7, top_p=0.95, final_temperature=0.5, final_top_p=1.0, max_tokens=16
)


@dataclass
class Recorder:
    """Answers "call<k>-conv<i>-s<j>" and records every call's prompts and sampling."""

    calls: list = field(default_factory=list)
    stats: EngineStats = field(default_factory=EngineStats)
    last_usage: list = field(default_factory=list)

    def chat(self, conversations, sampling):
        k = len(self.calls)
        self.calls.append((conversations, sampling))
        # a conversation's cost: its message count as prompt tokens, 2 of them cached, 4 per sample
        self.last_usage = [Usage(1, len(c), 2, 4 * sampling.n) for c in conversations]
        return [[f"c{k}-v{i}-s{j}" for j in range(sampling.n)] for i in range(len(conversations))]

    def complete(self, prompts, sampling):
        return self.chat(prompts, sampling)


CONVS = [
    [{"role": "user", "content": "Q0"}],
    [{"role": "system", "content": "sys"}, {"role": "user", "content": "Q1"}],
]


def test_layers_follow_the_official_semantics():
    eng = Recorder()
    finals, layers, usage = propose_and_aggregate(eng, CONVS, S, "TPL")
    assert len(eng.calls) == 3  # proposal, 1 intermediate, final
    (p0, s0), (p1, s1), (p2, s2) = eng.calls
    # the layer's system message first, the conversation's own kept after it (official get_conversations)
    assert p0[1] == [{"role": "system", "content": "\n"}, *CONVS[1]]
    assert s0 == Sampling(3, 0.7, 0.95, 16) and s1 == s0
    assert p1[1][0]["content"] == "TPL\n1. c0-v1-s0\n2. c0-v1-s1\n3. c0-v1-s2"  # only layer 0's outputs
    assert p2[0][0]["content"] == "TPL\n1. c1-v0-s0\n2. c1-v0-s1\n3. c1-v0-s2"  # only layer 1's outputs
    assert s2 == Sampling(1, 0.5, 1.0, 16)
    assert finals == ["c2-v0-s0", "c2-v1-s0"]
    assert [len(layer[0]) for layer in layers] == [3, 3, 1]
    # each conversation's cost, over its 3 requests: 3 + 3 + 1 samples of 4 tokens
    assert [u.requests for u in usage] == [3, 3] and [u.generated_tokens for u in usage] == [28, 28]
    assert usage[1].prompt_tokens == 3 + 3 + 3 and usage[1].cached_prompt_tokens == 6


@pytest.mark.parametrize(("num_aggregation", "calls", "generations"), [(1, 2, 4), (2, 3, 7), (3, 4, 10)])
def test_num_aggregation_counts_the_final_layer(num_aggregation, calls, generations):
    eng = Recorder()
    s = AggSettings(**{**S.__dict__, "num_aggregation": num_aggregation})
    propose_and_aggregate(eng, CONVS[:1], s, "T")
    assert len(eng.calls) == calls
    assert sum(c[1].n for c in eng.calls) == generations  # n=3: 3 + 3*(A-1) + 1


def test_direct_mode_is_one_sample_with_final_settings():
    eng = Recorder()
    answers, traces, _ = answerer("direct", eng, S, "T")(CONVS)
    assert answers == ["c0-v0-s0", "c0-v1-s0"] and traces == [None, None]
    assert eng.calls[0][1] == Sampling(1, 0.5, 1.0, 16)
    assert eng.calls[0][0][0][0] == {"role": "system", "content": "\n"}


def test_multi_turn_answers_turn_two_after_turn_one_final_answer():
    eng = Recorder()
    answers, traces, usage = answer_dialogues(
        [["T1", "T2"], ["U1"]], answerer("propose_aggregate", eng, S, "TPL")
    )
    assert len(eng.calls) == 6  # 3 layers per turn
    turn2_proposal_prompt = eng.calls[3][0][0]
    assert turn2_proposal_prompt == [
        {"role": "system", "content": "\n"},
        {"role": "user", "content": "T1"},
        {"role": "assistant", "content": answers[0][0]},
        {"role": "user", "content": "T2"},
    ]
    assert len(eng.calls[3][0]) == 1  # only the dialogue with a second turn
    assert [len(a) for a in answers] == [2, 1] and len(traces[0][1]) == 3
    # the two-turn dialogue paid for both turns (6 requests), the one-turn one for its own 3
    assert [u.requests for u in usage] == [6, 3] and [u.generated_tokens for u in usage] == [56, 28]


def test_repeated_prompt_engine_gives_n_outputs_from_n_single_calls():
    eng = Recorder()
    out = RepeatedPromptEngine(eng).chat(CONVS, Sampling(3, 0.7, 0.95, 8))
    prompts, sampling = eng.calls[0]
    assert sampling.n == 1 and len(prompts) == 6 and prompts[0] == prompts[2] == CONVS[0]
    assert out == [["c0-v0-s0", "c0-v1-s0", "c0-v2-s0"], ["c0-v3-s0", "c0-v4-s0", "c0-v5-s0"]]


@pytest.mark.parametrize(
    ("answers", "picked", "counts"),
    [
        (["7", "5", "5", "7"], 0, {"7": 2, "5": 2}),  # a tie goes to the answer seen first
        (["5", None, "7", "7"], 2, {"5": 1, "7": 2}),  # the first sample giving the majority answer
        ([None, "9", None, None], 1, {"9": 1}),  # samples without an answer do not vote
        ([None, None], 0, {}),  # no answer anywhere: the first sample
    ],
)
def test_vote_picks_the_first_sample_of_the_majority_answer(answers, picked, counts):
    samples = [f"s{i}" for i in range(len(answers))]
    assert vote(samples, answers) == (samples[picked], counts)


def test_majority_vote_samples_n_direct_prompts_and_replies_with_the_winner():
    eng = Recorder()
    s = AggSettings(**{**S.__dict__, "n": 4})
    # the samples' answers: the digit after "-s" modulo 2, so samples 0 and 2 against 1 and 3 -> tie -> "0"
    replies, traces, usage = answerer(
        "majority_vote", eng, s, "T", lambda xs: [str(int(x[-1]) % 2) for x in xs]
    )(CONVS)
    ((prompts, sampling),) = eng.calls
    assert sampling == Sampling(4, 0.7, 0.95, 16)  # the layer sampling: diverse samples to vote
    assert prompts[0][0] == {"role": "system", "content": "\n"}  # the direct (proposal) prompt
    assert replies == ["c0-v0-s0", "c0-v1-s0"]
    assert traces[0] == [["c0-v0-s0", "c0-v0-s1", "c0-v0-s2", "c0-v0-s3"]]
    assert [u.generated_tokens for u in usage] == [16, 16]


def test_sample_kind_gives_the_samples_best_of_n_picks_from_and_best_of_breaks_ties_early():
    eng = Recorder()
    s = AggSettings(**{**S.__dict__, "n": 3})
    replies, traces, usage = answerer("sample", eng, s, "T")(CONVS)
    ((prompts, sampling),) = eng.calls
    assert sampling == Sampling(3, 0.7, 0.95, 16) and prompts[0][0] == {"role": "system", "content": "\n"}
    assert replies == ["c0-v0-s0", "c0-v1-s0"] and traces[1] == [["c0-v1-s0", "c0-v1-s1", "c0-v1-s2"]]
    assert [u.generated_tokens for u in usage] == [12, 12]
    # an answer row names reward-model tokens only where a reward model read some
    assert (
        "reward_tokens" not in usage[0].as_dict() and Usage(reward_tokens=7).as_dict()["reward_tokens"] == 7
    )
    assert best_of(["a", "b", "c"], [0.1, 0.7, 0.7]) == 1  # the earliest of the highest
    assert best_of(["a"], [-3.0]) == 0
    with pytest.raises(ValueError, match="2 samples with 1 scores"):
        best_of(["a", "b"], [1.0])


def test_majority_vote_without_an_extractor_is_refused():
    with pytest.raises(ValueError, match="answer extraction"):
        answerer("majority_vote", Recorder(), S, "T")


def test_repeated_prompt_engine_sums_each_items_cost():
    eng = Recorder()
    rep = RepeatedPromptEngine(eng)
    rep.chat(CONVS, Sampling(3, 0.7, 0.95, 8))
    assert rep.last_usage == [Usage(3, 3, 6, 12), Usage(3, 6, 6, 12)]


@dataclass
class SeededEngine:
    """Samples that depend only on the prompt, the request's seed and the sample index (as vLLM's seeded
    sampling); run_programs advances the programs in a shuffled order, one request at a time."""

    order_seed: int = 0
    stats: EngineStats = field(default_factory=EngineStats)
    last_usage: list = field(default_factory=list)
    calls: int = 0

    def _sample(self, conv, sampling, seed) -> list[str]:
        return [f"{abs(hash((str(conv), seed, j, sampling.n))) % 1000}" for j in range(sampling.n)]

    def chat(self, conversations, sampling, seeds=None):
        self.calls += 1
        seeds = seeds or [None] * len(conversations)
        self.last_usage = [Usage(1, 10, 0, sampling.n) for _ in conversations]
        return [self._sample(c, sampling, s) for c, s in zip(conversations, seeds, strict=True)]

    def run_programs(self, programs):
        import random

        rng = random.Random(self.order_seed)
        results, usage = [None] * len(programs), [Usage()] * len(programs)
        pending = {i: next(p) for i, p in enumerate(programs)}
        while pending:
            i = rng.choice(sorted(pending))  # any question may finish its request next
            r = pending.pop(i)
            usage[i] += Usage(1, 10, 0, r.sampling.n)
            try:
                pending[i] = programs[i].send(self._sample(r.messages, r.sampling, r.seed))
            except StopIteration as done:
                results[i] = done.value
        return results, usage


def test_barrier_free_gives_the_layered_answers_whatever_the_order():
    convs = [[{"role": "user", "content": f"Q{i}"}] for i in range(6)]
    layered = propose_and_aggregate(SeededEngine(), convs, S, "TPL", seed=7)
    for order in (0, 1, 2):
        assert (
            propose_and_aggregate(SeededEngine(order), convs, S, "TPL", seed=7, barrier_free=True) == layered
        )
    # one round per layer when layered; another seed draws other samples
    eng = SeededEngine()
    propose_and_aggregate(eng, convs, S, "TPL", seed=7)
    assert eng.calls == 3
    assert propose_and_aggregate(SeededEngine(), convs, S, "TPL", seed=8)[1] != layered[1]


def test_a_question_draws_the_same_seeds_in_any_batch():
    conv = [{"role": "user", "content": "Q"}]
    assert layer_seeds(2025, conv, 3) == layer_seeds(2025, list(conv), 3)
    assert len(set(layer_seeds(2025, conv, 3))) == 3 and layer_seeds(2025, conv, 3) != layer_seeds(1, conv, 3)
    with pytest.raises(ValueError, match="needs per-question seeds"):
        propose_and_aggregate(SeededEngine(), [conv], S, "T", barrier_free=True)
