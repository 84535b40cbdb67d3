"""How benchmark questions are answered: MT-Bench with FastChat's settings (answer temperature by
category, token budget), both turns, turn 2 after the turn-1 final answer, and with propose-and-aggregate
every turn proposed and aggregated over the conversation so far (a recording engine: no model)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from aft.method.aggregate import propose_and_aggregate
from aft.method.interface import EngineStats, Sampling, Usage
from aft.pipeline.config import load_config
from aft.stages.generate_answers import answer_rows, answer_settings, group_by_settings
from tests.conftest import load_yaml

IC = load_config(load_yaml("config/paper.yaml")).inference


@dataclass
class Recorder:
    calls: list = field(default_factory=list)
    stats: EngineStats = field(default_factory=EngineStats)
    last_usage: list = field(default_factory=list)

    def chat(self, conversations, sampling, seeds=None):
        k = len(self.calls)
        self.calls.append((conversations, sampling))
        # a conversation's cost: its message count as prompt tokens, 2 of them cached, 4 per sample
        self.last_usage = [Usage(1, len(c), 2, 4 * sampling.n) for c in conversations]
        return [[f"c{k}-v{i}-s{j}" for j in range(sampling.n)] for i in range(len(conversations))]

    def complete(self, prompts, sampling, seeds=None):
        return self.chat(prompts, sampling)


SETTINGS = [
    ("mt_bench", "writing", 0.7, 1024),
    ("mt_bench", "roleplay", 0.7, 1024),
    ("mt_bench", "stem", 0.1, 1024),
    ("mt_bench", "math", 0.0, 1024),
    ("mt_bench", "coding", 0.0, 1024),
    ("alpaca_eval2", "alpaca_eval", 0.7, 4096),  # the inference section as it is
]


@pytest.mark.parametrize(("bench", "category", "final_temperature", "max_tokens"), SETTINGS)
def test_answer_settings(bench, category, final_temperature, max_tokens):
    s = answer_settings(IC, bench, category)
    assert (s.final_temperature, s.max_tokens) == (final_temperature, max_tokens)
    assert (s.n, s.temperature, s.top_p, s.final_top_p) == (5, 0.7, 0.95, 1.0)  # proposal layers unchanged


def test_unknown_mt_bench_category_is_an_error():
    with pytest.raises(ValueError, match="category 'poetry' has no temperature"):
        answer_settings(IC, "mt_bench", "poetry")


ROWS = [
    {"id": "81", "category": "writing", "turns": ["W1", "W2"]},
    {"id": "111", "category": "math", "turns": ["M1", "M2"]},
    {"id": "82", "category": "writing", "turns": ["X1", "X2"]},
]


def test_rows_are_grouped_by_their_settings_in_first_seen_order():
    groups = group_by_settings(ROWS, IC, "mt_bench")
    assert [(s.final_temperature, idx) for s, idx in groups] == [(0.7, [0, 2]), (0.0, [1])]


def test_mt_bench_direct_answers_both_turns_at_the_category_temperature():
    eng = Recorder()
    answers, _, _ = answer_rows(ROWS, IC, "mt_bench", "direct", eng, "TPL")
    assert [c[1] for c in eng.calls] == [
        Sampling(1, 0.7, 1.0, 1024),  # writing, turn 1
        Sampling(1, 0.7, 1.0, 1024),  # writing, turn 2
        Sampling(1, 0.0, 1.0, 1024),  # math, turn 1 (greedy)
        Sampling(1, 0.0, 1.0, 1024),
    ]
    turn2_math = eng.calls[3][0][0]
    assert turn2_math == [
        {"role": "system", "content": "\n"},
        {"role": "user", "content": "M1"},
        {"role": "assistant", "content": answers[1][0]},
        {"role": "user", "content": "M2"},
    ]
    assert [len(a) for a in answers] == [2, 2, 2]


def test_mt_bench_with_aggregation_proposes_and_aggregates_every_turn_over_the_conversation():
    eng = Recorder()
    answers, traces, _ = answer_rows(ROWS[1:2], IC, "mt_bench", "propose_aggregate", eng, "TPL")
    assert len(eng.calls) == 6  # proposal, intermediate, final layer; per turn
    samplings = [c[1] for c in eng.calls]
    assert samplings[:3] == [
        Sampling(5, 0.7, 0.95, 1024),
        Sampling(5, 0.7, 0.95, 1024),
        Sampling(1, 0.0, 1.0, 1024),
    ]
    turn2_final = eng.calls[5][0][0]
    assert turn2_final[0]["content"].startswith("TPL\n1. c4-v0-s0")  # the turn-2 intermediate layer's outputs
    assert turn2_final[1:] == [
        {"role": "user", "content": "M1"},
        {"role": "assistant", "content": answers[0][0]},  # the turn-1 final answer
        {"role": "user", "content": "M2"},
    ]
    assert answers[0] == ["c2-v0-s0", "c5-v0-s0"] and [len(t) for t in traces[0]] == [3, 3]


def test_a_barrier_free_strategy_runs_seeded_programs_and_answers_as_layered():
    """schedule: barrier_free reaches the engine's run_programs, seeded from inference.seed, and gives
    the answers the same seeds give layer by layer."""
    from tests.unit.test_aggregate import SeededEngine

    rows = [{"id": i, "turns": [f"Q{i}"]} for i in range(4)]
    eng = SeededEngine(order_seed=3)
    free = answer_rows(rows, IC, "alpaca_eval2", "propose_aggregate", eng, "TPL", barrier_free=True)
    assert eng.calls == 0  # every request went through run_programs
    s = answer_settings(IC, "alpaca_eval2", "")
    convs = [[{"role": "user", "content": f"Q{i}"}] for i in range(4)]
    finals, layers, _ = propose_and_aggregate(SeededEngine(), convs, s, "TPL", seed=IC.seed)
    assert [a[0] for a in free[0]] == finals
    assert free[1][0][0][0] == layers[0][0]  # question 0's proposals: the same seeded samples


def test_best_of_n_answers_with_the_highest_scored_sample_and_counts_the_reward_models_reading():
    """The samples answer_rows(kind="sample") made, scored by a reward model stand-in that prefers the
    sample whose index matches the question's; each scored conversation read 10 tokens."""
    from aft.gen.reward import Scored
    from aft.stages.generate_answers import check_single_turn, choose_best

    class Scorer:
        def __init__(self):
            self.calls = []

        def score(self, convs):
            self.calls.append(convs)
            return [
                Scored(float(c[1]["content"].endswith(c[0]["content"][-1])), 10, i == 0)
                for i, c in enumerate(convs)
            ]

    rows = [{"id": i, "turns": [f"Q{i}"]} for i in range(3)]
    eng = Recorder()
    s_ic = IC.model_copy(update={"n": 3})
    _, traces, usage = answer_rows(rows, s_ic, "alpaca_eval2", "sample", eng, "TPL")
    scorer = Scorer()
    answers, scores, usage2, cut = choose_best(rows, traces, usage, scorer)
    # the samples are "c0-v{question}-s{sample}": question i's best is sample i
    assert answers == [["c0-v0-s0"], ["c0-v1-s1"], ["c0-v2-s2"]]
    assert scores[1] == [[0.0, 1.0, 0.0]] and cut == 1
    assert len(scorer.calls) == 1 and scorer.calls[0][4] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "c0-v1-s1"},
    ]
    assert [u.reward_tokens for u in usage2] == [30, 30, 30]
    assert [u.generated_tokens for u in usage2] == [u.generated_tokens for u in usage]
    check_single_turn(rows)
    with pytest.raises(SystemExit, match=r"single-turn questions; 1 have more turns \(\[9\]\)"):
        check_single_turn([*rows, {"id": 9, "turns": ["a", "b"]}])


def test_a_bad_template_stops_generation_before_the_engine_starts(tmp_path, monkeypatch):
    from aft.stages import generate_answers

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine was started")

    monkeypatch.setattr(generate_answers, "VLLMEngine", no_engine)
    bad = tmp_path / "t.txt"
    bad.write_bytes(b"\xfe\xff")
    ic = load_config(load_yaml("config/config.yaml")).inference.model_copy(update={"template_file": str(bad)})
    (tmp_path / "bench.jsonl").write_text('{"id": "a", "turns": ["q"]}\n')
    with pytest.raises(SystemExit, match="inference.template_file = .*: not UTF-8"):
        generate_answers.run(
            ic, "propose_aggregate", "m", tmp_path / "bench.jsonl", "exact_match", tmp_path / "o.jsonl"
        )
