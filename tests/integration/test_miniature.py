"""The miniature end to end: real Snakemake, vLLM (CPU), TRL and MLflow, in a fresh copy of the workflow.

One full run (module fixture), then: the report's values, the MLflow runs and artifacts, the no-op
rerun, and the exact set of jobs each config edit would rerun.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import MINIATURE_JOBS, ROOT, copy_workflow, dry_run, free_port, job_dir

pytestmark = pytest.mark.integration

JOBS = MINIATURE_JOBS
N_EVAL = yaml.safe_load((ROOT / "config/config.yaml").read_text())["data"]["miniature"]["n_eval"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    wf = copy_workflow(tmp_path_factory.mktemp("miniature"))
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{wf}/mlflow.db"}
    proc = subprocess.run(
        ["snakemake", "--cores", "2"], cwd=wf, env=env, capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((wf / "logs").rglob("*.log")))
        pytest.fail(f"miniature run failed:\n{proc.stderr[-4000:]}\n{logs}")
    (wf / "console.txt").write_text(proc.stdout + proc.stderr)  # what the person who ran it saw
    return wf


REPORT = "reports/miniature"


def folder(run: Path, rule: str, **where: str) -> Path:
    """A job's keyed folder in the run (aft.pipeline.jobs)."""
    return run / job_dir(rule, root=run, **where)


def test_the_console_ends_with_the_report_and_its_claims(run):
    console = (run / "console.txt").read_text()
    assert "Report: reports/miniature/results.md" in console
    claims = json.loads((run / REPORT / "results.json").read_text())["claims"]
    counts = {
        v: sum(c["verdict"] == v for c in claims) for v in ("reproduced", "contradicted", "inconclusive")
    }
    assert "Claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()) in console
    # the jobs' logs: progress as lines, never a bar redrawn with carriage returns
    logs = list((run / "logs").rglob("*.log"))
    assert logs and not [p for p in logs if "\r" in p.read_text()]
    train = next((run / "logs/train_model").rglob("*.log")).read_text()
    assert "step 1/" in train and "tokens/s, ETA" in train and "{'loss'" not in train


def test_report_has_every_row_with_scores_in_range(run):
    report = json.loads((run / REPORT / "results.json").read_text())
    assert report["experiment"]["name"] == "miniature" and report["experiment"]["seeds"] == [0]
    results = report["results"]
    assert len(results) == 6
    rows = {(r["wildcards"]["variant"], r["wildcards"]["mode"]): r for r in results}
    assert set(rows) == {(v, m) for v in ("sft", "aft_off", "aft_on") for m in ("direct", "agg")}
    for r in results:
        assert r["n"] == N_EVAL
        assert 0.0 <= r["scores"]["accuracy"] <= 100.0
        assert r["well_formed"] > 50.0  # the fine-tuned models answer in the canonical form
    table = (run / REPORT / "results.md").read_text()
    for label in (
        "SFT",
        "AFT-off-policy",
        "AFT-off-policy w/ Agg.",
        "AFT-on-policy",
        "AFT-on-policy w/ Agg.",
    ):
        assert f"| mini | {label} | " in table
    assert (run / REPORT / "results.png").stat().st_size > 10_000
    assert (run / REPORT / "loss_curves.png").stat().st_size > 10_000
    assert "<table>" in (run / REPORT / "results.html").read_text()
    # the paper's five claims, each with its paired interval over all the questions and a verdict
    paper_claims = table.split("## The paper's claims")[1].split("\n## ")[0]
    claims = [
        line for line in paper_claims.splitlines() if line.startswith("| mini | exact_match (EM acc. %) |")
    ]
    assert len(claims) == 5
    for line in claims:
        cells = [c.strip() for c in line.strip("|").split("|")]
        diff, lo, hi = (
            float(x) for x in cells[3].replace("[", " ").replace("]", " ").replace(",", " ").split()
        )
        assert lo <= diff <= hi and cells[5] in ("reproduced", "contradicted", "inconclusive")
        assert cells[6] == "1" and cells[7] == str(N_EVAL)  # one seed, every question
    metrics = json.loads((run / "results/make_report/miniature/metrics.json").read_text())["metrics"]
    # the paper's five, and §6.1's target-loss claim for the base and each trained model (no scaling claim:
    # the default grid has one aggregation setting and no vote)
    assert sum(metrics[f"claims_{v}"] for v in ("reproduced", "contradicted", "inconclusive")) == 5 + 4
    assert (
        "## Aggregation learning (§6.1)" in table
        and (run / REPORT / "target_loss.png").stat().st_size > 10_000
    )
    # the evidence beside the scores: every score's interval, categories, samples, costs, provenance
    assert "| mini | SFT | " in table and " [" in table.split("| mini | SFT | ")[1].split("\n")[0]
    for section in ("## Per category", "## Samples: AFT-off-policy w/ Agg.", "## Costs", "## Provenance"):
        assert section in table
    costs = table.split("## Costs")[1]
    assert "| train_model | 3 |" in costs and "| generate_answers | 6 |" in costs
    assert "| config hash | `" in table and "| commit | `" in table


def test_agg_answers_carry_every_layer(run):
    answers = folder(run, "generate_answers", variant="aft_off", mode="agg") / "answers.jsonl"
    row = json.loads(answers.open().readline())
    layers = row["trace"][0]
    assert [len(x) for x in layers] == [5, 5, 1]  # n=5, num_aggregation=2: 5 + 5 + 1
    assert row["outputs"] == [layers[-1][0]]


def test_on_policy_proposals_are_a_mix_of_right_and_wrong(run):
    m = json.loads((folder(run, "build_proposals_on") / "metrics.json").read_text())["metrics"]
    assert 0.1 < m["proposal_accuracy"] < 0.9
    assert m["queries_out"] > 0.9 * 1500


def test_training_used_assistant_only_loss_data(run):
    for variant, kinds in (("sft", {"direct"}), ("aft_off", {"direct", "aggregation"})):
        rows = [json.loads(x) for x in (folder(run, "build_dataset", variant=variant) / "train.jsonl").open()]
        assert {r["kind"] for r in rows} == kinds
        trained = json.loads((folder(run, "train_model", variant=variant) / "metrics.json").read_text())
        assert 0.0 < trained["metrics"]["train_loss"] < 5.0
        # the loss curve the report draws, and the fingerprint of the model folder
        assert len(trained["history"]) >= 10 and "loss" in trained["history"][-1]
        (model,) = [files for path, files in trained["outputs"].items() if path.endswith("/model")]
        assert len(model["model.safetensors"]) == 64
    assert (folder(run, "train_model", variant="aft_off") / "model/chat_template.jinja").is_file()


def test_mlflow_has_one_parent_and_a_nested_run_per_job(run):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{run}/mlflow.db")
    df = mlflow.search_runs(experiment_names=["aft-miniature"])
    parents = df[df["tags.aft.kind"] == "workflow"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    children = df[df["tags.aft.kind"] != "workflow"]
    assert len(children) == sum(JOBS.values())
    assert set(children["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    assert children.groupby("tags.rule").size().to_dict() == JOBS
    assert set(children["status"]) == {"FINISHED"} and set(children["tags.aft.attempts"]) == {"1"}
    # each job's run opens when the job starts (after its imports and config check, a few seconds) and
    # closes when it ends: it lasts as long as the job's work (a 2-minute training job is not 0.6 s)
    lasted = (children["end_time"] - children["start_time"]).dt.total_seconds()
    assert (lasted >= children["metrics.wall_time_s"] - 5).all()
    judge = children[children["tags.rule"] == "judge_answers"].iloc[0]
    assert 0 <= judge["metrics.accuracy"] <= 100
    assert judge["tags.git_sha"] and judge["tags.config_hash.judge"]
    train = children[children["tags.rule"] == "train_model"].iloc[0]
    lr = yaml.safe_load((run / "config/config.yaml").read_text())["train"]["learning_rate"]
    assert float(train["params.train.learning_rate"]) == lr  # the stage's config section, as params
    assert len(train["tags.artifact.model.sha256"]) == 64  # model folder logged as path + checksum
    client = mlflow.MlflowClient()
    files = {a.path for a in client.list_artifacts(judge["run_id"])}
    assert {"result.json", "judgments.jsonl", "metrics.json"} <= files
    # training streamed its steps into the job's run (the Trainer's MLflow integration)
    losses = client.get_metric_history(train["run_id"], "loss")
    assert len(losses) == train["metrics.train_steps"] and losses[0].step == 1
    # the parent run carries the report and its numbers
    parent = parents.iloc[0]
    report = json.loads((run / REPORT / "results.json").read_text())["results"]
    row = next(r for r in report if (r["wildcards"]["variant"], r["wildcards"]["mode"]) == ("aft_off", "agg"))
    assert parent["metrics.mini.aft_off.agg.exact_match.accuracy"] == row["scores"]["accuracy"]
    assert parent["metrics.claims_inconclusive"] >= 0
    shown = {a.path for a in client.list_artifacts(parent["run_id"], "report")}
    assert shown == {
        f"report/{name}"
        for name in (
            "results.md",
            "results.html",
            "results.png",
            "loss_curves.png",
            "results.json",
            "artifacts.json",
        )
    }
    assert parent["tags.experiment"] == "miniature" and parent["tags.mlflow.runName"] == "workflow miniature"


CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it)


def rendered(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, in headless Chromium (flags: the machine has no internet)."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    cmd = [CHROMIUM, *flags, f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def test_the_mlflow_ui_shows_the_job_runs_in_a_browser(run, tmp_path):
    """MLflow 3's UI opens on its GenAI view; the runs are under Model training
    (`?workflowType=machine_learning`), the jobs nested under the workflow run."""
    import time
    import urllib.request

    import mlflow

    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium (.ci/run does)")
    mlflow.set_tracking_uri(f"sqlite:///{run}/mlflow.db")
    exp = mlflow.get_experiment_by_name("aft-miniature").experiment_id
    train = mlflow.search_runs([exp], filter_string="tags.rule = 'train_model'").iloc[0]
    port = free_port()
    cmd = ["mlflow", "server", "--backend-store-uri", f"sqlite:///{run}/mlflow.db", "--host", "127.0.0.1"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = subprocess.Popen([*cmd, "--port", str(port)], **quiet)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(1)
        runs_page = rendered(f"{base}/#/experiments/{exp}/runs?workflowType=machine_learning", tmp_path / "a")
        assert ">workflow miniature<" in runs_page  # the parent; its jobs are nested under it, and counted:
        assert f"<strong>{sum(JOBS.values()) + 1}</strong> matching runs" in runs_page
        job_page = rendered(
            f"{base}/#/experiments/{exp}/runs/{train['run_id']}?workflowType=machine_learning", tmp_path / "b"
        )
        assert train["tags.mlflow.runName"] in job_page and "Finished" in job_page
        assert "final_loss" in job_page and ">workflow miniature<" in job_page  # its metrics; its parent run
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_snakemake_report_includes_table_and_plot(run):
    subprocess.run(
        ["snakemake", "--cores", "2", "--report", "report.html"], cwd=run, check=True, capture_output=True
    )
    html = (run / "report.html").read_text(errors="ignore")
    assert "results.html" in html and "results.png" in html and "loss_curves.png" in html
    assert "Branches of the graph" in html  # the workflow description


def test_noop_rerun_runs_nothing(run):
    assert dry_run(run) == {}


def _patched(run: Path, name: str, patch: dict) -> list[str]:
    path = run / f"{name}.yaml"
    path.write_text(yaml.safe_dump(patch))
    return ["--configfile", "config/config.yaml", path.name]


DOWNSTREAM_OF_TRAIN = {"generate_answers": 6, "judge_answers": 6, "make_report": 1, "all": 1}
RERUNS = [
    ("inference-n", {"inference": {"n": 3}}, DOWNSTREAM_OF_TRAIN),
    ("judge-model", {"judge": {"model": "another-judge"}}, {"judge_answers": 6, "make_report": 1, "all": 1}),
    ("report", {"report": {"paper_table": False}}, {"make_report": 1, "all": 1}),
    (
        "train-lr",
        {"train": {"learning_rate": 0.001}},
        {"train_model": 3, "measure_target_loss": 1, **DOWNSTREAM_OF_TRAIN},
    ),
    (
        "dataset-direct-share",
        {"dataset": {"direct_fraction": 0.5}},
        {"build_dataset": 3, "train_model": 3, "measure_target_loss": 1, **DOWNSTREAM_OF_TRAIN},
    ),
    ("tracking-only", {"tracking": {"experiment": "renamed"}}, {}),
    (
        "on-policy-temperature",
        {"on_policy": {"temperature": 0.9}},
        {
            "build_proposals_on_part": 1,
            "build_proposals_on": 1,
            "build_targets": 1,
            "build_dataset": 1,
            "train_model": 1,
            "measure_target_loss": 1,
            "generate_answers": 2,
            "judge_answers": 2,
            "make_report": 1,
            "all": 1,
        },
    ),
]


@pytest.mark.parametrize(("case", "patch", "expected"), RERUNS, ids=[r[0] for r in RERUNS])
def test_config_edit_reruns_exactly_what_it_touches(run, case, patch, expected):
    assert dry_run(run, *_patched(run, case, patch)) == expected


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_experiments_coexist_and_share_what_they_have_in_common(run):
    """The default run, then an overlay that changes inference only, then the default again: the
    overlay trains nothing and writes its own report, and going back is a no-op."""
    overlay = {"experiment": "three_proposals", "description": "n = 3", "inference": {"n": 3}}
    args = _patched(run, "three_proposals", overlay)
    assert dry_run(run, *args) == {"generate_answers": 6, "judge_answers": 6, "make_report": 1, "all": 1}
    default_report = _sha(run / REPORT / "results.md")
    proc = subprocess.run(["snakemake", "--cores", "2", *args], cwd=run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule train_model" not in proc.stderr + proc.stdout
    assert "n = 3" in (run / "reports/three_proposals/results.md").read_text()
    assert _sha(run / REPORT / "results.md") == default_report  # the default's report is untouched
    assert dry_run(run) == {}  # back to the default: every artifact is still where it was
    # the two experiments side by side: they part at inference, and each has its claims
    out = subprocess.run(
        ["python", "-m", "aft.tools.compare", f"{REPORT}", "reports/three_proposals", "--out", "cmp.md"],
        cwd=run,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1, out.stderr
    assert "First difference along the DAG: generate_answers[" in out.stdout
    assert "config sections inference differ" in out.stdout
    assert out.stdout.count("| mini | exact_match | AFT-off-policy > SFT |") == 1
    assert (run / "cmp.md").read_text() == out.stdout


def test_compare_names_the_first_job_two_runs_of_one_config_disagree_on(run, tmp_path):
    """Two working trees of one config, one of whose base models was built with other CPU kernels
    (torch's ATEN_CPU_CAPABILITY): the comparison names build_base, where their bytes part."""
    import shutil

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    other = "avx2" if "avx512f" in flags else "default"  # kernels this CPU would not pick itself
    copy = tmp_path / "other"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("mlflow.db", ".snakemake"), symlinks=True)
    env = os.environ | {"ATEN_CPU_CAPABILITY": other, "MLFLOW_TRACKING_URI": f"sqlite:///{copy}/mlflow.db"}
    cmd = ["snakemake", "--cores", "2", "--forcerun", "build_base", "--until", "build_base"]
    proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = subprocess.run(
        ["python", "-m", "aft.tools.compare", str(run), str(copy)], capture_output=True, text=True, cwd=run
    )
    assert out.returncode == 1, out.stderr
    assert "First difference along the DAG: build_base[base=mini]: bytes: same job (key" in out.stdout
    assert "model/model.safetensors" in out.stdout


STRATEGIES = {
    "experiment": "strategies",
    "description": "named strategies on AFT-on-policy",
    "grid": {"modes": ["direct", "agg", "agg-w2-d1", "agg-w2-d2", "vote-4", "bon-4"]},
    "strategies": {
        "agg-w2-d1": {"kind": "propose_aggregate", "n": 2, "num_aggregation": 1, "variants": ["aft_on"]},
        "agg-w2-d2": {
            "kind": "propose_aggregate",
            "n": 2,
            "num_aggregation": 2,
            "schedule": "barrier_free",
            "variants": ["aft_on"],
        },
        "vote-4": {"kind": "majority_vote", "n": 4, "variants": ["aft_on"]},
        "bon-4": {"kind": "best_of_n", "n": 4, "reward_model": "mini-rm", "variants": ["aft_on"]},
    },
    # the scaling overlay's reward model, trained here with TRL's RewardTrainer
    "reward_models": yaml.safe_load((ROOT / "config/experiments/scaling.yaml").read_text())["reward_models"],
}


def test_named_strategies_add_their_jobs_curves_and_scaling_claims(run):
    """Four named strategies on one variant: only their answer and judge jobs run, and best-of-N's reward
    model is trained; the report sets them against their cost, checks width, depth, the matched majority
    vote and best-of-N, and gives the reward model's held-out accuracy."""
    args = _patched(run, "strategies", STRATEGIES)
    assert dry_run(run, *args) == {
        "train_reward_model": 1,
        "generate_answers": 4,
        "judge_answers": 4,
        "make_report": 1,
        "all": 1,
    }
    proc = subprocess.run(["snakemake", "--cores", "2", *args], cwd=run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    def answers(mode: str) -> Path:
        return (
            run
            / job_dir("generate_answers", *args[1:], root=run, variant="aft_on", mode=mode)
            / "answers.jsonl"
        )

    vote = answers("vote-4")
    rows = [json.loads(line) for line in vote.open()]
    assert all(len(r["trace"][0][0]) == 4 and r["outputs"][0] in r["trace"][0][0] for r in rows)
    assert all(r["usage"]["requests"] == 1 and r["usage"]["generated_tokens"] > 0 for r in rows)
    assert [len(x) for x in json.loads(answers("agg-w2-d2").open().readline())["trace"][0]] == [2, 2, 1]
    best = [json.loads(line) for line in answers("bon-4").open()]
    for r in best:
        (samples,), scores = r["trace"][0], r["reward_scores"][0]  # turn 1: its samples, their scores
        assert len(samples) == 4 and r["outputs"][0] == samples[scores.index(max(scores))]
        assert r["usage"]["reward_tokens"] > 0 and r["usage"]["requests"] == 1
    report = (run / "reports/strategies/results.md").read_text()
    section = report.split("## Inference strategies: score against compute")[1].split("## Per category")[0]
    for mode, shape in (
        ("agg-w2-d1", "propose_aggregate | 2 | 1 | 3 |"),
        ("vote-4", "majority_vote | 4 | 0 | 4 |"),
    ):
        assert f"| AFT-on-policy | {mode} | {shape}" in section
    claims = [
        line for line in section.splitlines() if line.startswith("| mini | exact_match") and "w/ Agg." in line
    ]
    assert len(claims) == 4 and "quality grows with width (agg > agg-w2-d2; depth 2)" in claims[0]
    assert "quality grows with depth (agg-w2-d2 > agg-w2-d1; n 2)" in claims[1]
    assert "majority vote at matched tokens (agg" in claims[2]
    assert "best-of-N at matched tokens (agg" in claims[3]
    assert "| mini-rm | trained here (TRL RewardTrainer) |" in section
    assert all(c.split("|")[6].strip() in ("reproduced", "contradicted", "inconclusive") for c in claims)
    assert (run / "reports/strategies/scaling.png").stat().st_size > 10_000


def test_barrier_free_answers_equal_the_layered_ones_on_vllm(run):
    """The same questions through the real engine, layer by layer and barrier-free, seeded per question:
    the same samples in every layer (so the schedule changes the wall time, never an answer)."""
    from aft.gen.engine import VLLMEngine
    from aft.method.aggregate import propose_and_aggregate
    from aft.method.prompts import load_template
    from aft.pipeline.config import load_config
    from aft.pipeline.configfile import read_config_file
    from aft.stages.generate_answers import settings

    ic = load_config(read_config_file(run / "config/config.yaml")).inference
    bench = folder(run, "prepare_bench", bench="exact_match") / "bench.jsonl"
    convs = [[{"role": "user", "content": json.loads(line)["turns"][0]}] for line in bench.open()][:64]
    model = folder(run, "train_model", variant="aft_on") / "model"
    engine = VLLMEngine(str(model), ic.engine, seed=ic.seed, progress=False, per_request_seeds=True)
    s, template = settings(ic), load_template(str(run / ic.template_file))
    layered = propose_and_aggregate(engine, convs, s, template, seed=11)
    barrier_free = propose_and_aggregate(engine, convs, s, template, seed=11, barrier_free=True)
    assert barrier_free[:2] == layered[:2]
    assert [u.generated_tokens for u in barrier_free[2]] == [u.generated_tokens for u in layered[2]]
