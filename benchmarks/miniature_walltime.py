"""Benchmark: miniature wall time from a clean results/ on this machine, per stage and total, then a
no-op rerun. Runs the real workflow in a fresh copy (the repository's results/ are not touched).

Usage:
    python benchmarks/miniature_walltime.py [--cores 2] [--keep DIR] [--overlay config/experiments/X.yaml]
Prints a table of per-rule wall time (Snakemake's `benchmark:` files: summed over jobs) and totals.
With --overlay, the overlay's experiment runs after the default one in the same folder (it reuses
every job the two share) and its wall time and report are printed too.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

from aft.pipeline.config import JOB_RULES

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def per_rule_seconds(workdir: Path) -> dict[str, tuple[int, float, float]]:
    """rule -> (jobs, summed seconds, max RSS MB) from Snakemake's benchmark TSVs."""
    acc: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for tsv in (workdir / "results/timings").rglob("*.tsv"):
        rule = tsv.relative_to(workdir / "results/timings").parts[0]
        with open(tsv) as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        acc[rule][0] += 1
        acc[rule][1] += float(row["s"])
        rss = row.get("max_rss", "NA")
        if rss not in ("NA", "-"):
            acc[rule][2] = max(acc[rule][2], float(rss))
    return {k: (int(v[0]), v[1], v[2]) for k, v in acc.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temp folder)")
    p.add_argument("--overlay", type=Path, help="an experiment overlay to run after the default")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="aft-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config"):
        src, dst = ROOT / name, work / name
        if not dst.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
    total = run(["snakemake", "--cores", str(args.cores)], work)
    noop = run(["snakemake", "--cores", str(args.cores)], work)
    rules = per_rule_seconds(work)
    print(f"{'rule':<22}{'jobs':>5}{'seconds':>10}{'max RSS MB':>12}")
    for rule in JOB_RULES:
        if rule in rules:
            n, s, rss = rules[rule]
            print(f"{rule:<22}{n:>5}{s:>10.1f}{rss:>12.0f}")
    print(f"{'sum of jobs':<27}{sum(v[1] for v in rules.values()):>10.1f}")
    print(f"total wall time (clean results/, --cores {args.cores}): {total:.1f} s")
    print(f"no-op rerun: {noop:.1f} s")
    print((work / "reports/miniature/results.md").read_text())
    if args.overlay:
        name = yaml.safe_load(args.overlay.read_text())["experiment"]
        stacked = ["--configfile", "config/config.yaml", str(args.overlay.resolve())]
        after = run(["snakemake", "--cores", str(args.cores), *stacked], work)
        print(f"overlay {args.overlay} after the default (jobs it shares are reused): {after:.1f} s")
        print(f"default + overlay from a clean results/: {total + after:.1f} s")
        print((work / "reports" / name / "results.md").read_text())
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
