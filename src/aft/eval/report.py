"""The results table in the paper's shape, the paper's numbers beside ours where the benchmark matches.
Columns, headline scores, the paper's numbers and judges come from the registry (aft.eval.registry).

LLM-judged columns carry the name of the judge that produced them, and the paper's columns the paper's
judge, so an open judge's numbers are never read as GPT-4's."""

from __future__ import annotations

import importlib

from aft.eval import claims
from aft.eval.registry import REGISTRY, Column

VARIANT_LABEL = {"sft": "SFT", "aft_off": "AFT-off-policy", "aft_on": "AFT-on-policy"}
ROW_ORDER = [(v, m) for v in ("sft", "aft_off", "aft_on") for m in ("direct", "agg")]


def headline_column(bench: str) -> Column:
    spec = REGISTRY[bench]
    return next(c for c in spec.columns if c.key == spec.headline)


def row_label(variant: str, mode: str) -> str:
    return VARIANT_LABEL[variant] + (" w/ Agg." if mode == "agg" else "")


def collect(results: list[dict]) -> dict[tuple[str, str, str], dict[str, dict]]:
    """(base, variant, mode) -> bench -> judge result."""
    table: dict[tuple[str, str, str], dict[str, dict]] = {}
    for r in results:
        w = r["wildcards"]
        table.setdefault((w["base"], w["variant"], w["mode"]), {})[r["bench"]] = r
    return table


def headline_metrics(results: list[dict]) -> dict[str, float]:
    """Each result's headline score as `<base>.<variant>.<mode>.<bench>.<score>`: what the workflow's
    parent run in MLflow shows (scores that could not be computed, e.g. LC without its fit, are left out)."""
    out = {}
    for r in results:
        w, key = r["wildcards"], REGISTRY[r["bench"]].headline
        if r["scores"].get(key) is not None:
            out[f"{w['base']}.{w['variant']}.{w['mode']}.{r['bench']}.{key}"] = float(r["scores"][key])
    return out


def _fmt(x: float | None, se: float | None = None) -> str:
    if x is None:
        return "–"
    return f"{x:.1f}" if se is None else f"{x:.1f} ± {se:.1f}"


def judges_of(results: list[dict]) -> dict[str, list[str]]:
    """bench -> the judges that produced its results (more than one is shown, never hidden)."""
    out: dict[str, set[str]] = {}
    for r in results:
        out.setdefault(r["bench"], set()).add(r["judge"])
    return {b: sorted(j) for b, j in out.items()}


def markdown_table(results: list[dict], paper_bases: dict[str, str | None], paper_table: bool) -> str:
    """The report's table: one block of rows per base, our scores and the paper's side by side."""
    table = collect(results)
    benches = [b for b in REGISTRY if any(b in v for v in table.values())]
    judges = judges_of(results)
    head = ["base", "model"]
    for b in benches:
        spec = REGISTRY[b]
        for col in spec.columns:
            head.append(f"{col.title} [{', '.join(judges[b])}]" if spec.llm_judged else col.title)
            if paper_table and col.paper_key:
                head.append(f"{col.title} (paper) [{spec.paper_judge_name}]")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for base in sorted({k[0] for k in table}):
        paper_base = paper_bases.get(base) or ""
        for variant, mode in ROW_ORDER:
            scores = table.get((base, variant, mode))
            if scores is None:
                continue
            label = row_label(variant, mode)
            cells = [base, label]
            for b in benches:
                paper = REGISTRY[b].paper.get(paper_base, {}).get(label, {})
                for col in REGISTRY[b].columns:
                    r = scores.get(b)
                    se = (r.get("standard_errors") or {}).get(col.key) if r else None
                    cells.append(_fmt(r["scores"].get(col.key), se) if r else "–")
                    if paper_table and col.paper_key:
                        cells.append(_fmt(paper.get(col.paper_key)))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + judge_notes(results) + "\n"


def judge_notes(results: list[dict]) -> str:
    """Who judged each benchmark, whether that is the paper's judge, and what could not be judged."""
    lines = ["Judges:"]
    for bench, names in judges_of(results).items():
        rows = [r for r in results if r["bench"] == bench]
        paper_judge = REGISTRY[bench].paper_judge_name
        if paper_judge is None:
            lines.append(f"- {bench}: {', '.join(names)}")
            continue
        if all(r.get("paper_judge") for r in rows):
            verdict = f"the paper's judge ({paper_judge})"
        else:
            verdict = (
                f"NOT the paper's judge ({paper_judge}): our numbers are not comparable with the"
                " paper's columns"
            )
        missing = sum(r.get("n_unjudged", 0) + r.get("n_unparsable", 0) for r in rows)
        lost = (
            f"; {missing} judgments could not be parsed and are left out (see the results)" if missing else ""
        )
        no_lc = sorted({r["lc_unavailable"] for r in rows if r.get("lc_unavailable")})
        if no_lc:  # the raw win rate is reported; the length-controlled one could not be fitted
            lost += (
                f"; no LC win rate for {sum(bool(r.get('lc_unavailable')) for r in rows)} rows: {no_lc[0]}"
            )
        lines.append(f"- {bench}: {', '.join(names)}: {verdict}{lost}")
    return "\n".join(lines)


def claims_section(
    results: list[dict], judgments: list[list[dict]], paper_bases: dict[str, str | None]
) -> tuple[str, list[claims.ClaimRow]]:
    """The claims table (aft.eval.claims) from each result's per-question judgments, with the paper's own
    difference where the benchmark has the paper's number for the compared score."""
    scores = {}
    for r, rows in zip(results, judgments, strict=True):
        w = r["wildcards"]
        code = importlib.import_module(REGISTRY[r["bench"]].module)
        scores[(w["base"], r["bench"], w["variant"], w["mode"])] = code.question_scores(rows)
    benches = {k[1] for k in scores}
    paper = {}
    for base, bench in {(k[0], k[1]) for k in scores}:
        key = REGISTRY[bench].claim_column.paper_key
        by_label = REGISTRY[bench].paper.get(paper_bases.get(base) or "", {})
        paper[(base, bench)] = {
            rm: by_label[row_label(*rm)][key] for rm in ROW_ORDER if key in by_label.get(row_label(*rm), {})
        }
    rows = claims.check_claims(scores, paper)
    return claims.markdown(rows, {b: REGISTRY[b].claim_column.title for b in benches}), rows


def plot(results: list[dict], path) -> None:
    """Grouped bars: each base and benchmark's headline score per row of the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = collect(results)
    groups = sorted({(k[0], b) for k, v in table.items() for b in v})
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, (base, bench) in zip(axes[0], groups):
        key, title = REGISTRY[bench].headline, headline_column(bench).title
        rows = [(row_label(v, m), table.get((base, v, m), {}).get(bench)) for v, m in ROW_ORDER]
        rows = [(label, r["scores"][key]) for label, r in rows if r is not None]
        ax.bar(
            range(len(rows)),
            [s for _, s in rows],
            color=["#999", "#bbb", "#1f77b4", "#6baed6", "#d62728", "#fc9272"][: len(rows)],
        )
        ax.set_xticks(range(len(rows)), [label for label, _ in rows], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(title)
        ax.set_title(f"{base}: {bench}")
        for i, (_, s) in enumerate(rows):
            ax.text(i, s, f"{s:.1f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
