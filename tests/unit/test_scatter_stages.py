"""The sharded stages spread over N scatter jobs (`--part I-of-N`, each writing its part file) and a
gather (`--parts`): the output is byte for byte that of one job, and the metrics the same, with fake
engines (no vLLM)."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aft.gen import shards
from aft.method.interface import EngineStats
from aft.pipeline.config import EndpointConfig, load_config
from aft.stages import build_proposals_on, build_targets
from tests.conftest import ROOT, load_yaml

MINI = load_config(load_yaml("config/config.yaml"))
N_ITEMS, SHARD = 11, 2  # 6 shards, the last one short


@dataclass
class FakeEngine:
    """A stand-in for both engines: answers depend on the prompt and its seed only, as vLLM's do."""

    stats: EngineStats = field(default_factory=EngineStats)

    def _answer(self, text: str, seed, k: int = 0) -> str:
        self.stats.requests += 1
        self.stats.prompt_tokens += len(text.split())
        self.stats.generated_tokens += 3
        if "q7" in text[-12:]:
            return ""  # an empty answer: q7 is dropped, and counted
        return f"answer {sum(map(ord, text[-12:])) * 31 + (seed or 0) % 997} variant {k}"

    def prompt_lengths(self, prompts):
        return [len(p.split()) for p in prompts]

    def complete(self, prompts, sampling, seeds=None):
        seeds = seeds or [None] * len(prompts)
        return [[self._answer(p, s, k) for k in range(sampling.n)] for p, s in zip(prompts, seeds)]

    def chat(self, conversations, sampling, seeds=None):
        seeds = seeds or [None] * len(conversations)
        return [[self._answer(c[-1]["content"], s)] for c, s in zip(conversations, seeds)]


@pytest.fixture(autouse=True)
def fake_engines(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(build_proposals_on, "VLLMEngine", lambda *a, **k: FakeEngine())
    monkeypatch.setattr(build_targets, "teacher_engine", lambda tc, folder: FakeEngine())


def queries() -> list[dict]:
    return [{"id": f"q{i}", "messages": [{"role": "user", "content": f"query q{i}"}]} for i in range(N_ITEMS)]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def proposals_run(tmp, num_jobs: int) -> list[str]:
    """The argv of a build_proposals_on run (without --metrics and --part/--parts) and its out file."""
    on = MINI.on_policy.model_copy(
        update={
            "icl_prompt_file": str(ROOT / MINI.on_policy.icl_prompt_file),
            "shard_size": SHARD,
            "num_jobs": num_jobs,
            "seed_per_query": True,
        }
    )
    cfg = {
        "proposals": MINI.proposals.model_dump(mode="json"),
        "on_policy": on.model_dump(mode="json"),
        "base": MINI.bases["mini"].model_dump(mode="json"),
    }
    qs = write_jsonl(tmp / "queries.jsonl", queries())
    return [
        "--config",
        json.dumps(cfg),
        "--queries",
        qs,
        "--base-model",
        "m",
        "--out",
        str(tmp / "out.jsonl"),
    ]


def targets_run(tmp, num_jobs: int) -> list[str]:
    tc = MINI.targets.model_copy(
        update={
            "teacher": "model",
            "model": "teacher",
            "endpoint": EndpointConfig(
                base_url="http://localhost:1/v1",
                api_key_env="TEACHER_KEY",
                concurrency=2,
                timeout_s=5,
                max_retries=0,
                backoff_initial_s=0,
                backoff_max_s=0,
            ),
            "template_file": str(ROOT / MINI.targets.template_file),
            "shard_size": SHARD,
            "num_jobs": num_jobs,
        }
    )
    records = [q | {"proposals": [f"p{i}a", f"p{i}b"]} for i, q in enumerate(queries())]
    return [
        "--config",
        json.dumps({"targets": tc.model_dump(mode="json")}),
        "--proposals",
        write_jsonl(tmp / "proposals.jsonl", records),
        "--queries",
        write_jsonl(tmp / "queries.jsonl", queries()),
        "--out",
        str(tmp / "out.jsonl"),
    ]


STAGES = {
    "build_proposals_on": (build_proposals_on, proposals_run),
    "build_targets": (build_targets, targets_run),
}


def metrics_of(path) -> dict:
    m = json.loads(path.read_text())["metrics"]
    m.pop("wall_time_s")
    return m


@pytest.mark.parametrize("num_jobs", [1, 2, 4, 8])
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_scatter_then_gather_writes_what_one_job_writes(tmp_path, stage, num_jobs):
    module, argv_of = STAGES[stage]
    (tmp_path / "one").mkdir()
    module.main([*argv_of(tmp_path / "one", 1), "--metrics", str(tmp_path / "one/metrics.json")])
    one = (tmp_path / "one/out.jsonl").read_bytes()
    assert not shards.work_dir(tmp_path / "one/out.jsonl").exists()  # removed once the output is written

    many = tmp_path / "many"
    many.mkdir()
    argv = argv_of(many, num_jobs)
    parts = []
    for job in range(num_jobs):
        part = many / f"{job + 1}-of-{num_jobs}" / "part.json"
        out = [a if a != str(many / "out.jsonl") else str(part) for a in argv]
        module.main([*out, "--part", f"{job + 1}-of-{num_jobs}", "--metrics", str(part.with_name("m.json"))])
        assert part.is_file() and not shards.work_dir(part).exists()  # its shards are in the part file
        parts.append(str(part))
    assert not (many / "out.jsonl").exists()  # a scatter job writes only its part and its metrics
    held = [len(json.loads(Path(p).read_text())["shards"]) for p in parts]
    assert sum(held) == 6 and max(held) - min(held) <= 1  # 6 shards, spread evenly
    first = metrics_of(Path(parts[0]).with_name("m.json"))
    assert (first["job"], first["num_jobs"], first["shards_total"]) == (0, num_jobs, held[0])

    module.main([*argv, "--parts", *parts, "--metrics", str(many / "metrics.json")])
    assert (many / "out.jsonl").read_bytes() == one and len(one.splitlines()) == N_ITEMS - 1  # q7 dropped
    assert metrics_of(many / "metrics.json") == metrics_of(tmp_path / "one/metrics.json")
    assert metrics_of(many / "metrics.json")["tokens_out"] > 0


def test_gather_without_a_shard_fails_and_writes_nothing(tmp_path):
    argv = targets_run(tmp_path, 3)
    parts = []
    for job in range(3):
        part = tmp_path / f"{job + 1}-of-3" / "part.json"
        out = [a if a != str(tmp_path / "out.jsonl") else str(part) for a in argv]
        build_targets.main([*out, "--part", f"{job + 1}-of-3", "--metrics", str(part.with_name("m.json"))])
        parts.append(str(part))
    body = json.loads(Path(parts[2]).read_text())
    body["shards"] = [s for s in body["shards"] if s["index"] != 5]  # job 3's shard 5 lost
    Path(parts[2]).write_text(json.dumps(body))
    with pytest.raises(ValueError, match=r"absent or made from other inputs in 3 part file\(s\): \[5\]"):
        build_targets.main([*argv, "--parts", *parts, "--metrics", str(tmp_path / "metrics.json")])
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "metrics.json").exists()
