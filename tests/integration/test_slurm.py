"""The miniature through `snakemake --profile slurm` on a real SLURM cluster on this machine.

`slurm/local_cluster.sh` stands up slurmctld, two slurmd (emulated nodes node1, node2, two fake GPUs
each), slurmdbd and MariaDB from Debian packages (root only; skipped otherwise), and stops at the end
only the daemons it started. Then: the quick miniature overlay end to end through sbatch (report,
sacct records, MLflow runs written by parallel jobs), and the training rule on two nodes with DeepSpeed
ZeRO-3 (CPU offload; the fake GPUs have no CUDA behind them): its sbatch line and allocation ask for
what the config says, and the two srun tasks train as one world of 2 ranks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import MINIATURE_JOBS, ROOT, copy_workflow, job_dir, load_yaml

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "slurm" / "local_cluster.sh"
CLUSTER = {"SLURM_NODES": "2", "SLURM_FAKE_GPUS": "2", "SLURM_ACCOUNTING": "dbd"}
SITE = {"AFT_SLURM_ACCOUNT": "root", "AFT_SLURM_PARTITION": "debug", "AFT_SLURM_GPU_PARTITION": "gpu"}
QUICK = ["--configfile", "config/config.yaml", "config/experiments/miniature_quick.yaml"]
# the quick overlay spreads on-policy sampling over 2 scatter jobs; judge_answers is a cluster job here
# (exact match, no API)
JOBS = MINIATURE_JOBS | {"build_proposals_on_part": 2}
TRAIN_RESOURCES = load_yaml("config/config.yaml")["resources"]["rules"]["train_model"]
TWO_NODES = """\
train:
  num_gpus: 2                # one fake GPU on each of the two emulated nodes
  num_nodes: 2
  per_device_batch_size: 16  # 32 = 16 x 2 ranks: no gradient accumulation
  deepspeed: config/deepspeed/zero3_cpu_offload.json
  num_train_epochs: 0.5
resources:                   # both cores of each emulated node: with 1 CPU a task the two nodes (sharing
  rules:                     # 2 cores) made a 5-step job take 336 s; with 2, 40-155 s
    train_model: {cpus: 2}
"""


def _ours_running() -> bool:
    """Whether slurm/local_cluster.sh already runs daemons (then the tests leave them running)."""
    proc = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True)
    return " alive" in proc.stdout


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("a local SLURM cluster needs root and apt-get (Debian): see slurm/local_cluster.sh")
    started_here = not _ours_running()
    proc = subprocess.run(
        ["bash", str(SCRIPT), "start"], env=os.environ | CLUSTER, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    yield
    if started_here:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)


def snakemake(wf: Path, *args: str, timeout: int, **environ: str) -> subprocess.CompletedProcess:
    env = os.environ | SITE | {"MLFLOW_TRACKING_URI": f"sqlite:///{wf}/mlflow.db"} | environ
    return subprocess.run(
        ["snakemake", "--profile", "slurm", *args],
        cwd=wf,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def failure(wf: Path, proc: subprocess.CompletedProcess) -> str:
    logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((wf / "logs").rglob("*.log")))
    slurm = "\n".join(
        f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted((wf / ".snakemake/slurm_logs").rglob("*.log"))
    )
    return f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}\n{logs}\n{slurm}"


def run_id(output: str) -> str:
    """The executor plugin's run id: every sbatch job of the run is named after it."""
    line = next(x for x in output.splitlines() if "SLURM run ID:" in x)
    return line.split("SLURM run ID:", 1)[1].strip()


def sacct(*args: str) -> list[dict[str, str]]:
    fields = [
        "JobID",
        "JobName",
        "Partition",
        "State",
        "Comment",
        "NNodes",
        "NTasks",
        "NodeList",
        "AllocTRES",
        "Start",
        "End",
    ]
    out = subprocess.run(
        ["sacct", "-n", "-P", "--starttime", "now-1days", "-o", ",".join(fields), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]


def records(name: str, want: int) -> list[dict[str, str]]:
    """sacct's job records (not steps) of one run, waiting for slurmdbd to have all of them."""
    for _ in range(60):
        rows = [r for r in sacct("-X", "--name", name) if r["State"] == "COMPLETED"]
        if len(rows) >= want:
            return rows
        time.sleep(1)
    return rows


def test_a_wrong_account_stops_before_any_submission(cluster, tmp_path):
    """The executor plugin would wait forever on its own failed account check: the workflow checks first."""
    wf = copy_workflow(tmp_path)
    proc = snakemake(wf, *QUICK, timeout=120, AFT_SLURM_ACCOUNT="no-such-account")
    assert proc.returncode != 0
    assert "slurm_account = 'no-such-account': not an account of this user; expected one of" in proc.stderr
    assert sacct("-X", "--name", run_id(proc.stdout + proc.stderr)) == []  # nothing submitted
    assert not (wf / "results").exists()


@pytest.fixture(scope="module")
def quick(cluster, tmp_path_factory) -> dict:
    wf = copy_workflow(tmp_path_factory.mktemp("slurm"))
    started = time.time()
    proc = snakemake(wf, *QUICK, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"the quick miniature failed under SLURM:\n{failure(wf, proc)}")
    return {"wf": wf, "wall_s": time.time() - started, "run": run_id(proc.stdout + proc.stderr)}


def test_report_like_the_local_run(quick):
    wf = quick["wf"]
    results = json.loads((wf / "reports/miniature_quick/results.json").read_text())["results"]
    rows = {(r["wildcards"]["variant"], r["wildcards"]["mode"]): r for r in results}
    assert set(rows) == {(v, m) for v in ("sft", "aft_off", "aft_on") for m in ("direct", "agg")}
    for r in results:
        assert r["n"] == 60  # the overlay's evaluation queries
        assert 0.0 <= r["scores"]["accuracy"] <= 100.0
    table = (wf / "reports/miniature_quick/results.md").read_text()
    assert "| mini | AFT-on-policy w/ Agg. | " in table
    assert (wf / "reports/miniature_quick/results.png").stat().st_size > 10_000


def test_every_job_ran_through_sbatch(quick):
    rows = records(quick["run"], sum(JOBS.values()))
    per_rule: dict[str, int] = {}
    for r in rows:
        rule = r["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        per_rule[rule] = per_rule.get(rule, 0) + 1
    assert per_rule == JOBS
    assert {r["NodeList"] for r in rows} <= {"node1", "node2"}
    # CPU-only rules asked for no GPU and stayed off the GPU partition; the config's cpus and memory
    # reached the allocation
    assert not any("gres/gpu" in r["AllocTRES"] for r in rows)
    assert {r["Partition"] for r in rows} == {"debug"}
    train = next(r for r in rows if r["Comment"].startswith("rule_train_model"))
    for tres in (f"cpu={TRAIN_RESOURCES['cpus']}", f"mem={TRAIN_RESOURCES['mem_mb']}M"):
        assert tres in train["AllocTRES"], (tres, train["AllocTRES"])


def test_the_run_ends_with_an_efficiency_report(quick):
    """The executor plugin's report (profile: slurm-efficiency-report): every job's CPU and memory use
    against what it asked for, from sacct."""
    import csv

    (report,) = (quick["wf"] / "logs/slurm_efficiency").glob(f"efficiency_report_{quick['run']}.csv")
    rows = list(csv.DictReader(report.open()))
    assert len(rows) >= sum(JOBS.values())
    for r in rows:
        assert float(r["CPU Efficiency (%)"]) >= 0.0 and float(r["Memory Usage (%)"]) >= 0.0


def test_parallel_jobs_wrote_one_mlflow_store(quick):
    import mlflow

    rows = records(quick["run"], sum(JOBS.values()))
    spans = sorted((datetime.fromisoformat(r["Start"]), datetime.fromisoformat(r["End"])) for r in rows)
    overlaps = sum(1 for (s1, e1), (s2, _) in zip(spans, spans[1:], strict=False) if s2 < e1)
    assert overlaps >= 1  # some jobs ran at the same time on the two nodes

    mlflow.set_tracking_uri(f"sqlite:///{quick['wf']}/mlflow.db")
    df = mlflow.search_runs(experiment_names=["aft-miniature"])
    parents = df[df["tags.aft.kind"] == "workflow"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    children = df[df["tags.aft.kind"] != "workflow"]
    assert children.groupby("tags.rule").size().to_dict() == JOBS
    assert set(children["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    assert set(children["status"]) == {"FINISHED"}


def test_training_on_two_nodes_asks_for_what_the_config_says(quick):
    wf = quick["wf"]
    (wf / "two_nodes.yaml").write_text(TWO_NODES)
    folder = job_dir("train_model", *QUICK[1:], "two_nodes.yaml", root=wf, variant="sft")
    proc = snakemake(wf, f"{folder}/model", *QUICK, "two_nodes.yaml", "--verbose", timeout=1500)
    if proc.returncode != 0:
        pytest.fail(f"two-node training failed under SLURM:\n{failure(wf, proc)}")
    out = proc.stdout + proc.stderr

    # only training ran (in a new keyed folder): the train section changed, its inputs did not
    submitted = [x for x in out.splitlines() if "sbatch call:" in x]
    assert len(submitted) == 1
    call = submitted[0]
    for flag in (
        "--nodes=2",
        "--ntasks=2",
        "--gres=gpu:1",
        "--cpus-per-task=2",
        f"--mem {TRAIN_RESOURCES['mem_mb']}",
        "-A root",
        "-p gpu",  # a GPU job: the site's GPU partition
    ):
        assert flag in call, (flag, call)
    assert "--gpus" not in call and "--ntasks-per-gpu" not in call

    job = records(run_id(out), 1)[0]
    assert job["NNodes"] == "2" and job["NodeList"] == "node[1-2]" and job["Partition"] == "gpu"
    assert "gres/gpu=2" in job["AllocTRES"]
    steps = [s for s in sacct("-j", job["JobID"]) if s["JobID"] == f"{job['JobID']}.0"]
    assert steps and (steps[0]["NNodes"], steps[0]["NTasks"]) == ("2", "2")  # the rule's srun step

    m = json.loads((wf / folder / "metrics.json").read_text())["metrics"]
    assert m["train_world_size"] == 2  # one rank per node, one process group
    assert m["train_loss"] > 0
