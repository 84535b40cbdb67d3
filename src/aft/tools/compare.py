"""Compare two runs job by job: which artifact differs first along the DAG, why, and what it changed.

A run is a working tree (every job's metrics.json under its results/), or one experiment's report
folder (reports/<experiment>/, whose artifacts.json lists the experiment's jobs). Jobs are paired by
stage and wildcards and walked in DAG order. A pair is
    same       the same job (key) with the same output bytes
    settings   different keys: the config sections the job reads differ (named), or what it reads does
    bytes      the same job (key) wrote different bytes: the runs diverge here (machine, libraries)
The first pair that is not `same` is where the runs part; every later difference may follow from it.
With both reports present, their claims tables are set side by side.

Usage:
    python -m aft.tools.compare RUN_A RUN_B [--out comparison.md]
    python -m aft.tools.compare ../other-clone .                 # two working trees, same config
    python -m aft.tools.compare reports/miniature reports/agg_depth3   # two experiments
Exit status: 0 when every paired job is the same, 1 otherwise (like diff).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from aft.pipeline.artifacts import job_record
from aft.pipeline.jobs import STAGES


@dataclass(frozen=True)
class Job:
    stage: str
    wildcards: dict[str, str]
    key: str | None
    outputs: dict[str, dict[str, str]]  # output path -> file -> sha256
    metrics: dict[str, float]
    config_hashes: dict[str, str]  # section -> hash (the job's provenance)
    where: str  # its metrics file

    @property
    def ident(self) -> tuple:
        return self.stage, tuple(sorted(self.wildcards.items()))

    def label(self) -> str:
        w = ",".join(f"{k}={v}" for k, v in sorted(self.wildcards.items()))
        return f"{self.stage}[{w}]" if w else self.stage


def job_from_metrics(path: Path, data: dict) -> Job | None:
    """A job from its metrics.json (None for files that are not a job's, e.g. make_report's)."""
    if data.get("stage") not in STAGES:
        return None
    r = job_record(path, data)
    # outputs are keyed by the path they were written to: compare them by their place in the job
    outputs = {Path(p).name: files for p, files in r["outputs"].items()}
    return Job(r["stage"], r["wildcards"], r["key"], outputs, r["metrics"], r["config_hashes"], str(path))


def load_run(path: Path) -> tuple[list[Job], bool]:
    """The jobs of a working tree (all of results/) or of an experiment (its artifacts.json), and
    whether it is a whole tree (whose jobs of several experiments are told apart by their keys)."""
    manifest = path / "artifacts.json" if path.is_dir() else path
    tree = not manifest.is_file()
    if not tree:
        root = _tree_root(manifest)
        files = [root / j["metrics_file"] for j in json.loads(manifest.read_text(encoding="utf-8"))["jobs"]]
    elif (path / "results").is_dir():
        files = sorted((path / "results").rglob("*metrics.json"))
    else:
        raise SystemExit(
            f"{path}: neither a working tree (no results/) nor a report folder (no artifacts.json)"
        )
    jobs = []
    for f in files:
        if not f.is_file():
            raise SystemExit(f"{f}: listed in {manifest} but missing (a cleaned results/?)")
        job = job_from_metrics(f, json.loads(f.read_text(encoding="utf-8")))
        if job is not None:
            jobs.append(job)
    return sorted(jobs, key=lambda j: (STAGES.index(j.stage), j.ident)), tree


def _tree_root(manifest: Path) -> Path:
    """The working tree of reports/<experiment>/artifacts.json (its paths are relative to it)."""
    return manifest.resolve().parent.parent.parent


@dataclass(frozen=True)
class Pair:
    a: Job | None
    b: Job | None
    kind: str  # same, settings, bytes, only_a, only_b
    detail: str


def compare_jobs(a: Job, b: Job) -> Pair:
    if a.key != b.key:
        sections = sorted(
            s
            for s in a.config_hashes.keys() | b.config_hashes.keys()
            if a.config_hashes.get(s) != b.config_hashes.get(s)
        )
        why = f"config sections {', '.join(sections)} differ" if sections else "what it reads differs"
        return Pair(a, b, "settings", f"keys {a.key} and {b.key}: {why}")
    if a.outputs != b.outputs:
        files = sorted(
            f"{out}/{name}" if name != out else out
            for out in a.outputs.keys() | b.outputs.keys()
            for name in (a.outputs.get(out, {}).keys() | b.outputs.get(out, {}).keys())
            if a.outputs.get(out, {}).get(name) != b.outputs.get(out, {}).get(name)
        )
        return Pair(a, b, "bytes", f"same job (key {a.key}), different bytes: {', '.join(files[:6])}")
    return Pair(a, b, "same", "")


def pair_runs(a: list[Job], b: list[Job], by_key: bool = False) -> list[Pair]:
    """Every job of either run, paired by stage and wildcards (and key, for whole working trees, which
    may hold several experiments), in DAG order."""

    def ident(j: Job) -> tuple:
        return (*j.ident, j.key) if by_key else j.ident

    by_b = {ident(j): j for j in b}
    by_a = {ident(j): j for j in a}
    pairs = [compare_jobs(j, by_b[ident(j)]) if ident(j) in by_b else Pair(j, None, "only_a", "") for j in a]
    pairs += [Pair(None, j, "only_b", "") for j in b if ident(j) not in by_a]
    order = {s: i for i, s in enumerate(STAGES)}
    return sorted(pairs, key=lambda p: (order[(p.a or p.b).stage], (p.a or p.b).ident))


def metric_changes(a: Job, b: Job, limit: int = 8) -> list[str]:
    """The numeric metrics that differ (wall time and rates left out: they differ on every run)."""
    noisy = ("wall_time_s", "_per_s", "runtime", "_time_s")
    rows = []
    for k in sorted(a.metrics.keys() & b.metrics.keys()):
        if any(n in k for n in noisy) or a.metrics[k] == b.metrics[k]:
            continue
        rows.append(f"{k}: {a.metrics[k]:.6g} -> {b.metrics[k]:.6g}")
    return rows[:limit]


def claims_side_by_side(a: dict, b: dict, names: tuple[str, str]) -> str:
    """The two reports' claims tables in one, row by (base, benchmark, claim)."""

    def rows(report: dict) -> dict[tuple, dict]:
        return {(c["base"], c["bench"], c["claim"]): c for c in report.get("claims", [])}

    ra, rb = rows(a), rows(b)

    def cell(c: dict | None) -> str:
        if c is None:
            return "–"
        return f"{c['difference']:+.1f} [{c['lo']:+.1f}, {c['hi']:+.1f}] {c['verdict']}"

    lines = [
        f"| base | benchmark | claim | {names[0]} | {names[1]} |",
        "|---|---|---|---|---|",
    ]
    for k in sorted(ra.keys() | rb.keys()):
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {cell(ra.get(k))} | {cell(rb.get(k))} |")
    return "\n".join(lines) + "\n"


def render(pairs: list[Pair], names: tuple[str, str]) -> str:
    differing = [p for p in pairs if p.kind != "same"]
    same = len(pairs) - len(differing)
    lines = [f"# {names[0]} vs {names[1]}", "", f"{len(pairs)} jobs paired: {same} the same."]
    if not differing:
        return "\n".join([*lines, "", "No job differs."]) + "\n"
    first = differing[0]
    job = first.a or first.b
    lines += [
        "",
        f"First difference along the DAG: {job.label()}: {first.kind}: {first.detail or 'in one run only'}",
    ]
    lines += ["", "| job | difference | detail | metrics that changed |", "|---|---|---|---|"]
    for p in differing:
        changes = "; ".join(metric_changes(p.a, p.b)) if p.a and p.b else ""
        lines.append(f"| {(p.a or p.b).label()} | {p.kind} | {p.detail} | {changes} |")
    return "\n".join(lines) + "\n"


def report_of(path: Path) -> dict | None:
    """The experiment's results.json beside its artifacts.json, if `path` is a report folder."""
    folder = path if path.is_dir() else path.parent
    f = folder / "results.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_a", type=Path, help="a working tree, or a report folder reports/<experiment>")
    p.add_argument("run_b", type=Path)
    p.add_argument("--out", type=Path, help="also write the comparison here (Markdown)")
    args = p.parse_args(argv)
    names = (str(args.run_a), str(args.run_b))
    (jobs_a, tree_a), (jobs_b, tree_b) = load_run(args.run_a), load_run(args.run_b)
    pairs = pair_runs(jobs_a, jobs_b, by_key=tree_a and tree_b)
    text = render(pairs, names)
    ra, rb = report_of(args.run_a), report_of(args.run_b)
    if ra and rb:
        text += "\n## Claims\n\n" + claims_side_by_side(ra, rb, names)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0 if all(p.kind == "same" for p in pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
