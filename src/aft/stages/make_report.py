"""Stage `make_report`: the results table (Markdown, JSON) and plot (PNG) in reports/.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.make_report --config CFG --results JSON [JSON ...] --table MD --plot PNG \
        --json JSON --metrics FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aft.eval.report import direction_checks, markdown_table, plot
from aft.pipeline.config import ReportConfig
from aft.pipeline.io import atomic_write_text, read_json, write_json
from aft.pipeline.stage import Outcome, run_stage


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=Path, nargs="+", required=True)
    p.add_argument("--table", type=Path, required=True)
    p.add_argument("--plot", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)


def run(rc: ReportConfig, result_files: list[Path], table: Path, plot_file: Path, json_file: Path) -> dict:
    """Write the table, the plot and the collected results; returns how many rows and checks."""
    results = [read_json(f) for f in result_files]
    checks = direction_checks(results)
    text = (
        "# AFT results\n\n"
        + markdown_table(results, rc.paper_bases, rc.paper_table)
        + "\n## Direction of the method (paper: AFT w/ Agg. > AFT > SFT)\n\n"
        + "".join(f"- {c}\n" for c in checks)
    )
    atomic_write_text(table, text)
    write_json(json_file, results)
    plot_file.parent.mkdir(parents=True, exist_ok=True)
    plot(results, plot_file)
    return {
        "n_results": len(results),
        "direction_holds": sum("holds" in c and "NOT" not in c for c in checks),
    }


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        return Outcome(run(cfg["report"], a.results, a.table, a.plot, a.json), [a.table, a.plot, a.json])

    run_stage("make_report", __doc__, argv, arguments, {"report": ReportConfig}, body)


if __name__ == "__main__":
    main()
