"""A killed invocation's MLflow runs do not stay RUNNING: the next invocation in the same working
directory closes them as KILLED, with the reason (a real sqlite store)."""

from __future__ import annotations

from aft.pipeline.tracking import STALE_REASON, end_workflow_run, start_workflow_run


def test_the_next_invocation_closes_what_a_killed_one_left_running(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    killed = start_workflow_run(uri, "exp", {}, workdir="/runs/a")  # never ended: SIGKILL
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name("exp").experiment_id
    job = client.create_run(exp_id, tags={"mlflow.parentRunId": killed}, run_name="train_model").info.run_id
    done = client.create_run(exp_id, tags={"mlflow.parentRunId": killed}, run_name="prepare_data").info.run_id
    client.set_terminated(done, status="FINISHED")
    elsewhere = start_workflow_run(uri, "exp", {}, workdir="/runs/b")  # another working directory

    current = start_workflow_run(uri, "exp", {}, workdir="/runs/a")

    def status(run_id: str) -> str:
        return client.get_run(run_id).info.status

    assert (status(killed), status(job), status(done)) == ("KILLED", "KILLED", "FINISHED")
    assert client.get_run(killed).data.tags["aft.closed_reason"] == STALE_REASON
    assert client.get_run(job).data.tags["aft.closed_reason"] == STALE_REASON
    assert (status(elsewhere), status(current)) == ("RUNNING", "RUNNING")  # not this directory's, or live
    end_workflow_run(uri, current, "FINISHED")
    assert status(current) == "FINISHED"
