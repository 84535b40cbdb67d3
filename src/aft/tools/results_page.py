"""A results page for docs/: an experiment's report (reports/<experiment>/results.md) with what made it,
so the numbers in the docs are written by a command, never pasted, and say which commit, config and
machine they are from.

The miniature's numbers depend on the machine (two clean runs of one commit on two CPUs gave two
tables), so a page names the CPU and the instruction-set flags that change float arithmetic.

Usage (after the run, in its working directory):
    python -m aft.tools.results_page --command "make run" --out docs/results/miniature.md
    python -m aft.tools.results_page --experiment seeds --command "..." --out docs/results/seeds.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from aft.pipeline.tracking import parse_cpuinfo

# CPU flags that change which float kernels torch and vLLM pick (and so the low bits of a result)
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")


def cpu_facts(cpuinfo: str) -> dict[str, str]:
    """The CPU model and the ISA flags of ISA_FLAGS it has, from /proc/cpuinfo's text."""
    model, flags = parse_cpuinfo(cpuinfo)
    return {"cpu": model, "isa_flags": " ".join(f for f in ISA_FLAGS if f in flags) or "none listed"}


def page(results_md: str, results_json: bytes, facts: dict[str, str], results_name: str) -> str:
    """The page: a provenance list, then the report with its headings one level down."""
    body = "\n".join("#" + line if line.startswith("#") else line for line in results_md.splitlines())
    lines = [
        "# Results of a run (generated: do not edit by hand)",
        "",
        *(f"- {k}: `{v}`" for k, v in facts.items()),
        f"- sha256 of {results_name}: `{hashlib.sha256(results_json).hexdigest()}`",
        "",
        body,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--experiment", default="miniature", help="the experiment whose report to page")
    p.add_argument("--out", type=Path, required=True, help="the page to write")
    p.add_argument("--command", required=True, help="the command that made the run, as a reader types it")
    args = p.parse_args(argv)
    reports = Path("reports") / args.experiment
    metrics = Path("results/make_report") / args.experiment / "metrics.json"  # the run's commit and versions
    prov = json.loads(metrics.read_text())["provenance"]
    cpuinfo = Path("/proc/cpuinfo")
    facts = {
        "made by": args.command,
        "page written by": shlex.join(["python", "-m", "aft.tools.results_page", *(argv or sys.argv[1:])]),
        "commit": prov.get("git_sha", "unknown"),
        "versions": ", ".join(
            f"{k.removeprefix('version_')} {v}" for k, v in sorted(prov.items()) if k.startswith("version_")
        ),
        "date of the page (UTC)": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        **cpu_facts(cpuinfo.read_text() if cpuinfo.is_file() else ""),
    }
    text = page(
        (reports / "results.md").read_text(),
        (reports / "results.json").read_bytes(),
        facts,
        str(reports / "results.json"),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
