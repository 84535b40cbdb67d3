"""Benchmark: does `build_base` (the first stage whose bytes depend on the machine) write the same base
model with other CPU kernels or thread counts? Runs the stage of the config three ways in a temporary
folder, from the corpus of a finished run: torch's own kernels with the rule's threads, the same with
one thread, and AVX2 kernels (`ATEN_CPU_CAPABILITY=avx2`, what an AVX2-only machine runs).

Usage (in a run's working directory, after prepare_data):
    python benchmarks/cpu_kernels.py [--configfile config/config.yaml ...] [--base mini]
Prints a Markdown table: kernels, threads, the model's sha256, the final pretraining loss.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from aft.pipeline.artifacts import fingerprint
from aft.pipeline.tracking import cpu_facts
from aft.tools.paths import graph_of


def build(graph, base: str, out: Path, kernels: str | None, threads: int) -> dict:
    """Run the build_base stage once; returns its metrics.json."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db"}
    env.pop("ATEN_CPU_CAPABILITY", None)
    if kernels:
        env["ATEN_CPU_CAPABILITY"] = kernels
    cmd = [sys.executable, "-m", "aft.stages.build_base", "--config", graph.settings("build_base", base=base)]
    cmd += ["--corpus", f"{graph.job_dir('prepare_data')}/corpus.txt", "--out", str(out / "model")]
    cmd += ["--metrics", str(out / "metrics.json")]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configfile", nargs="+", default=["config/config.yaml"], help="as for snakemake")
    p.add_argument("--base", default="mini")
    args = p.parse_args()
    graph = graph_of(args.configfile)
    threads = graph.cfg.resources.rules["build_base"].cpus
    own = cpu_facts().get("cpu_isa", "default")
    cases = [(None, threads), (None, 1), ("avx2", threads)]
    print(f"CPU: {cpu_facts()['cpu']}; torch's own kernels here: {own}\n")
    print("| kernels | threads | model.safetensors sha256 | final loss |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="aft-kernels-") as tmp:
        for i, (kernels, n) in enumerate(cases):
            out = Path(tmp) / str(i)
            m = build(graph, args.base, out, kernels, n)
            sha = fingerprint(out / "model")["model.safetensors"]
            print(f"| {kernels or own} | {n} | `{sha[:16]}...` | {m['metrics']['final_loss']} |")


if __name__ == "__main__":
    main()
