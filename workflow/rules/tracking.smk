# MLflow: the store is created once and the workflow's parent run opened before any job starts;
# jobs find both through the environment (tracking settings are no rerun trigger). The workflow's
# handlers (onstart, onsuccess, onerror) live here, one each.
import os
from pathlib import Path

from aft.pipeline.summary import run_summary
from aft.pipeline.tracking import (
    COPY_MODELS_ENV,
    PARENT_ENV,
    end_workflow_run,
    git_sha,
    log_workflow_report,
    start_workflow_run,
)

# `snakemake --lint` asks for an `envvars:` directive for these two; they are optional (a user's own
# MLflow server or experiment), so the config supplies them when the environment does not.
os.environ.setdefault("MLFLOW_TRACKING_URI", CFG.tracking.tracking_uri)
os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", CFG.tracking.experiment)
os.environ[COPY_MODELS_ENV] = "1" if CFG.tracking.copy_models else "0"


onstart:
    check_cluster_site()  # first: a misconfigured cluster profile submits nothing and opens no run
    os.environ[PARENT_ENV] = start_workflow_run(
        os.environ["MLFLOW_TRACKING_URI"],
        os.environ["MLFLOW_EXPERIMENT_NAME"],
        {
            "git_sha": git_sha(),
            "config_hash": config_hash(CFG),
            "experiment": EXPERIMENT,
        },
    )


onsuccess:
    if PARENT_ENV in os.environ:
        log_workflow_report(
            os.environ["MLFLOW_TRACKING_URI"],
            os.environ[PARENT_ENV],
            REPORT,
            f"results/make_report/{EXPERIMENT}/metrics.json",
        )
        end_workflow_run(
            os.environ["MLFLOW_TRACKING_URI"], os.environ[PARENT_ENV], "FINISHED"
        )
    # last, for the person at the console: where the report is and what it says (nothing when the run
    # stopped short of the report). A workflow has one onsuccess handler: this is it.
    print(run_summary(Path("reports") / EXPERIMENT))


onerror:
    if PARENT_ENV in os.environ:
        end_workflow_run(
            os.environ["MLFLOW_TRACKING_URI"], os.environ[PARENT_ENV], "FAILED"
        )
