"""The stage runner every `aft.stages.<stage>` goes through: parse the command line, validate the
config sections the stage reads, log, time, and finish with metrics.json (metrics + provenance) and
one MLflow run.

A stage module is `run(...)` (plain data in, metrics out), `arguments(parser)` (its own options) and a
thin `main(argv)` that hands both to `run_stage`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import stat
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from aft.method.prompts import load_template
from aft.pipeline.artifacts import fingerprint
from aft.pipeline.config import config_hash, format_error, hide_secrets, section_json
from aft.pipeline.io import BadRecord, text_file_problem, write_json
from aft.pipeline.models import hub_offline
from aft.pipeline.progress import quiet_library_bars
from aft.pipeline.tracking import end_job_run, log_outcome, provenance, start_job_run

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("aft")


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    p.add_argument("--config", required=True, help="JSON object of the config sections the stage reads")
    p.add_argument("--metrics", type=Path, required=True, help="metrics.json to write")
    p.add_argument("--wildcards", default="", help="k=v,k=v: the job's wildcards, logged as tags")
    return p


def add_scatter_arguments(p: argparse.ArgumentParser) -> None:
    """--part / --parts of a sharded stage (aft.gen.shards): one scatter job, or the gather after them."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--part",
        metavar="I-of-N",
        help="scatter job I of N (Snakemake's {scatteritem}): make shards i with i %% N == I-1 and write"
        " them to --out, a part file",
    )
    g.add_argument(
        "--parts",
        type=Path,
        nargs="*",
        help="gather: the scatter jobs' part files; assemble their shards into --out, making none (none"
        " given: the stage needs no parts, e.g. build_targets without a teacher model)",
    )


def sections(raw: str, optional: tuple[str, ...] = (), **models: type[BaseModel]) -> dict[str, BaseModel]:
    """Validate each named section of the --config JSON with its model (again, inside the job); an
    `optional` one may be absent (a job that does not read it for these wildcards)."""
    data = json.loads(raw)
    models = {k: v for k, v in models.items() if k in data or k not in optional}
    missing = sorted(set(models) - set(data))
    if missing:
        raise SystemExit(f"--config lacks section(s) {missing}; it has {sorted(data)}")
    out = {}
    for name, model in models.items():
        try:
            out[name] = model.model_validate(data[name])
        except ValidationError as err:
            raise SystemExit(format_error(err).replace("\n  ", f"\n  {name}.")) from None
    return out


def named_pairs(items: list[str], flag: str, what: str = "PATH") -> dict[str, str]:
    """NAME=VALUE arguments as a dict (e.g. `--models aft_on=DIR`), refusing any other shape."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SystemExit(f"{flag} {item!r}: expected NAME={what}")
        out[name] = value
    return out


def read_text_input(key: str, path: str, must_contain: str | None = None) -> str:
    """A prompt or template file, byte for byte, checked first (missing, not UTF-8, empty, no marker):
    a stage reads its text inputs before it starts an engine, so a bad file costs no GPU time."""
    problem = text_file_problem(key, path, must_contain)
    if problem:
        raise SystemExit(problem)
    return load_template(path)


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    quiet_library_bars()  # a job's log gets progress lines (aft.pipeline.progress), not bars


def parse_wildcards(text: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in text.split(",") if kv)


def job_tags(args: argparse.Namespace, cfg: dict[str, BaseModel]) -> dict[str, str]:
    """The job's wildcards, provenance and config hashes, as MLflow tags."""
    wildcards = parse_wildcards(args.wildcards)
    hashes = {f"config_hash.{k}": config_hash(v) for k, v in cfg.items()}
    return {f"wildcard.{k}": v for k, v in wildcards.items()} | provenance() | hashes


def finish(
    stage: str,
    args: argparse.Namespace,
    tags: dict[str, str],
    metrics: dict,
    artifacts: list[Path],
    started: float,
    history: list[dict] | None = None,
    record: dict[str, str] | None = None,
) -> None:
    """Write metrics.json (metrics + provenance) and log the job into its open MLflow run.

    `record` holds facts that are strings, not numbers (e.g. a checksum): written to metrics.json and
    logged as MLflow tags. `tags` are the job's (job_tags), which its run got when it opened."""
    metrics = {**metrics, "wall_time_s": round(time.time() - started, 3)}
    provenance_ = {k: v for k, v in tags.items() if not k.startswith("wildcard.")}
    # the content fingerprint of each output (aft.tools.compare finds where two runs first differ)
    outputs = {str(p): fingerprint(p) for p in artifacts if p.exists()}
    out = {
        "stage": stage,
        "wildcards": parse_wildcards(args.wildcards),
        "metrics": metrics,
        "provenance": provenance_,
        "outputs": outputs,
    }
    if history:  # per-step rows (loss curves): the report draws them from here
        out["history"] = history
    if record:
        out["record"] = record
    write_json(args.metrics, out)
    recorded = {f"record.{k}": str(v) for k, v in (record or {}).items()}
    log_outcome(stage, metrics, tags | recorded, [*artifacts, args.metrics], history, outputs)
    log.info("%s done in %.1fs: %s", stage, metrics["wall_time_s"], json.dumps(metrics)[:500])


def redirected_log() -> Path | None:
    """The file this process writes its output to (a rule's `> {log} 2>&1`), or None (a terminal, a
    pipe, or a system without /proc)."""
    try:
        if stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode):
            return Path(os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}"))
    except (OSError, ValueError):  # ValueError: a replaced stdout without a file descriptor
        return None
    return None


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # SLURM's timeout and preemption, and torchrun stopping its workers, send SIGTERM: end as an
    # exception, so the job's run is closed as KILLED with the reason instead of staying RUNNING
    raise SystemExit(f"stopped by signal {signal.Signals(signum).name}")


@dataclass
class Outcome:
    """What a stage's body hands back to the runner to record."""

    metrics: dict
    artifacts: list[Path] = field(default_factory=list)
    history: list[dict] | None = None  # per-step rows (training curves) for MLflow
    record: dict[str, str] | None = None  # string facts (checksums, judge names): metrics.json + MLflow tags
    stage: str | None = None  # logged under another name: a scatter job is `<stage>_part`
    # work folders (finished shards) removed only once metrics.json is written: a job killed before
    # that reruns from them
    cleanup: list[Path] = field(default_factory=list)


def run_stage(
    stage: str,
    doc: str | None,
    argv: list[str] | None,
    arguments: Callable[[argparse.ArgumentParser], None],
    models: dict[str, type[BaseModel]],
    body: Callable[[argparse.Namespace, dict[str, BaseModel]], Outcome | None],
    optional: tuple[str, ...] = (),
    network: bool = False,
) -> None:
    """Parse `argv`, validate the --config sections named in `models`, run `body` and finish.

    `body` returns None when this process has nothing to record (the non-zero ranks of a training job).
    The Hugging Face hub is off unless the stage fetches (`network`): models are loaded from the folders
    fetch_model wrote, never downloaded on a compute node."""
    if not network:
        hub_offline()
    setup_logging()
    started = time.time()
    p = parser(doc)
    arguments(p)
    args = p.parse_args(argv)
    cfg = sections(args.config, optional, **models)
    tags = job_tags(args, cfg)  # provenance once: metrics.json and the MLflow run share it
    # rank 0 of a multi-process job (or the only process) records; the job's run opens now, so MLflow
    # shows it RUNNING while it works and a failure leaves a FAILED run with the error
    if os.environ.get("RANK", "0") == "0":
        part = getattr(args, "part", None)
        job = "|".join(x for x in (stage, args.wildcards, part) if x)
        params = {k: json.loads(section_json(v)) for k, v in cfg.items()}
        start_job_run(stage, job, params, tags)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        try:
            outcome = body(args, cfg)
        except BadRecord as err:  # a bad input line: its file and line, not a traceback
            raise SystemExit(f"{stage}: {err}") from None
        if outcome is not None:
            finish(
                outcome.stage or stage,
                args,
                tags,
                outcome.metrics,
                outcome.artifacts,
                started,
                history=outcome.history,
                record=outcome.record,
            )
    except BaseException as err:
        killed = isinstance(err, KeyboardInterrupt) or "stopped by signal" in str(err)
        trace = "" if isinstance(err, SystemExit) else traceback.format_exc()
        try:
            end_job_run(
                "KILLED" if killed else "FAILED",
                hide_secrets(f"{type(err).__name__}: {err}"),
                redirected_log(),
                hide_secrets(trace or f"{err}\n"),
            )
        except Exception as tracking_err:  # the job's own error is the one to see
            log.warning("could not close the job's MLflow run: %s", tracking_err)
        raise
    end_job_run("FINISHED", log=redirected_log())
    for folder in outcome.cleanup if outcome else []:
        shutil.rmtree(folder, ignore_errors=True)
