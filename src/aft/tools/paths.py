"""Where a config's jobs write: the keyed folder of each job of a rule (docs/experiments.md).

Every result path holds the key of the job that made it, so a folder is found by asking, not by
guessing. Run it from the repository root (template files are identified by their content).

Usage:
    python -m aft.tools.paths RULE [WILDCARD=VALUE ...] [--configfile FILE ...]
    python -m aft.tools.paths train_model variant=aft_on          # the miniature's AFT-on models
    python -m aft.tools.paths generate_answers bench=mt_bench mode=agg --configfile config/paper.yaml
Scatter counts come from the config (on_policy.num_jobs, targets.num_jobs); a run with --set-scatter
has other parts and other gather keys.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aft.pipeline.config import load_config
from aft.pipeline.configfile import read_config_files
from aft.pipeline.jobs import JOB_DIRS, JobGraph


def graph_of(files: list[str], root: Path = Path(".")) -> JobGraph:
    """The jobs of the config stacked from `files` (relative to `root`, the working directory)."""
    cfg = load_config(read_config_files([root / f for f in files]))
    return JobGraph(cfg, root=root)


def job_dirs(graph: JobGraph, rule: str, where: dict[str, str]) -> list[str]:
    """The folders of the rule's jobs in this config's grid whose wildcards match `where`."""
    if rule not in JOB_DIRS:
        raise SystemExit(f"unknown rule {rule!r}; keyed rules: {', '.join(JOB_DIRS)}")
    jobs = graph.lineage([("judge_answers", w) for w in graph.judged()])
    found = [
        graph.job_dir(r, **w) for r, w in jobs if r == rule and all(w.get(k) == v for k, v in where.items())
    ]
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configfile", nargs="+", default=["config/config.yaml"], help="as for snakemake")
    p.add_argument("rule")
    p.add_argument("where", nargs="*", help="WILDCARD=VALUE filters, e.g. base=mini variant=sft seed=0")
    args = p.parse_args(argv)
    where = dict(kv.split("=", 1) for kv in args.where)
    for folder in job_dirs(graph_of(args.configfile), args.rule, where):
        print(folder)


if __name__ == "__main__":
    main()
