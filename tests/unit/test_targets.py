"""Teacher targets through an engine: prompts, per-record seeds, drops counted, cost accounting."""

from dataclasses import dataclass, field

from aft.method.interface import EngineStats, Sampling, request_seed
from aft.method.prompts import aggregation_messages
from aft.method.targets import teacher_targets

RECORDS = [
    {"id": f"q{i}", "messages": [{"role": "user", "content": f"Q{i}"}], "proposals": [f"p{i}a", f"p{i}b"]}
    for i in range(4)
]


@dataclass
class FakeTeacher:
    """Answers "T:<query>", except empty for Q2; prompts of Q3 are 'too long'."""

    calls: list = field(default_factory=list)
    stats: EngineStats = field(default_factory=EngineStats)

    def chat_prompt_lengths(self, conversations):
        return [999 if c[-1]["content"] == "Q3" else 10 for c in conversations]

    def chat(self, conversations, sampling, seeds=None):
        self.calls.append((conversations, sampling, seeds))
        self.stats.requests += len(conversations)
        self.stats.prompt_tokens += 10 * len(conversations)
        self.stats.generated_tokens += 3 * len(conversations)
        return [["" if c[-1]["content"] == "Q2" else f" T:{c[-1]['content']} "] for c in conversations]


def test_teacher_targets_prompt_seed_and_count():
    engine = FakeTeacher()
    sampling = Sampling(1, 0.0, 1.0, 64)
    before = engine.stats.snapshot()
    targets, counts = teacher_targets(
        RECORDS, engine, "TPL", sampling, seed=7, name="teacher", max_prompt_tokens=100
    )
    assert targets == [
        {"id": "q0", "target": "T:Q0", "teacher": "teacher"},
        {"id": "q1", "target": "T:Q1", "teacher": "teacher"},
    ]
    conversations, used, seeds = engine.calls[0]
    assert conversations[0] == aggregation_messages(RECORDS[0]["messages"], RECORDS[0]["proposals"], "TPL")
    assert len(conversations) == 3 and used == sampling
    assert seeds == [request_seed(7, f"q{i}") for i in range(3)]
    assert counts == {
        "records_in": 4,
        "dropped_prompt_too_long": 1,
        "dropped_empty_target": 1,
        "targets_out": 2,
    }
    assert engine.stats.cost_since(before) == {
        "requests": 3,
        "tokens_in": 30,
        "tokens_in_cached": 0,
        "tokens_out": 9,
    }


def test_api_teacher_has_no_length_check():
    engine = FakeTeacher()
    targets, counts = teacher_targets(RECORDS, engine, "TPL", Sampling(1, 0.0, 1.0, 64), 0, "t")
    assert len(engine.calls[0][0]) == 4 and "dropped_prompt_too_long" not in counts
    assert [t["id"] for t in targets] == ["q0", "q1", "q3"]
