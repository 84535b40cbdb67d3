"""The results table in the paper's shape, the paper's numbers beside ours where the benchmark matches.
Columns, headline scores, the paper's numbers and judges come from the registry (aft.eval.registry).

LLM-judged columns carry the name of the judge that produced them, and the paper's columns the paper's
judge, so an open judge's numbers are never read as GPT-4's."""

from __future__ import annotations

import importlib

from aft.eval import claims, stats
from aft.eval.registry import REGISTRY, Column
from aft.eval.stats import Estimate

VARIANT_LABEL = {"sft": "SFT", "aft_off": "AFT-off-policy", "aft_on": "AFT-on-policy"}
ROW_ORDER = [(v, m) for v in ("sft", "aft_off", "aft_on") for m in ("direct", "agg")]


def headline_column(bench: str) -> Column:
    spec = REGISTRY[bench]
    return next(c for c in spec.columns if c.key == spec.headline)


def row_label(variant: str, mode: str) -> str:
    """The paper's row name (direct, w/ Agg.); a named strategy adds its name."""
    suffix = {"direct": "", "agg": " w/ Agg."}.get(mode, f" [{mode}]")
    return VARIANT_LABEL[variant] + suffix


def seed_of(result: dict) -> str:
    return result["wildcards"].get("seed", "0")


def collect(results: list[dict]) -> dict[tuple[str, str, str], dict[str, list[dict]]]:
    """(base, variant, mode) -> bench -> its results, one per seed (in seed order)."""
    table: dict[tuple[str, str, str], dict[str, list[dict]]] = {}
    for r in sorted(results, key=lambda r: int(seed_of(r))):
        w = r["wildcards"]
        table.setdefault((w["base"], w["variant"], w["mode"]), {}).setdefault(r["bench"], []).append(r)
    return table


def question_scores_of(results: list[dict], judgments: list[list[dict]]) -> dict[int, dict[str, float]]:
    """id(result) -> its per-question scores (the registry's `question_scores`), for the intervals."""
    out = {}
    for r, rows in zip(results, judgments, strict=True):
        out[id(r)] = importlib.import_module(REGISTRY[r["bench"]].module).question_scores(rows)
    return out


def estimate(rows: list[dict], key: str, per_question: dict[int, dict[str, float]] | None) -> Estimate | None:
    """A score over a row's seeds with its 95% interval: over the seeds when there are several; for one
    seed, the judge's standard error where it gives one (alpaca-eval), else a bootstrap over the
    questions of the benchmark's per-question score; None when the score could not be computed."""
    values = [r["scores"].get(key) for r in rows]
    if any(v is None for v in values):
        return None
    if len(rows) > 1:
        return stats.seed_interval([float(v) for v in values])
    (r,) = rows
    se = (r.get("standard_errors") or {}).get(key)
    if se is not None:
        return stats.Estimate(
            float(values[0]), values[0] - 1.96 * se, values[0] + 1.96 * se, r.get("n", 0), "se"
        )
    if per_question and key == REGISTRY[r["bench"]].claim_key and per_question.get(id(r)):
        return stats.question_interval(per_question[id(r)])
    return stats.Estimate(float(values[0]), None, None, 1, "none")


def headline_metrics(results: list[dict]) -> dict[str, float]:
    """Each row's headline score (mean over seeds) as `<base>.<variant>.<mode>.<bench>.<score>`: what the
    workflow's parent run in MLflow shows (scores that could not be computed, e.g. LC without its fit,
    are left out)."""
    out = {}
    for (base, variant, mode), benches in collect(results).items():
        for bench, rows in benches.items():
            key = REGISTRY[bench].headline
            values = [r["scores"].get(key) for r in rows]
            if all(v is not None for v in values):
                out[f"{base}.{variant}.{mode}.{bench}.{key}"] = sum(map(float, values)) / len(values)
    return out


def _cell(e: Estimate | None, rows: list[dict] | None = None, key: str = "") -> str:
    if e is None:
        return "–"
    if e.over == "se" and rows:  # alpaca-eval's own convention: score ± its standard error
        return f"{e.mean:.1f} ± {rows[0]['standard_errors'][key]:.1f}"
    return e.formatted()


def markdown_table(
    results: list[dict],
    paper_bases: dict[str, str | None],
    paper_table: bool,
    per_question: dict[int, dict[str, float]] | None = None,
) -> str:
    """The report's table: one block of rows per base, our scores (mean over seeds with a 95% interval)
    and the paper's side by side."""
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
                    rows = scores.get(b)
                    cells.append(_cell(estimate(rows, col.key, per_question), rows, col.key) if rows else "–")
                    if paper_table and col.paper_key:
                        cells.append(_fmt(paper.get(col.paper_key)))
            lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({seed_of(r) for r in results}, key=int)
    how = (
        f"mean over {len(seeds)} seeds ({', '.join(seeds)}) [95% t interval over the seeds]"
        if len(seeds) > 1
        else f"one seed ({seeds[0]}); [95% bootstrap interval over the questions] where the score is a"
        " mean of per-question scores; ± the judge's standard error (alpaca-eval)"
    )
    return "\n".join(lines) + f"\n\nScores: {how}.\n\n" + judge_notes(results) + "\n"


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def judges_of(results: list[dict]) -> dict[str, list[str]]:
    """bench -> the judges that produced its results (more than one is shown, never hidden)."""
    out: dict[str, set[str]] = {}
    for r in results:
        out.setdefault(r["bench"], set()).add(r["judge"])
    return {b: sorted(j) for b, j in out.items()}


def judge_notes(results: list[dict]) -> str:
    """Who judged each benchmark, whether that is the paper's judge, and what could not be judged."""
    lines = ["Judges:"]
    for bench, names in judges_of(results).items():
        rows = [r for r in results if r["bench"] == bench]
        paper_judge = REGISTRY[bench].paper_judge_name
        if paper_judge is None:
            figure = REGISTRY[bench].paper_figure
            shown = (
                f"; the paper shows it in its {figure} only as a figure (its values are not in the text),"
                " so no paper number stands beside ours"
                if figure
                else ""
            )
            lines.append(f"- {bench}: {', '.join(names)}{shown}")
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
    results: list[dict], per_question: dict[int, dict[str, float]], paper_bases: dict[str, str | None]
) -> tuple[str, list[claims.ClaimRow]]:
    """The claims table (aft.eval.claims) from each result's per-question scores, per seed, with the
    paper's own difference where the benchmark has the paper's number for the compared score."""
    scores: dict[tuple[str, str, str, str], dict[str, dict[str, float]]] = {}
    for r in results:
        w = r["wildcards"]
        scores.setdefault((w["base"], r["bench"], w["variant"], w["mode"]), {})[seed_of(r)] = per_question[
            id(r)
        ]
    benches = {k[1] for k in scores}
    paper = {}
    for base, bench in {(k[0], k[1]) for k in scores}:
        key = REGISTRY[bench].claim_column.paper_key
        by_label = REGISTRY[bench].paper.get(paper_bases.get(base) or "", {})
        paper[(base, bench)] = {
            rm: by_label[row_label(*rm)][key] for rm in ROW_ORDER if key in by_label.get(row_label(*rm), {})
        }
    rows = claims.check_claims(scores, paper)
    measures = {b: REGISTRY[b].claim_column.title for b in benches}
    return claims.markdown(rows, measures, claims.unchecked_claims(scores)), rows


def panel(
    table: dict, base: str, bench: str, per_question: dict[int, dict[str, float]] | None
) -> tuple[str, list[tuple[str, Estimate]]]:
    """One plot panel: the column it shows and (row label, estimate) per row of the table. The headline
    score, or the claims' score where no row has the headline (AlpacaEval 2 without df_gamed.csv has no
    LC win rate, only the raw one)."""
    found = [(row_label(v, m), table.get((base, v, m), {}).get(bench)) for v, m in ROW_ORDER]
    bars: list[tuple[str, Estimate]] = []
    for col in (headline_column(bench), REGISTRY[bench].claim_column):
        bars = [(label, e) for label, rows in found if rows and (e := estimate(rows, col.key, per_question))]
        if bars:
            return col.title, bars
    return headline_column(bench).title, bars


def plot(results: list[dict], path, per_question: dict[int, dict[str, float]] | None = None) -> None:
    """Grouped bars: each base and benchmark's headline score per row of the table (mean over seeds),
    with its 95% interval as an error bar (see `estimate`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = collect(results)
    groups = sorted({(k[0], b) for k, v in table.items() for b in v})
    bases = sorted({base for base, _ in groups})
    benches = [b for b in REGISTRY if any(g[1] == b for g in groups)]  # the report's column order
    # a row per base, a panel per benchmark (Table 1's and Fig. 5's shape: direct vs w/ Agg. per variant)
    fig, axes = plt.subplots(
        len(bases), len(benches), figsize=(6 * len(benches), 4 * len(bases)), squeeze=False
    )
    for row, col in [(r, c) for r in range(len(bases)) for c in range(len(benches))]:
        if (bases[row], benches[col]) not in groups:
            axes[row][col].set_visible(False)
    for base, bench in groups:
        ax = axes[bases.index(base)][benches.index(bench)]
        title, bars = panel(table, base, bench, per_question)
        means = [e.mean for _, e in bars]
        errors = [
            [e.mean - e.lo if e.lo is not None else 0 for _, e in bars],
            [e.hi - e.mean if e.hi is not None else 0 for _, e in bars],
        ]
        ax.bar(
            range(len(bars)),
            means,
            yerr=errors,
            capsize=4,
            color=["#999", "#bbb", "#1f77b4", "#6baed6", "#d62728", "#fc9272"][: len(bars)],
        )
        ax.set_xticks(range(len(bars)), [label for label, _ in bars], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{title} (95% interval)")
        ax.set_title(f"{base}: {bench}")
        for i, (_, e) in enumerate(bars):  # the value above its error bar
            ax.text(
                i, e.hi if e.hi is not None else e.mean, f"{e.mean:.1f}", ha="center", va="bottom", fontsize=8
            )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
