"""Propose-and-aggregate call semantics, checked with a recording engine (pure logic: no model)."""

from dataclasses import dataclass, field

import pytest

from aft.gen.engine import RepeatedPromptEngine
from aft.method.aggregate import AggSettings, answer_dialogues, answerer, propose_and_aggregate
from aft.method.interface import EngineStats, Sampling

S = AggSettings(
    n=3, num_aggregation=2, temperature=0.7, top_p=0.95, final_temperature=0.5, final_top_p=1.0, max_tokens=16
)


@dataclass
class Recorder:
    """Answers "call<k>-conv<i>-s<j>" and records every call's prompts and sampling."""

    calls: list = field(default_factory=list)
    stats: EngineStats = field(default_factory=EngineStats)

    def chat(self, conversations, sampling):
        k = len(self.calls)
        self.calls.append((conversations, sampling))
        return [[f"c{k}-v{i}-s{j}" for j in range(sampling.n)] for i in range(len(conversations))]

    def complete(self, prompts, sampling):
        return self.chat(prompts, sampling)


CONVS = [
    [{"role": "user", "content": "Q0"}],
    [{"role": "system", "content": "sys"}, {"role": "user", "content": "Q1"}],
]


def test_layers_follow_the_official_semantics():
    eng = Recorder()
    finals, layers = propose_and_aggregate(eng, CONVS, S, "TPL")
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


@pytest.mark.parametrize(("num_aggregation", "calls", "generations"), [(1, 2, 4), (2, 3, 7), (3, 4, 10)])
def test_num_aggregation_counts_the_final_layer(num_aggregation, calls, generations):
    eng = Recorder()
    s = AggSettings(**{**S.__dict__, "num_aggregation": num_aggregation})
    propose_and_aggregate(eng, CONVS[:1], s, "T")
    assert len(eng.calls) == calls
    assert sum(c[1].n for c in eng.calls) == generations  # n=3: 3 + 3*(A-1) + 1


def test_direct_mode_is_one_sample_with_final_settings():
    eng = Recorder()
    answers, traces = answerer("direct", eng, S, "T")(CONVS)
    assert answers == ["c0-v0-s0", "c0-v1-s0"] and traces == [None, None]
    assert eng.calls[0][1] == Sampling(1, 0.5, 1.0, 16)
    assert eng.calls[0][0][0][0] == {"role": "system", "content": "\n"}


def test_multi_turn_answers_turn_two_after_turn_one_final_answer():
    eng = Recorder()
    answers, traces = answer_dialogues([["T1", "T2"], ["U1"]], answerer("agg", eng, S, "TPL"))
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


def test_repeated_prompt_engine_gives_n_outputs_from_n_single_calls():
    eng = Recorder()
    out = RepeatedPromptEngine(eng).chat(CONVS, Sampling(3, 0.7, 0.95, 8))
    prompts, sampling = eng.calls[0]
    assert sampling.n == 1 and len(prompts) == 6 and prompts[0] == prompts[2] == CONVS[0]
    assert out == [["c0-v0-s0", "c0-v1-s0", "c0-v2-s0"], ["c0-v3-s0", "c0-v4-s0", "c0-v5-s0"]]
