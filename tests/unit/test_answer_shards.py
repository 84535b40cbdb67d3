"""generate_answers in shards (inference.shard_size): a job stopped mid-way keeps its finished shards, the
rerun answers only the rest and writes what an unbroken run writes, whatever the shard size, because every
request is seeded from (inference.seed, its question's content). A seeded stand-in engine here; the real
vLLM engine killed with SIGKILL is tests/integration/test_paper_data.py's."""

from __future__ import annotations

import json

import pytest

from aft.pipeline.config import RewardModelConfig, load_config
from aft.stages import generate_answers
from tests.conftest import load_yaml
from tests.unit.test_aggregate import SeededEngine

IC = load_config(load_yaml("config/config.yaml")).inference.model_copy(update={"shard_size": 2})
ROWS = [
    {"id": f"q{i}", "turns": [f"question {i}"] + ([f"follow-up {i}"] if i % 3 == 0 else [])} for i in range(7)
]


class Stopped(Exception):
    """Stands for the job being killed."""


class FakeVLLM(SeededEngine):
    """generate_answers' engine, seeded like vLLM; `stop_at`: the engine call that 'kills' the job."""

    started = 0
    stop_at: int | None = None

    def __init__(self, model, cfg, seed, per_request_seeds=False):
        super().__init__()
        assert per_request_seeds  # every request carries its own seed
        FakeVLLM.started += 1

    def chat(self, conversations, sampling, seeds=None):
        assert seeds is not None and len(seeds) == len(conversations)
        if FakeVLLM.stop_at is not None and self.calls + 1 == FakeVLLM.stop_at:
            raise Stopped
        return super().chat(conversations, sampling, seeds)


@pytest.fixture
def bench(tmp_path, monkeypatch):
    monkeypatch.setattr(generate_answers, "VLLMEngine", FakeVLLM)
    FakeVLLM.started, FakeVLLM.stop_at = 0, None
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def answer(bench, out, ic=IC, kind="propose_aggregate"):
    return generate_answers.run(ic, kind, "model-dir", bench, "exact_match", out).metrics


@pytest.mark.parametrize("kind", ["direct", "propose_aggregate", "majority_vote"])
def test_a_stopped_job_resumes_from_its_shards_and_writes_what_an_unbroken_one_writes(bench, tmp_path, kind):
    unbroken = tmp_path / "unbroken.jsonl"
    m = answer(bench, unbroken, kind=kind)
    assert (m["shards_total"], m["shards_run"], m["shards_reused"]) == (4, 4, 0)

    out = tmp_path / "answers.jsonl"
    # mid-way through the second shard (the first: turn 1 of q0, q1, then turn 2 of q0)
    FakeVLLM.stop_at = 7 if kind == "propose_aggregate" else 3
    with pytest.raises(Stopped):
        answer(bench, out, kind=kind)
    assert not out.exists() and len(list((tmp_path / "answers.jsonl.shards").glob("shard-*.json"))) == 1
    FakeVLLM.stop_at = None
    m = answer(bench, out, kind=kind)
    assert out.read_bytes() == unbroken.read_bytes()
    assert (m["shards_reused"], m["shards_run"]) == (1, 3)
    # the same answers in one shard of all 7 questions: a question's samples do not depend on its batch
    whole = tmp_path / "whole.jsonl"
    answer(bench, whole, IC.model_copy(update={"shard_size": 7}), kind=kind)
    assert whole.read_bytes() == unbroken.read_bytes()


def test_a_finished_run_starts_no_engine_and_a_changed_setting_remakes_the_shards(bench, tmp_path):
    out = tmp_path / "answers.jsonl"
    answer(bench, out)
    first = out.read_bytes()
    # the job was killed after its last shard, before metrics.json: the rerun only assembles
    started = FakeVLLM.started
    m = answer(bench, out)
    assert FakeVLLM.started == started and out.read_bytes() == first
    assert (m["shards_reused"], m["shards_run"], m["engine_requests"]) == (4, 0, 0)
    # shards made with other settings are stale, never mixed in
    m = answer(bench, out, IC.model_copy(update={"shard_size": 2, "seed": IC.seed + 1}))
    assert (m["shards_stale"], m["shards_run"]) == (4, 4) and out.read_bytes() != first


def test_rows_keep_their_order_turns_and_costs(bench, tmp_path):
    out = tmp_path / "answers.jsonl"
    answer(bench, out)
    rows = [json.loads(line) for line in out.open()]
    assert [r["id"] for r in rows] == [r["id"] for r in ROWS]
    assert [len(r["outputs"]) for r in rows] == [len(r["turns"]) for r in ROWS]
    # 11 generations a turn (5 + 5 + 1), in 3 requests, each costing 10 prompt tokens here
    assert [r["usage"]["requests"] for r in rows] == [3 * len(r["turns"]) for r in ROWS]
    assert [r["usage"]["generated_tokens"] for r in rows] == [11 * len(r["turns"]) for r in ROWS]


class FakeScorer:
    """A reward model stand-in: a sample's score is its last digit; each conversation read 10 tokens."""

    def __init__(self, model, dtype, batch_size, max_length):
        assert all(e.closed for e in FakeBestOfN.engines)  # the policy's engine gave the device back

    def score(self, convs):
        from aft.gen.reward import Scored

        return [Scored(float(c[1]["content"][-1]), 10, False) for c in convs]


class FakeBestOfN(FakeVLLM):
    engines: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.closed = False
        FakeBestOfN.engines.append(self)

    def close(self):
        self.closed = True


def test_parts_answer_their_shards_and_the_gather_writes_what_one_job_writes(bench, tmp_path, monkeypatch):
    """inference.num_jobs parts (the rule generate_answers_part): part I-of-N answers the shards i with
    i % N == I - 1, best-of-N scored in the part (its GPU job), and the gather assembles them on CPU."""
    monkeypatch.setattr(generate_answers, "VLLMEngine", FakeBestOfN)
    monkeypatch.setattr(generate_answers, "RewardScorer", FakeScorer)
    single = [r | {"turns": r["turns"][:1]} for r in ROWS]  # best-of-N answers single-turn questions
    bench.write_text("".join(json.dumps(r) + "\n" for r in single))
    rm = load_yaml("config/experiments/scaling.yaml")["reward_models"]["mini-rm"]
    reward = (RewardModelConfig.model_validate(rm), "rm-dir")
    ic = IC.model_copy(update={"n": 4})

    def run(out, part=None, parts=None):
        return generate_answers.run(
            ic, "best_of_n", "m", bench, "exact_match", out, False, reward, part, parts
        )

    one = tmp_path / "one.jsonl"
    run(one)
    files = [tmp_path / f"part{i}" / "part.json" for i in (1, 2, 3)]
    for i, f in enumerate(files, 1):
        f.parent.mkdir()
        m = run(f, part=f"{i}-of-3").metrics
        assert (m["job"], m["num_jobs"], m["shards_total"]) == (i - 1, 3, 2 if i == 1 else 1)
        assert m["n_questions"] == (3 if i == 1 else 2)  # shards 0 and 3 (q6 alone), 1, 2
    gathered = tmp_path / "gathered.jsonl"
    m = run(gathered, parts=files).metrics
    assert gathered.read_bytes() == one.read_bytes() and m["shards_run"] == 4 and m["n_questions"] == 7
    rows = [json.loads(line) for line in gathered.open()]
    # the chosen sample is the one with the highest last digit; the reward model's reading is counted
    for r in rows:
        (samples,) = r["trace"][0]
        assert r["outputs"] == [max(samples, key=lambda x: (int(x[-1]), -samples.index(x)))]
        assert r["usage"]["reward_tokens"] == 40
    with pytest.raises(SystemExit, match="set inference.shard_size"):
        generate_answers.run(IC.model_copy(update={"shard_size": None}), "direct", "m", bench, "exact_match",
                             tmp_path / "x.jsonl", part="1-of-2")  # fmt: skip


def test_parts_need_shards():
    from aft.pipeline.config import InferenceConfig

    raw = IC.model_dump() | {"shard_size": None, "num_jobs": 2}
    with pytest.raises(ValueError, match="num_jobs=2: the parts are made of shards; give shard_size"):
        InferenceConfig.model_validate(raw)
    assert InferenceConfig.model_validate(raw | {"shard_size": 50}).num_jobs == 2
