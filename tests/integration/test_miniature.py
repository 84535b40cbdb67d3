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

from tests.conftest import MINIATURE_JOBS, ROOT, copy_workflow, dry_run, free_port

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
    return wf


def test_report_has_every_row_with_scores_in_range(run):
    results = json.loads((run / "reports/results.json").read_text())
    assert len(results) == 6
    rows = {(r["wildcards"]["variant"], r["wildcards"]["mode"]): r for r in results}
    assert set(rows) == {(v, m) for v in ("sft", "aft_off", "aft_on") for m in ("direct", "agg")}
    for r in results:
        assert r["n"] == N_EVAL
        assert 0.0 <= r["scores"]["accuracy"] <= 100.0
        assert r["well_formed"] > 50.0  # the fine-tuned models answer in the canonical form
    table = (run / "reports/results.md").read_text()
    for label in (
        "SFT",
        "AFT-off-policy",
        "AFT-off-policy w/ Agg.",
        "AFT-on-policy",
        "AFT-on-policy w/ Agg.",
    ):
        assert f"| mini | {label} |" in table
    assert (run / "reports/results.png").stat().st_size > 10_000
    # the paper's five claims, each with its paired interval over all the questions and a verdict
    claims = [line for line in table.splitlines() if line.startswith("| mini | exact_match (EM acc. %) |")]
    assert len(claims) == 5
    for line in claims:
        cells = [c.strip() for c in line.strip("|").split("|")]
        diff, lo, hi = (
            float(x) for x in cells[3].replace("[", " ").replace("]", " ").replace(",", " ").split()
        )
        assert lo <= diff <= hi and cells[5] in ("reproduced", "contradicted", "inconclusive")
        assert cells[6] == str(N_EVAL)
    metrics = json.loads((run / "results/make_report/metrics.json").read_text())["metrics"]
    assert sum(metrics[f"claims_{v}"] for v in ("reproduced", "contradicted", "inconclusive")) == 5


def test_agg_answers_carry_every_layer(run):
    row = json.loads((run / "results/generate_answers/mini/aft_off/agg/exact_match.jsonl").open().readline())
    layers = row["trace"][0]
    assert [len(x) for x in layers] == [5, 5, 1]  # n=5, num_aggregation=2: 5 + 5 + 1
    assert row["outputs"] == [layers[-1][0]]


def test_on_policy_proposals_are_a_mix_of_right_and_wrong(run):
    m = json.loads((run / "results/build_proposals_on/mini/metrics.json").read_text())["metrics"]
    assert 0.1 < m["proposal_accuracy"] < 0.9
    assert m["queries_out"] > 0.9 * 1500


def test_training_used_assistant_only_loss_data(run):
    for variant, kinds in (("sft", {"direct"}), ("aft_off", {"direct", "aggregation"})):
        rows = [json.loads(x) for x in (run / f"results/build_dataset/mini/{variant}/train.jsonl").open()]
        assert {r["kind"] for r in rows} == kinds
        m = json.loads((run / f"results/train_model/mini/{variant}/metrics.json").read_text())["metrics"]
        assert 0.0 < m["train_loss"] < 5.0
    assert (run / "results/train_model/mini/aft_off/model/chat_template.jinja").is_file()


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
    assert {"exact_match.json", "exact_match.metrics.json"} <= files
    # training streamed its steps into the job's run (the Trainer's MLflow integration)
    losses = client.get_metric_history(train["run_id"], "loss")
    assert len(losses) == train["metrics.train_steps"] and losses[0].step == 1
    # the parent run carries the report and its numbers
    parent = parents.iloc[0]
    report = json.loads((run / "reports/results.json").read_text())
    row = next(r for r in report if (r["wildcards"]["variant"], r["wildcards"]["mode"]) == ("aft_off", "agg"))
    assert parent["metrics.mini.aft_off.agg.exact_match.accuracy"] == row["scores"]["accuracy"]
    assert parent["metrics.claims_inconclusive"] >= 0
    shown = {a.path for a in client.list_artifacts(parent["run_id"], "report")}
    assert shown == {"report/results.md", "report/results.png", "report/results.json"}


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
        assert ">workflow<" in runs_page  # the parent; its jobs are nested under it, and counted:
        assert f"<strong>{sum(JOBS.values()) + 1}</strong> matching runs" in runs_page
        job_page = rendered(
            f"{base}/#/experiments/{exp}/runs/{train['run_id']}?workflowType=machine_learning", tmp_path / "b"
        )
        assert train["tags.mlflow.runName"] in job_page and "Finished" in job_page
        assert "final_loss" in job_page and ">workflow<" in job_page  # its metrics; its parent run
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_snakemake_report_includes_table_and_plot(run):
    subprocess.run(
        ["snakemake", "--cores", "2", "--report", "report.html"], cwd=run, check=True, capture_output=True
    )
    html = (run / "report.html").read_text(errors="ignore")
    assert "results.md" in html and "results.png" in html


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
    ("train-lr", {"train": {"learning_rate": 0.001}}, {"train_model": 3, **DOWNSTREAM_OF_TRAIN}),
    (
        "dataset-direct-share",
        {"dataset": {"direct_fraction": 0.5}},
        {"build_dataset": 3, "train_model": 3, **DOWNSTREAM_OF_TRAIN},
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
