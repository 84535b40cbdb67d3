"""Stage `make_report`: the results table (Markdown, JSON) and plot (PNG) in reports/.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.make_report --config CFG --results JSON [JSON ...] --table MD --plot PNG \
        --json JSON --metrics FILE
"""

from __future__ import annotations

import time
from pathlib import Path

from aft.eval.report import direction_checks, markdown_table, plot
from aft.pipeline.config import ReportConfig
from aft.pipeline.io import atomic_write_text, read_json, write_json
from aft.pipeline.stage import finish, parser, sections, setup_logging


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    started = time.time()
    p = parser(__doc__)
    p.add_argument("--results", type=Path, nargs="+", required=True)
    p.add_argument("--table", type=Path, required=True)
    p.add_argument("--plot", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    cfg = sections(args.config, report=ReportConfig)
    rc = cfg["report"]
    results = [read_json(f) for f in args.results]
    checks = direction_checks(results)
    text = (
        "# AFT results\n\n"
        + markdown_table(results, rc.paper_bases, rc.paper_table)
        + "\n## Direction of the method (paper: AFT w/ Agg. > AFT > SFT)\n\n"
        + "".join(f"- {c}\n" for c in checks)
    )
    atomic_write_text(args.table, text)
    write_json(args.json, results)
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(results, args.plot)
    metrics = {
        "n_results": len(results),
        "direction_holds": sum("holds" in c and "NOT" not in c for c in checks),
    }
    finish("make_report", args, cfg, metrics, [args.table, args.plot, args.json], started)


if __name__ == "__main__":
    main()
