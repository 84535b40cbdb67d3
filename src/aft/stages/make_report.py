"""Stage `make_report`: the results table with the paper's claims checked (Markdown, JSON) and plot (PNG) in
reports/.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.make_report --config CFG --results JSON [JSON ...] --judgments JSONL [JSONL ...] \
        --table MD --plot PNG --json JSON --metrics FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aft.eval.report import claims_section, headline_metrics, markdown_table, plot
from aft.pipeline.config import ReportConfig
from aft.pipeline.io import atomic_write_text, read_json, read_jsonl, write_json
from aft.pipeline.stage import Outcome, run_stage


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", type=Path, nargs="+", required=True)
    p.add_argument(
        "--judgments", type=Path, nargs="+", required=True, help="per-question judgments, as --results"
    )
    p.add_argument("--table", type=Path, required=True)
    p.add_argument("--plot", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)


def run(
    rc: ReportConfig,
    result_files: list[Path],
    judgment_files: list[Path],
    table: Path,
    plot_file: Path,
    json_file: Path,
) -> dict:
    """Write the table with the claims checked, the plot and the collected results; returns counts."""
    if len(result_files) != len(judgment_files):
        raise SystemExit(f"{len(result_files)} --results but {len(judgment_files)} --judgments")
    results = [read_json(f) for f in result_files]
    claims_md, claim_rows = claims_section(results, [read_jsonl(f) for f in judgment_files], rc.paper_bases)
    text = (
        "# AFT results\n\n"
        + markdown_table(results, rc.paper_bases, rc.paper_table)
        + "\n## The paper's claims (paired bootstrap over the questions, 95% intervals)\n\n"
        + claims_md
        + "\nreproduced: the interval lies on the claimed side of zero; contradicted: on the other side;"
        " inconclusive: it includes zero.\n"
    )
    atomic_write_text(table, text)
    write_json(json_file, results)
    plot_file.parent.mkdir(parents=True, exist_ok=True)
    plot(results, plot_file)
    verdicts = [r.verdict for r in claim_rows]
    counts = {f"claims_{v}": verdicts.count(v) for v in ("reproduced", "contradicted", "inconclusive")}
    return {"n_results": len(results)} | counts | headline_metrics(results)


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        metrics = run(cfg["report"], a.results, a.judgments, a.table, a.plot, a.json)
        return Outcome(metrics, [a.table, a.plot, a.json])

    run_stage("make_report", __doc__, argv, arguments, {"report": ReportConfig}, body)


if __name__ == "__main__":
    main()
