"""Stage `make_report`: an experiment's report in reports/<experiment>/: the results table (every score
with its 95% interval) and the paper's claims checked, provenance, per-category scores, samples of
aggregation, the inference strategies against their cost with the scaling claims and best-of-N's
reward models, the §6.1 target losses, costs per stage
(Markdown); the collected results (JSON); the scores plot with error bars, the scaling curves and the
loss curves (PNG); and artifacts.json, every job of the experiment with its key and the content
fingerprint of its outputs (what aft.tools.compare reads).

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.make_report --config CFG --experiment JSON --results JSON [JSON ...] \
        --judgments JSONL [JSONL ...] --answers JSONL [JSONL ...] --jobs METRICS [METRICS ...] \
        --table MD --html HTML --plot PNG --curves PNG --scaling PNG --json JSON --artifacts JSON \
        [--target-loss JSON ...] --target-loss-plot PNG [--reward-heldout NAME=FILE ...] \
        [--reward-hub NAME=MODEL ...] --metrics FILE
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from aft.eval import aggregation_learning, claims, evidence, reward_models, scaling
from aft.eval.registry import REGISTRY
from aft.eval.report import (
    claims_section,
    headline_metrics,
    markdown_table,
    plot,
    question_scores_of,
    row_label,
)
from aft.pipeline.artifacts import job_record
from aft.pipeline.config import ReportConfig, StrategyShapes
from aft.pipeline.io import atomic_write_text, read_json, read_jsonl, write_json
from aft.pipeline.stage import Outcome, named_pairs, run_stage
from aft.pipeline.tracking import provenance

SAMPLE_QUESTIONS = 3


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, help="JSON: name, description, config_hash, seeds")
    p.add_argument("--results", type=Path, nargs="+", required=True)
    p.add_argument(
        "--judgments", type=Path, nargs="+", required=True, help="per-question judgments, as --results"
    )
    p.add_argument("--answers", type=Path, nargs="+", required=True, help="the judged answers, as --results")
    p.add_argument(
        "--jobs", type=Path, nargs="*", default=[], help="metrics.json of every job of the experiment"
    )
    p.add_argument("--table", type=Path, required=True)
    p.add_argument("--html", type=Path, required=True, help="the same report as an HTML page")
    p.add_argument("--plot", type=Path, required=True)
    p.add_argument("--curves", type=Path, required=True, help="the loss curves (PNG)")
    p.add_argument("--scaling", type=Path, required=True, help="score against generated tokens (PNG)")
    p.add_argument(
        "--target-loss",
        type=Path,
        nargs="*",
        default=[],
        help="measure_target_loss's losses.json, one a base",
    )
    p.add_argument("--target-loss-plot", type=Path, required=True, help="the §6.1 target losses (PNG)")
    p.add_argument(
        "--reward-heldout", nargs="*", default=[], help="NAME=FILE: a trained reward model's held-out pairs"
    )
    p.add_argument("--reward-hub", nargs="*", default=[], help="NAME=MODEL: a reward model from the hub")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--artifacts", type=Path, required=True)


def markdown_html(text: str, title: str) -> str:
    """The Markdown report as a standalone HTML page: what `snakemake --report` shows inline."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(text)
    style = (
        "body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>AFT results: {title}</title>"
        f"<style>{style}</style></head><body>\n{body}</body></html>\n"
    )


def sample_row(results: list[dict]) -> int | None:
    """The result whose answers the report samples: the first seed's aggregation of the first AFT
    variant there is (else of any variant), on the first benchmark."""
    agg = [i for i, r in enumerate(results) if r["wildcards"]["mode"] == "agg"]
    order = {"aft_off": 0, "aft_on": 1, "sft": 2}
    agg.sort(
        key=lambda i: (order[results[i]["wildcards"]["variant"]], int(results[i]["wildcards"].get("seed", 0)))
    )
    return agg[0] if agg else None


def scaling_inputs(
    results: list[dict], per_question: dict[int, dict[str, float]], answer_files: list[Path]
) -> tuple[scaling.Scores, scaling.Costs]:
    """Per (base, bench, variant, mode): the per-question scores by seed, and the per-question costs."""
    scores: scaling.Scores = {}
    answers: dict[tuple[str, str, str, str], list[list[dict]]] = {}
    for r, f in zip(results, answer_files, strict=True):
        w = r["wildcards"]
        key = (w["base"], r["bench"], w["variant"], w["mode"])
        scores.setdefault(key, {})[w.get("seed", "0")] = per_question[id(r)]
        answers.setdefault(key, []).append(read_jsonl(f))
    costs = {k: scaling.cost_means(v) for k, v in answers.items()}
    return scores, {k: c for k, c in costs.items() if c is not None}


def scaling_section(
    results: list[dict],
    per_question: dict[int, dict[str, float]],
    answer_files: list[Path],
    shapes: StrategyShapes,
    plot_path: Path,
) -> tuple[str, list[claims.ClaimRow]]:
    """The strategies' scores against their cost (table and plot) and the scaling claims."""
    scores, costs = scaling_inputs(results, per_question, answer_files)
    by_mode = {m: scaling.StrategyShape(s.kind, s.n, s.depth) for m, s in shapes.root.items()}
    measures = {r["bench"]: REGISTRY[r["bench"]].claim_column.title for r in results}
    pts = scaling.points(scores, costs, by_mode)
    uncosted = sorted(" ".join(k) for k in scores if k not in costs)
    scaling.plot(pts, plot_path, measures)
    rows = scaling.check(scores, costs, by_mode)
    text = (
        "Each strategy's claim score against what it cost per question (generated tokens, prompt tokens"
        " computed rather than served from the prefix cache, and tokens a reward model read); width ="
        " samples per layer (or the samples voted on or chosen from), depth = aggregation layers counting"
        " the final one. Plot: "
        f"{plot_path.name}.\n\n" + scaling.markdown(pts, measures)
    )
    if uncosted:
        text += (
            "\nLeft out, their answers carry no cost record (made before cost accounting; rerun those"
            f" generate_answers jobs with --forcerun): {'; '.join(uncosted)}.\n"
        )
    if rows:
        text += (
            "\nThe scaling claims (the ACL version's abstract; no numbers in its text), for the variants"
            " trained to aggregate; paired bootstrap, 95% intervals:\n\n" + claims.markdown(rows, measures)
        )
    return text, rows


def run(
    rc: ReportConfig,
    shapes: StrategyShapes,
    experiment: dict,
    result_files: list[Path],
    judgment_files: list[Path],
    answer_files: list[Path],
    job_files: list[Path],
    target_loss_files: list[Path],
    out: dict[str, Path],
    reward_heldout: dict[str, Path] | None = None,
    reward_hub: dict[str, str] | None = None,
) -> dict:
    """Write the report's files; returns its numbers (verdict counts, headline scores)."""
    if not len(result_files) == len(judgment_files) == len(answer_files):
        raise SystemExit(
            f"{len(result_files)} --results, {len(judgment_files)} --judgments and {len(answer_files)}"
            " --answers: one of each per result"
        )
    results = [read_json(f) for f in result_files]
    judgments = [read_jsonl(f) for f in judgment_files]
    per_question = question_scores_of(results, judgments)
    jobs = [(f, read_json(f)) for f in job_files]
    claims_md, claim_rows = claims_section(results, per_question, rc.paper_bases)
    scaling_md, scaling_rows = scaling_section(results, per_question, answer_files, shapes, out["scaling"])
    trained_rms = {name: read_jsonl(f) for name, f in (reward_heldout or {}).items()}
    rm_table = reward_models.markdown(trained_rms, reward_hub or {})
    if rm_table:
        scaling_md += (
            "\nBest-of-N's reward models: a trained one's accuracy on the preference pairs of held-out"
            " queries (chosen scored above rejected; the interval resamples queries):\n\n" + rm_table
        )
    measured = {read_json(f)["base"]: read_json(f) for f in target_loss_files}
    learning_rows = aggregation_learning.check(measured)
    aggregation_learning.plot(measured, out["target_loss_plot"])
    job_metrics = [m for _, m in jobs]
    out["curves"].parent.mkdir(parents=True, exist_ok=True)
    curves = evidence.loss_curves(job_metrics, out["curves"])
    sample = sample_row(results)
    parts = [
        f"# AFT results: {experiment['name']}\n",
        f"{experiment['description']}\n",
        "## Scores\n",
        markdown_table(results, rc.paper_bases, rc.paper_table, per_question),
        "## The paper's claims (paired bootstrap, 95% intervals)\n",
        claims_md,
        "\nreproduced: the interval lies on the claimed side of zero; contradicted: on the other side;"
        " inconclusive: it includes zero. With several seeds the interval resamples seeds and questions"
        " together.\n",
        "## Inference strategies: score against compute\n",
        scaling_md,
        "## Aggregation learning (§6.1): target loss with and without the proposals\n",
        aggregation_learning.markdown(measured, learning_rows),
        f"Plot: {out['target_loss_plot'].name}; training loss against tokens seen: {out['curves'].name}.\n",
        "## Per category\n",
        evidence.per_category_table(results, row_label) or "No benchmark here has question categories.\n",
    ]
    if sample is not None:
        r = results[sample]
        w = r["wildcards"]
        parts += [
            f"## Samples: {row_label(w['variant'], 'agg')}, seed {w.get('seed', '?')}, {r['bench']}\n",
            evidence.samples_section(read_jsonl(answer_files[sample]), judgments[sample], SAMPLE_QUESTIONS),
        ]
    parts += [
        "## Costs (from the jobs' metrics files)\n",
        evidence.costs_table(job_metrics),
        f"\n## Provenance\n\n{evidence.provenance_section(experiment, provenance())}",
        f"\nLoss curves: {out['curves'].name} ({curves} training runs). Every job's key and output"
        f" fingerprints: {out['artifacts'].name} (python -m aft.tools.compare).\n",
    ]
    text = "\n".join(parts)
    atomic_write_text(out["table"], text)
    atomic_write_text(out["html"], markdown_html(text, experiment["name"]))
    write_json(
        out["json"],
        {
            "experiment": experiment,
            "results": results,
            "claims": [
                {
                    "base": c.base,
                    "bench": c.bench,
                    "claim": c.claim.text,
                    "difference": c.interval.diff,
                    "lo": c.interval.lo,
                    "hi": c.interval.hi,
                    "questions": c.interval.n,
                    "seeds": sorted(c.per_seed, key=int),
                    "paper": c.paper_diff,
                    "verdict": c.verdict,
                }
                for c in [*claim_rows, *scaling_rows, *learning_rows]
            ],
        },
    )
    write_json(
        out["artifacts"], {"experiment": experiment["name"], "jobs": [job_record(f, m) for f, m in jobs]}
    )
    plot(results, out["plot"], per_question)
    verdicts = [c.verdict for c in [*claim_rows, *scaling_rows, *learning_rows]]
    counts = {f"claims_{v}": verdicts.count(v) for v in ("reproduced", "contradicted", "inconclusive")}
    return {"n_results": len(results), "n_jobs": len(jobs)} | counts | headline_metrics(results)


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        out = {
            "table": a.table,
            "html": a.html,
            "plot": a.plot,
            "curves": a.curves,
            "scaling": a.scaling,
            "target_loss_plot": a.target_loss_plot,
            "json": a.json,
            "artifacts": a.artifacts,
        }
        metrics = run(
            cfg["report"],
            cfg["strategies"],
            json.loads(a.experiment),
            a.results,
            a.judgments,
            a.answers,
            a.jobs,
            a.target_loss,
            out,
            {k: Path(v) for k, v in named_pairs(a.reward_heldout, "--reward-heldout").items()},
            named_pairs(a.reward_hub, "--reward-hub", "MODEL"),
        )
        files = [a.table, a.html, a.plot, a.curves, a.scaling, a.target_loss_plot, a.json, a.artifacts]
        return Outcome(metrics, files)

    models = {"report": ReportConfig, "strategies": StrategyShapes}
    run_stage("make_report", __doc__, argv, arguments, models, body)


if __name__ == "__main__":
    main()
