"""What the console says when a run ends (Snakefile `onsuccess`): where the report is and its claims with
their verdicts, read from the report's results.json. Pure: a report folder in, text out."""

from __future__ import annotations

import json
from pathlib import Path


def run_summary(report_dir: Path) -> str:
    """The report's files and one line per claim (difference, interval, verdict), with the verdict counts;
    empty when the run did not make the report (a target short of it)."""
    results = Path(report_dir) / "results.json"
    if not results.is_file():
        return ""
    claims = json.loads(results.read_text())["claims"]
    lines = [f"Report: {report_dir}/results.md (also results.html, plots beside it)"]
    if claims:
        counts = {
            v: sum(c["verdict"] == v for c in claims) for v in ("reproduced", "contradicted", "inconclusive")
        }
        lines.append("Claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
        for c in claims:
            interval = "" if c["lo"] is None else f" [{c['lo']:+.3g}, {c['hi']:+.3g}]"
            where = f"{c['base']} {c['bench']}"
            lines.append(f"  {where}: {c['claim']}: {c['difference']:+.3g}{interval} -> {c['verdict']}")
    return "\n".join(lines)
