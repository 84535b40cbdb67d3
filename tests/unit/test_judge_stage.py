"""The `judge_answers` stage CLI: exact match (miniature) and MT-Bench through a scripted endpoint
(one 500 first): result labelled with its judge, judgments file, cost in metrics.json, a rerun served
from the cache, and a canary API key found nowhere in what the stage wrote or logged."""

from __future__ import annotations

import json
import logging

from aft.pipeline.io import read_json, read_jsonl, write_jsonl
from aft.stages import judge_answers
from tests.judge_fakes import FAKE_JUDGE_PROMPTS, FakeJudgeServer, chat_reply

CANARY = "sk-canary-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
QUESTIONS = [
    {"id": "81", "category": "writing", "turns": ["w1", "w2"], "answer": None},
    {"id": "111", "category": "math", "turns": ["m1", "m2"], "answer": None},
]
ANSWERS = [{"id": "81", "outputs": ["A1", "A2"]}, {"id": "111", "outputs": ["B1", "B2"]}]
REFS = [{"question_id": 111, "choices": [{"index": 0, "turns": ["R1", "R2"]}]}]


def judge_cfg(base_url: str) -> str:
    endpoint = {
        "base_url": base_url,
        "api_key_env": "AFT_CANARY_KEY",
        "concurrency": 2,
        "timeout_s": 5,
        "max_retries": 2,
        "backoff_initial_s": 0,
        "backoff_max_s": 0,
    }
    mt = {"model": None, "temperature": 0.0, "max_tokens": 64, "max_parse_retries": 1}
    judge = {"model": "fake-judge", "endpoint": endpoint, "cache_dir": "results/judge_cache", "mt_bench": mt}
    return json.dumps({"judge": judge | {"alpaca_eval2": None}})


def run_stage(tmp_path, cfg: str, bench: str, *extra: str) -> dict:
    out = tmp_path / "results/judge_answers" / f"{bench}.json"
    judge_answers.main(
        [
            "--config",
            cfg,
            "--bench-name",
            bench,
            "--answers",
            str(tmp_path / "answers.jsonl"),
            "--bench",
            str(tmp_path / "bench.jsonl"),
            *extra,
            "--out",
            str(out),
            "--judgments",
            str(out.with_suffix(".judgments.jsonl")),
            "--metrics",
            str(out.with_suffix(".metrics.json")),
            "--wildcards",
            f"base=b,variant=aft_off,mode=agg,bench={bench}",
        ]
    )
    return {"result": read_json(out), "metrics": read_json(out.with_suffix(".metrics.json"))["metrics"]}


def test_mt_bench_stage_labels_counts_caches_and_never_leaks_the_key(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AFT_CANARY_KEY", CANARY)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    caplog.set_level(logging.DEBUG)
    write_jsonl(tmp_path / "bench.jsonl", QUESTIONS)
    write_jsonl(tmp_path / "answers.jsonl", ANSWERS)
    write_jsonl(tmp_path / "prompts.jsonl", FAKE_JUDGE_PROMPTS)
    write_jsonl(tmp_path / "refs.jsonl", REFS)

    def script(k, body, headers):
        if k == 0:
            return 500, f"overloaded ({headers.get('Authorization')})", {}, 0.0
        return chat_reply("Rating: [[8]]" if "w" in body["messages"][1]["content"] else "Rating: [[4]]")

    files = ("--reference", str(tmp_path / "refs.jsonl"), "--judge-prompts", str(tmp_path / "prompts.jsonl"))
    with FakeJudgeServer(script) as srv:
        first = run_stage(tmp_path, judge_cfg(srv.base_url), "mt_bench", *files)
        again = run_stage(tmp_path, judge_cfg(srv.base_url), "mt_bench", *files)
    r = first["result"]
    host = srv.base_url.split("/")[2]
    assert (r["judge"], r["judge_model"], r["paper_judge"]) == (f"fake-judge ({host})", "fake-judge", False)
    assert r["scores"] == {"turn1": 6.0, "turn2": 6.0, "avg": 6.0}
    assert r["per_category"] == {
        "math": {"turn1": 4.0, "turn2": 4.0, "avg": 4.0},
        "writing": {"turn1": 8.0, "turn2": 8.0, "avg": 8.0},
    }
    assert (r["n"], r["n_judgments"], r["n_unparsable"]) == (2, 4, 0)
    assert srv.requests[1]["temperature"] == 0.0 and srv.requests[1]["max_tokens"] == 64
    m = first["metrics"]
    assert (m["judge_calls"], m["judge_retries"], m["judge_errors_http_500"], m["judge_cache_hits"]) == (
        4,
        1,
        1,
        0,
    )
    assert (m["judge_prompt_tokens"], m["judge_completion_tokens"]) == (40, 8)
    assert (m["avg"], m["writing_turn1"], m["math_avg"]) == (6.0, 8.0, 4.0)
    assert (again["metrics"]["judge_calls"], again["metrics"]["judge_cache_hits"]) == (0, 4)
    assert again["result"]["scores"] == r["scores"]
    rows = read_jsonl(tmp_path / "results/judge_answers/mt_bench.judgments.jsonl")
    assert [(j["id"], j["turn"], j["judge_prompt"], j["score"]) for j in rows] == [
        ("81", 1, "single-v1", 8.0),
        ("81", 2, "single-v1-multi-turn", 8.0),
        ("111", 1, "single-math-v1", 4.0),
        ("111", 2, "single-math-v1-multi-turn", 4.0),
    ]
    assert srv.headers[0]["Authorization"] == f"Bearer {CANARY}"
    written = [f.read_text() for f in tmp_path.rglob("*") if f.is_file()]
    assert written and not any(CANARY in text for text in written)
    out = capsys.readouterr()
    assert CANARY not in caplog.text + out.out + out.err


def test_exact_match_stage_still_judges_the_miniature(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    write_jsonl(tmp_path / "bench.jsonl", [{"id": "a", "answer": "5", "category": "add", "turns": ["q"]}])
    write_jsonl(tmp_path / "answers.jsonl", [{"id": "a", "outputs": ["The answer is 5."]}])
    cfg = json.dumps({"judge": {"model": None, "endpoint": None, "cache_dir": "results/judge_cache"}})
    out = run_stage(tmp_path, cfg, "exact_match")
    assert out["result"]["scores"] == {"accuracy": 100.0} and out["result"]["judge"] == "exact_match"
    assert out["metrics"]["accuracy"] == 100.0 and out["metrics"]["add_accuracy"] == 100.0
    rows = read_jsonl(tmp_path / "results/judge_answers/exact_match.judgments.jsonl")
    assert rows == [{"id": "a", "category": "add", "expected": "5", "got": "5", "correct": True}]
