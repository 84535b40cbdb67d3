"""The report's evidence beside the scores: what made it (provenance), where the scores come from (per
category), what it cost (per stage, from the jobs' metrics files), what the models wrote (a few
aggregations with their proposals) and how training went (loss curves).

Pure except `loss_curves`, which draws a PNG: metrics files' and answers' contents in, Markdown out.
"""

from __future__ import annotations

from aft.eval.registry import REGISTRY

# the stage metrics that count tokens read and written, by the name each stage gives them
TOKENS_IN = ("engine_prompt_tokens", "tokens_in", "judge_prompt_tokens")
TOKENS_OUT = ("engine_generated_tokens", "tokens_out", "judge_completion_tokens")


def provenance_section(experiment: dict, job: dict[str, str]) -> str:
    """Experiment, its config hash and seeds, and the commit, host, CPU and date of the report job."""
    rows = [
        ("experiment", f"`{experiment['name']}`: {experiment['description']}"),
        (
            "config hash",
            f"`{experiment['config_hash']}` (sha256 of the validated config without tracking and resources)",
        ),
        ("seeds", ", ".join(map(str, experiment["seeds"]))),
        ("commit", f"`{job.get('git_sha', 'unknown')}`"),
        ("host", f"{job.get('host', '?')} ({job.get('cpu', '?')}, {job.get('cpu_isa', '?')} kernels)"),
        ("date", job.get("date", "?")),
    ]
    versions = ", ".join(
        f"{k.removeprefix('version_')} {v}" for k, v in job.items() if k.startswith("version_")
    )
    rows.append(("libraries", versions or "?"))
    return "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def _category_value(value: float | dict | None, key: str) -> float | None:
    if isinstance(value, dict):  # MT-Bench: a category's turn1 / turn2 / avg
        return value.get(key)
    return value


def per_category_table(results: list[dict], row_label) -> str:
    """Each row's headline score by question category (mean over seeds), for benchmarks that have
    categories; an empty string when none has."""
    out = []
    for bench in REGISTRY:
        rows = [r for r in results if r["bench"] == bench and r.get("per_category")]
        if not rows:
            continue
        key = REGISTRY[bench].headline
        cats = sorted({c for r in rows for c in r["per_category"]})
        by_row: dict[tuple[str, str, str], list[dict]] = {}
        for r in rows:
            w = r["wildcards"]
            by_row.setdefault((w["base"], w["variant"], w["mode"]), []).append(r)
        out += [f"{bench} ({key}):", "", "| base | model | " + " | ".join(cats) + " |"]
        out.append("|---|---|" + "---|" * len(cats))
        for (base, variant, mode), rs in sorted(by_row.items(), key=lambda kv: _order(kv[0])):
            cells = []
            for c in cats:
                values = [_category_value(r["per_category"].get(c), key) for r in rs]
                values = [v for v in values if v is not None]
                cells.append(f"{sum(values) / len(values):.1f}" if values else "–")
            out.append(f"| {base} | {row_label(variant, mode)} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _order(row: tuple[str, str, str]) -> tuple:
    base, variant, mode = row
    builtin = ("direct", "agg")  # the paper's two rows first, then the named strategies by name
    rank = builtin.index(mode) if mode in builtin else len(builtin)
    return base, ("sft", "aft_off", "aft_on").index(variant), rank, mode


def costs_table(jobs: list[dict]) -> str:
    """Per stage: jobs, summed wall time and tokens read and written (what the metrics files say), in
    the order the stages first appear (the DAG's). A gather's tokens are its scatter jobs' sum, so
    they are counted once, at the scatter jobs."""
    scattered = {j["stage"].removesuffix("_part") for j in jobs if j["stage"].endswith("_part")}
    stages: dict[str, dict[str, float]] = {}
    for job in jobs:
        m = job["metrics"]
        row = stages.setdefault(job["stage"], {"jobs": 0, "wall": 0.0, "in": 0, "out": 0})
        row["jobs"] += 1
        row["wall"] += float(m.get("wall_time_s", 0.0))
        if job["stage"] not in scattered:
            row["in"] += sum(int(m.get(k, 0)) for k in TOKENS_IN)
            row["out"] += sum(int(m.get(k, 0)) for k in TOKENS_OUT)
    lines = ["| stage | jobs | wall time (s) | tokens in | tokens out |", "|---|---|---|---|---|"]
    for name, r in stages.items():
        lines.append(f"| {name} | {r['jobs']} | {r['wall']:.1f} | {r['in']:,} | {r['out']:,} |")
    total = sum(r["wall"] for r in stages.values())
    tokens = sum(r["in"] for r in stages.values()), sum(r["out"] for r in stages.values())
    jobs_n = sum(r["jobs"] for r in stages.values())
    lines.append(f"| all | {jobs_n} | {total:.1f} | {tokens[0]:,} | {tokens[1]:,} |")
    return "\n".join(lines) + "\n"


def samples_section(answers: list[dict], judgments: list[dict], questions: int = 3) -> str:
    """The first `questions` questions (by id) of one propose-and-aggregate row: the question, each
    layer's outputs (proposals, then aggregations) and the verdict."""
    verdicts = {j["id"]: j for j in judgments}
    out = []
    for a in sorted(answers, key=lambda a: a["id"])[:questions]:
        out.append(f"**{a['id']}**: {_one_line(a['turns'][-1])}")
        layers = (a.get("trace") or [None])[-1] or []  # the last turn's layers (agg mode)
        for depth, layer in enumerate(layers[:-1]):  # the last layer is the final answer
            name = "proposals" if depth == 0 else f"aggregation layer {depth}"
            out.append(f"- {name}: " + " | ".join(f"`{_one_line(t)}`" for t in layer))
        out.append(f"- final: `{_one_line(a['outputs'][-1])}`")
        out.append(f"- verdict: {verdict_line(verdicts.get(a['id']))}")
        out.append("")
    return "\n".join(out)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split()).replace("`", "'")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def verdict_line(j: dict | None, longest: int = 60) -> str:
    """A judgment row's verdict on one line: its short fields (the preference, the score, the extracted
    answer), not the texts the judge read (AlpacaEval's rows carry the instruction and both outputs)."""
    if j is None:
        return "not judged"
    shown = {
        k: v
        for k, v in j.items()
        if k not in ("id", "judgment", "prompt", "output") and not (isinstance(v, str) and len(v) > longest)
    }
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def loss_curves(jobs: list[dict], path) -> int:
    """One panel per base: each trained variant's training loss against the tokens it has seen (per step
    where a run logged no token count), one line per seed. Returns
    the curves drawn (0: nothing was trained here, e.g. released checkpoints; the plot says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [j for j in jobs if j["stage"] == "train_model" and j.get("history")]
    bases = sorted({j["wildcards"]["base"] for j in runs}) or ["(none)"]
    fig, axes = plt.subplots(1, len(bases), figsize=(6 * len(bases), 4), squeeze=False)
    colors = {"sft": "#777", "aft_off": "#1f77b4", "aft_on": "#d62728"}
    for ax, base in zip(axes[0], bases):
        for j in sorted((j for j in runs if j["wildcards"]["base"] == base), key=lambda j: _order_run(j)):
            w = j["wildcards"]
            rows = [r for r in j["history"] if "loss" in r]
            by_tokens = all("num_tokens" in r for r in rows)
            ax.plot(
                [r["num_tokens"] if by_tokens else r["step"] for r in rows],
                [r["loss"] for r in rows],
                color=colors.get(w["variant"], "k"),
                alpha=0.8,
                label=f"{w['variant']} seed {w.get('seed', '?')}",
            )
        # against tokens seen (TRL's num_tokens), so SFT and AFT, whose examples differ in length, compare
        # at equal training compute (§6.1); by optimizer step where a run did not log its tokens
        tokens = all("num_tokens" in r for j in runs for r in j["history"] if "loss" in r)
        ax.set_xlabel("tokens seen (prompt and completion)" if runs and tokens else "optimizer step")
        ax.set_ylabel("training loss (log scale)")
        if runs:
            ax.set_yscale("log")  # the first steps' loss is ten times the rest
        ax.set_title(f"{base}: training loss" if runs else "no model was trained in this experiment")
        if runs:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(runs)


def _order_run(job: dict) -> tuple:
    w = job["wildcards"]
    return ("sft", "aft_off", "aft_on").index(w["variant"]), int(w.get("seed", 0))
