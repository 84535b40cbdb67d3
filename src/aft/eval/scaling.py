"""Inference scaling: each strategy's score against what it cost (generated tokens per question), and the
claims of the paper's second half checked with paired intervals: quality grows with the width and with
the depth of propose-and-aggregate, and an aggregating model beats majority vote and best-of-N with a
reward model at matched compute (generated tokens; the reward model's reading is reported beside).

Pure: per-question scores and costs in, points, claims and a plot out (aft.stages.make_report reads the
files). A strategy is (kind, width n, depth): direct is (direct, 1, 0), the built-in agg is
(propose_aggregate, inference.n, inference.num_aggregation), majority vote is (majority_vote, n, 0),
best-of-N is (best_of_n, n, 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from aft.eval import claims, stats
from aft.eval.claims import Claim
from aft.eval.report import VARIANT_LABEL

AGGREGATORS = ("aft_off", "aft_on")  # the variants trained to aggregate: the claims are theirs
BASELINES = {"majority_vote": "majority vote", "best_of_n": "best-of-N"}  # sampling baselines, by kind


@dataclass(frozen=True)
class StrategyShape:
    kind: str  # direct, propose_aggregate, majority_vote, best_of_n
    n: int  # width (samples per layer), votes or samples to choose from
    depth: int  # aggregation layers, counting the final one (0: no aggregation)

    @property
    def generations(self) -> int:
        """Generations per question and turn."""
        return self.n * self.depth + 1 if self.kind == "propose_aggregate" else self.n

    @property
    def family(self) -> str:
        """The curve a strategy lies on: propose-and-aggregate at one depth over widths, a vote or
        best-of-N over n."""
        if self.kind == "propose_aggregate":
            return f"agg depth {self.depth}"
        return BASELINES.get(self.kind, "direct")


@dataclass(frozen=True)
class Point:
    base: str
    bench: str
    variant: str
    mode: str
    shape: StrategyShape
    tokens: float  # generated tokens per question (mean over questions and seeds)
    computed_prompt_tokens: float  # prompt tokens per question not served from the prefix cache
    reward_tokens: float  # tokens per question a reward model read (best-of-N; 0 otherwise)
    score: stats.Estimate  # the claim score (the benchmark's per-question mean) with its 95% interval


Scores = dict[
    tuple[str, str, str, str], dict[str, dict[str, float]]
]  # (base, bench, variant, mode) -> seed -> id -> score
Costs = dict[tuple[str, str, str, str], dict[str, float]]  # the same key -> per-question cost means
# (a row without a recorded cost is left out of the points and the claims)


def cost_means(answer_rows: list[list[dict]]) -> dict[str, float] | None:
    """Per-question means of generated and computed prompt tokens over the answer files of a row's seeds
    (each answer row's `usage`, written by generate_answers); None when some row has none (answers made
    before cost accounting, whose job key is unchanged)."""
    rows = [r for rows in answer_rows for r in rows]
    if not rows or any("usage" not in r for r in rows):
        return None
    n = len(rows)
    return {
        "generated_tokens": sum(r["usage"]["generated_tokens"] for r in rows) / n,
        "computed_prompt_tokens": sum(
            r["usage"]["prompt_tokens"] - r["usage"]["cached_prompt_tokens"] for r in rows
        )
        / n,
        "reward_tokens": sum(r["usage"].get("reward_tokens", 0) for r in rows) / n,
    }


def points(scores: Scores, costs: Costs, shapes: dict[str, StrategyShape]) -> list[Point]:
    """One point per (base, bench, variant, strategy) evaluated: its cost and its score over the seeds
    (one seed: a bootstrap over the questions; several: a t interval over the seeds' means)."""
    out = []
    order = list(VARIANT_LABEL)  # the paper's order of the variants, then cost
    for key in sorted(scores, key=lambda k: (k[0], k[1], order.index(k[2]), shapes[k[3]].generations, k[3])):
        base, bench, variant, mode = key
        by_seed = scores[key]
        if not any(by_seed.values()) or key not in costs:
            continue  # nothing scored (every judgment unparsable), or no cost recorded
        if len(by_seed) == 1:
            (per_q,) = by_seed.values()
            est = stats.question_interval(per_q)
        else:
            est = stats.seed_interval([sum(v.values()) / len(v) for v in by_seed.values() if v])
        c = costs[key]
        out.append(
            Point(
                base,
                bench,
                variant,
                mode,
                shapes[mode],
                c["generated_tokens"],
                c["computed_prompt_tokens"],
                c.get("reward_tokens", 0.0),
                est,
            )
        )
    return out


def markdown(pts: list[Point], measures: dict[str, str]) -> str:
    """The strategies as a table: shape, generations and tokens per question, score with its interval."""
    if not pts:
        return "No strategy was evaluated.\n"
    lines = [
        "| base | benchmark | model | strategy | kind | width | depth | generations / question |"
        " generated tokens / question | computed prompt tokens / question | reward-model tokens / question"
        " | score [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pts:
        s = p.shape
        lines.append(
            f"| {p.base} | {p.bench} ({measures[p.bench]}) | {VARIANT_LABEL[p.variant]} | {p.mode} | {s.kind}"
            f" | {s.n} | {s.depth} | {s.generations} | {p.tokens:.1f} | {p.computed_prompt_tokens:.1f}"
            f" | {p.reward_tokens:.1f} | {p.score.formatted()} |"
        )
    return "\n".join(lines) + "\n"


def _extremes(
    modes: list[str], shapes: dict[str, StrategyShape], vary: str, fixed: str
) -> tuple[str, str] | None:
    """(larger, smaller) of the propose-and-aggregate modes that differ only in `vary` (n or depth), at the
    value of `fixed` shared by the most modes (ties: the larger value); None without two such modes."""
    agg = [m for m in modes if shapes[m].kind == "propose_aggregate"]
    groups: dict[int, list[str]] = {}
    for m in agg:
        groups.setdefault(getattr(shapes[m], fixed), []).append(m)
    wide = {k: v for k, v in groups.items() if len({getattr(shapes[m], vary) for m in v}) > 1}
    if not wide:
        return None
    at = max(wide, key=lambda k: (len(wide[k]), k))
    ordered = sorted(wide[at], key=lambda m: (getattr(shapes[m], vary), m))
    return ordered[-1], ordered[0]


def matched(agg_mode: str, rivals: list[str], tokens: dict[str, float]) -> str | None:
    """The baseline (vote or best-of-N) matched to an aggregation's compute: the cheapest that generated at
    least as many tokens per question (the baseline is never given less), else the most expensive one."""
    if not rivals:
        return None
    enough = [v for v in rivals if tokens[v] >= tokens[agg_mode]]
    return min(enough, key=lambda v: tokens[v]) if enough else max(rivals, key=lambda v: tokens[v])


def scaling_claims(
    scores: Scores, costs: Costs, shapes: dict[str, StrategyShape]
) -> list[tuple[str, str, Claim]]:
    """(base, bench, claim) for every scaling claim the grid can decide, for the variants trained to
    aggregate: width (widest vs narrowest at one depth), depth (deepest vs shallowest at one width), and
    propose-and-aggregate (the built-in agg, else the widest at the most-swept depth) against the majority
    vote and the best-of-N matched in generated tokens."""
    out = []
    for base, bench, variant in sorted({(k[0], k[1], k[2]) for k in scores}):
        if variant not in AGGREGATORS:
            continue
        label = VARIANT_LABEL[variant]
        modes = sorted(
            m for (b, be, v, m) in scores if (b, be, v) == (base, bench, variant) and (b, be, v, m) in costs
        )
        pick = {}
        for vary, fixed, word in (("n", "depth", "width"), ("depth", "n", "depth")):
            pair = _extremes(modes, shapes, vary, fixed)
            if pair is None:
                continue
            hi, lo = pair
            pick[word] = hi
            text = (
                f"{label} w/ Agg.: quality grows with {word} ({hi} > {lo};"
                f" {fixed} {getattr(shapes[hi], fixed)})"
            )
            out.append((base, bench, Claim(text, (variant, hi), (variant, lo), "greater")))
        agg = "agg" if "agg" in modes else pick.get("width")
        tokens = {m: costs[(base, bench, variant, m)]["generated_tokens"] for m in modes}
        for kind, name in BASELINES.items():
            rival = matched(agg, [m for m in modes if shapes[m].kind == kind], tokens) if agg else None
            if rival is not None:
                text = (
                    f"{label} w/ Agg. > {name} at matched tokens ({agg} {tokens[agg]:.0f} vs {rival}"
                    f" {tokens[rival]:.0f} generated tokens/question)"
                )
                out.append((base, bench, Claim(text, (variant, agg), (variant, rival), "greater")))
    return out


def check(scores: Scores, costs: Costs, shapes: dict[str, StrategyShape]) -> list[claims.ClaimRow]:
    """The scaling claims with their paired intervals and verdicts (the paper gives no numbers for them)."""
    rows = []
    for base, bench, claim in scaling_claims(scores, costs, shapes):
        hi, lo = scores[(base, bench, *claim.higher)], scores[(base, bench, *claim.lower)]
        seeds = [s for s in set(hi) & set(lo) if set(hi[s]) & set(lo[s])]
        if not seeds:
            continue
        hi, lo = {s: hi[s] for s in seeds}, {s: lo[s] for s in seeds}
        iv = claims.claim_interval(hi, lo)
        per_seed = {s: claims.paired_bootstrap(hi[s], lo[s]) for s in sorted(seeds, key=int)}
        rows.append(claims.ClaimRow(base, bench, claim, iv, None, claims.verdict(iv, claim.expect), per_seed))
    return rows


MARKERS = {"sft": "s", "aft_off": "o", "aft_on": "^"}
LINESTYLES = {"sft": ":", "aft_off": "-", "aft_on": "--"}


def plot(pts: list[Point], path, measures: dict[str, str]) -> None:
    """Score against generated tokens per question (log scale), a panel per base and benchmark: a curve per
    strategy family (propose-and-aggregate at each depth over its widths, vote and best-of-N over n) and
    variant, direct answers as single points; 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(p.base, p.bench) for p in pts})
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(10 * max(len(panels), 1), 5), squeeze=False)
    families = sorted({p.shape.family for p in pts})
    colours = {f: plt.get_cmap("tab10")(i) for i, f in enumerate(families)}
    for ax, (base, bench) in zip(axes[0], panels, strict=False):
        curves: dict[tuple[str, str], list[Point]] = {}
        for p in pts:
            if (p.base, p.bench) == (base, bench):
                curves.setdefault((p.variant, p.shape.family), []).append(p)
        for (variant, family), cp in sorted(curves.items()):
            cp.sort(key=lambda p: p.tokens)
            err = [
                [p.score.mean - p.score.lo if p.score.lo is not None else 0 for p in cp],
                [p.score.hi - p.score.mean if p.score.hi is not None else 0 for p in cp],
            ]
            ax.errorbar(
                [p.tokens for p in cp],
                [p.score.mean for p in cp],
                yerr=err,
                color=colours[family],
                marker=MARKERS.get(variant, "x"),
                linestyle=LINESTYLES.get(variant, "-") if len(cp) > 1 else "none",
                capsize=3,
                label=f"{VARIANT_LABEL[variant]}: {family}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("generated tokens per question (log scale)")
        ax.set_ylabel(f"{measures[bench]} (95% interval)")
        ax.set_title(f"{base}: {bench}")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no point hidden
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
