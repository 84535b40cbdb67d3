"""Each job's MLflow run is opened when the job starts and closed with its outcome (a real sqlite store):
RUNNING while it works, FINISHED with metrics, FAILED or KILLED with the error, and a job started again
in the same invocation reopens its run instead of adding a second one."""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from aft.pipeline.stage import Outcome, run_stage
from aft.pipeline.tracking import PARENT_ENV, start_workflow_run


class Toy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A tracking store and an open workflow run, found through the environment as jobs find them."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "jobs")
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.chdir(tmp_path)  # the working directory the job runs in
    monkeypatch.setenv(PARENT_ENV, start_workflow_run(uri, "jobs", {}, workdir=str(tmp_path)))
    client = MlflowClient(uri)
    yield client, client.get_experiment_by_name("jobs").experiment_id
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def toy(tmp_path, body) -> None:
    argv = ["--config", json.dumps({"toy": {"size": 2}}), "--metrics", str(tmp_path / "m.json")]
    argv += ["--wildcards", "base=mini,variant=sft"]
    run_stage("toy", "Stage `toy`.", argv, lambda p: None, {"toy": Toy}, body)


def job_runs(client, exp_id) -> list:
    parent = os.environ[PARENT_ENV]
    return client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")


def test_the_run_is_open_while_the_job_works_and_finished_after(store, tmp_path):
    client, exp_id = store
    seen = []

    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        (live,) = job_runs(client, exp_id)
        seen.append((live.info.status, live.data.params.get("toy.size"), live.info.run_name))
        return Outcome({"items": 6})

    toy(tmp_path, body)
    assert seen == [("RUNNING", "2", "toy/mini/sft")]
    (run,) = job_runs(client, exp_id)
    assert run.info.status == "FINISHED" and run.data.metrics["items"] == 6
    assert run.data.tags["aft.attempts"] == "1" and run.data.tags["wildcard.base"] == "mini"
    assert run.info.end_time - run.info.start_time >= 0


def test_a_failed_job_leaves_a_failed_run_and_its_retry_reopens_it(store, tmp_path):
    client, exp_id = store

    def fails(a, cfg):
        raise RuntimeError("engine died while serving http://u:sk-secret123456@host/v1")

    with pytest.raises(RuntimeError):
        toy(tmp_path, fails)
    (run,) = job_runs(client, exp_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["aft.error"] == (
        "RuntimeError: engine died while serving http<hidden: looks like a secret>host/v1"
    )
    toy(tmp_path, lambda a, cfg: Outcome({"items": 6}))  # Snakemake's retry in the same invocation
    (again,) = job_runs(client, exp_id)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert again.data.tags["aft.attempts"] == "2" and again.data.tags["aft.error"] == ""


def test_the_next_invocation_reopens_an_unfinished_jobs_run_and_a_finished_job_gets_a_new_one(
    store, tmp_path, monkeypatch
):
    client, exp_id = store
    first = os.environ[PARENT_ENV]

    def fails(a, cfg):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        toy(tmp_path, fails)
    (failed,) = job_runs(client, exp_id)
    uri = os.environ["MLFLOW_TRACKING_URI"]
    second = start_workflow_run(uri, "jobs", {}, workdir=str(tmp_path))  # closes `first` as KILLED
    monkeypatch.setenv(PARENT_ENV, second)
    toy(tmp_path, lambda a, cfg: Outcome({"items": 6}))
    (again,) = job_runs(client, exp_id)  # under the second invocation now
    assert again.info.run_id == failed.info.run_id and again.info.status == "FINISHED"
    assert again.data.tags["aft.attempts"] == "2" and client.get_run(first).info.status == "KILLED"
    third = start_workflow_run(uri, "jobs", {}, workdir=str(tmp_path))
    monkeypatch.setenv(PARENT_ENV, third)
    toy(tmp_path, lambda a, cfg: Outcome({"items": 9}))  # made again (say, its inputs changed)
    (new,) = job_runs(client, exp_id)
    assert new.info.run_id != failed.info.run_id and new.data.metrics["items"] == 9
    assert client.get_run(failed.info.run_id).data.metrics["items"] == 6  # the earlier output's run stays


def test_sigterm_closes_the_run_as_killed(store, tmp_path):
    client, exp_id = store

    def preempted(a, cfg):
        os.kill(os.getpid(), signal.SIGTERM)  # what SLURM sends at the time limit or a preemption

    with pytest.raises(SystemExit, match="stopped by signal SIGTERM"):
        toy(tmp_path, preempted)
    (run,) = job_runs(client, exp_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["aft.error"] == "SystemExit: stopped by signal SIGTERM"


def test_a_bad_config_opens_no_run_and_other_ranks_open_none(store, tmp_path, monkeypatch):
    client, exp_id = store
    argv = ["--config", json.dumps({"toy": {"size": "x"}}), "--metrics", str(tmp_path / "m.json")]
    with pytest.raises(SystemExit):
        run_stage("toy", None, argv, lambda p: None, {"toy": Toy}, lambda a, c: Outcome({}))
    monkeypatch.setenv("RANK", "1")
    toy(tmp_path, lambda a, cfg: None)
    assert job_runs(client, exp_id) == []


FAILING_STAGE = """
import logging, sys
from pydantic import BaseModel
from aft.pipeline.stage import run_stage

class Toy(BaseModel):
    size: int

def body(a, cfg):
    logging.getLogger("aft").info("working on row 7")
    raise RuntimeError("boom at row 7")

run_stage("toy", None, sys.argv[1:], lambda p: None, {"toy": Toy}, body)
"""


def test_a_failed_jobs_run_has_its_log_with_the_traceback_attached(store, tmp_path):
    import subprocess
    import sys

    client, exp_id = store
    log = tmp_path / "logs/toy.log"
    log.parent.mkdir()
    argv = ["--config", json.dumps({"toy": {"size": 2}}), "--metrics", str(tmp_path / "m.json")]
    with log.open("w") as out:  # what a rule's `> {log} 2>&1` does
        cmd = [sys.executable, "-c", FAILING_STAGE, *argv]
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    assert proc.returncode == 1
    (run,) = job_runs(client, exp_id)
    assert run.info.status == "FAILED" and run.data.tags["aft.error"] == "RuntimeError: boom at row 7"
    path = client.download_artifacts(run.info.run_id, "log/toy.log", str(tmp_path / "got"))
    attached = Path(path).read_text(encoding="utf-8")
    assert "working on row 7" in attached and attached.rstrip().endswith("RuntimeError: boom at row 7")
    assert "Traceback (most recent call last)" in attached
