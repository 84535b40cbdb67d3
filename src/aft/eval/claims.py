"""The paper's claims, checked with intervals: each claim compares two rows of the table on the same
questions, by a paired bootstrap over the questions (over seeds and questions with several replicas,
aft.eval.stats), and its verdict says what the interval says.

Pure: per-question scores in, a table out (aft.stages.make_report reads the judgments files).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from aft.eval.stats import crossed_bootstrap

Row = tuple[str, str]  # (variant, mode)


@dataclass(frozen=True)
class Claim:
    text: str
    higher: Row  # the row the paper says is better (or, for "not_greater", not better)
    lower: Row
    expect: Literal["greater", "not_greater"]


# the paper's claims on its main table (arXiv 2501.11877); later issues add more
CLAIMS = (
    Claim("AFT-off-policy > SFT", ("aft_off", "direct"), ("sft", "direct"), "greater"),
    Claim("AFT-on-policy > SFT", ("aft_on", "direct"), ("sft", "direct"), "greater"),
    Claim("AFT-off-policy w/ Agg. > AFT-off-policy", ("aft_off", "agg"), ("aft_off", "direct"), "greater"),
    Claim("AFT-on-policy w/ Agg. > AFT-on-policy", ("aft_on", "agg"), ("aft_on", "direct"), "greater"),
    Claim("SFT w/ Agg. not better than SFT", ("sft", "agg"), ("sft", "direct"), "not_greater"),
)


@dataclass(frozen=True)
class Interval:
    diff: float  # mean paired difference (higher - lower), in the score's units
    lo: float
    hi: float
    n: int  # questions both rows have a score for


def paired_bootstrap(
    higher: dict[str, float],
    lower: dict[str, float],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Mean difference over the questions both sides scored, with a percentile bootstrap interval that
    resamples questions (the same questions for both sides)."""
    ids = sorted(set(higher) & set(lower))
    if not ids:
        raise ValueError("the two rows share no scored question")
    diffs = [higher[i] - lower[i] for i in ids]
    n = len(diffs)
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    lo = means[int(tail * resamples)]
    hi = means[min(resamples - 1, int((1 - tail) * resamples))]
    return Interval(sum(diffs) / n, lo, hi, n)


def verdict(iv: Interval, expect: str) -> str:
    """reproduced / contradicted / inconclusive, by where the interval lies relative to zero."""
    if expect == "greater":
        return "reproduced" if iv.lo > 0 else "contradicted" if iv.hi < 0 else "inconclusive"
    # "not better": contradicted when better beyond noise, reproduced when worse beyond noise
    return "contradicted" if iv.lo > 0 else "reproduced" if iv.hi < 0 else "inconclusive"


@dataclass(frozen=True)
class ClaimRow:
    base: str
    bench: str
    claim: Claim
    interval: Interval  # over every seed (seeds x questions), or over the questions of the one seed
    paper_diff: float | None
    verdict: str
    per_seed: dict[str, Interval]  # seed -> the paired bootstrap over that seed's questions


def claim_interval(higher: dict[str, dict[str, float]], lower: dict[str, dict[str, float]]) -> Interval:
    """One seed: the paired bootstrap over questions; several: seeds and questions resampled together."""
    seeds = sorted(set(higher) & set(lower), key=int)
    if not seeds:
        raise ValueError("the two rows share no seed")
    if len(seeds) == 1:
        return paired_bootstrap(higher[seeds[0]], lower[seeds[0]])
    diff, lo, hi, n = crossed_bootstrap([higher[s] for s in seeds], [lower[s] for s in seeds])
    return Interval(diff, lo, hi, n)


def compared(scores: dict[tuple[str, str, str, str], dict[str, dict[str, float]]]):
    """(base, bench, claim, higher, lower) for every claim whose two rows were evaluated, each side kept to
    the seeds in which some question was scored in both rows (a judge that scored nothing leaves none)."""
    for base, bench in sorted({(k[0], k[1]) for k in scores}):
        for claim in CLAIMS:
            hi, lo = scores.get((base, bench, *claim.higher)), scores.get((base, bench, *claim.lower))
            if hi is None or lo is None:
                continue
            seeds = [s for s in set(hi) & set(lo) if set(hi[s]) & set(lo[s])]
            yield base, bench, claim, {s: hi[s] for s in seeds}, {s: lo[s] for s in seeds}


def unchecked_claims(scores: dict[tuple[str, str, str, str], dict[str, dict[str, float]]]) -> list[str]:
    """The claims whose two rows were evaluated but share no scored question, as `base benchmark: claim`."""
    return [f"{base} {bench}: {claim.text}" for base, bench, claim, hi, _ in compared(scores) if not hi]


def check_claims(
    scores: dict[tuple[str, str, str, str], dict[str, dict[str, float]]],
    paper: dict[tuple[str, str], dict[Row, float]] | None = None,
) -> list[ClaimRow]:
    """Every claim whose two rows were evaluated, per base and benchmark.

    scores: (base, bench, variant, mode) -> seed -> question id -> score; paper: (base, bench) -> row ->
    the paper's number for the compared score, where the paper has one."""
    rows = []
    for base, bench, claim, hi, lo in compared(scores):
        if not hi:
            continue  # no question scored in both rows (unchecked_claims names it)
        numbers = (paper or {}).get((base, bench), {})
        iv = claim_interval(hi, lo)
        per_seed = {s: paired_bootstrap(hi[s], lo[s]) for s in sorted(hi, key=int)}
        paper_hi, paper_lo = numbers.get(claim.higher), numbers.get(claim.lower)
        paper_diff = None if paper_hi is None or paper_lo is None else round(paper_hi - paper_lo, 2)
        rows.append(ClaimRow(base, bench, claim, iv, paper_diff, verdict(iv, claim.expect), per_seed))
    return rows


def _interval(iv: Interval, digits: int = 1) -> str:
    return f"{iv.diff:+.{digits}f} [{iv.lo:+.{digits}f}, {iv.hi:+.{digits}f}]"


def markdown(
    rows: list[ClaimRow], measures: dict[str, str], unchecked: list[str] = (), digits: int = 1
) -> str:
    """The claims table: claim, measured difference with its 95% interval, the paper's, verdict; with
    several seeds, each seed's interval after it; then the claims no question could decide."""
    note = (
        "\nNot checked (no question has a score in both rows, e.g. every judgment unparsable): "
        + "; ".join(unchecked)
        + ".\n"
        if unchecked
        else ""
    )
    if not rows:
        return "No claim could be checked: the grid lacks the rows the claims compare.\n" + note
    lines = [
        "| base | benchmark | claim | measured difference [95% CI] | paper | verdict | seeds | questions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = "–" if r.paper_diff is None else f"{r.paper_diff:+.1f}"
        bench = f"{r.bench} ({measures[r.bench]})"
        lines.append(
            f"| {r.base} | {bench} | {r.claim.text} | {_interval(r.interval, digits)} | {paper} | {r.verdict}"
            f" | {len(r.per_seed)} | {r.interval.n} |"
        )
    if any(len(r.per_seed) > 1 for r in rows):
        seeds = sorted({s for r in rows for s in r.per_seed}, key=int)
        lines += [
            "",
            "Each seed alone (paired bootstrap over its questions):",
            "",
            "| base | benchmark | claim | " + " | ".join(f"seed {s}" for s in seeds) + " |",
            "|---|---|---|" + "---|" * len(seeds),
        ]
        for r in rows:
            cells = [_interval(r.per_seed[s], digits) if s in r.per_seed else "–" for s in seeds]
            lines.append(f"| {r.base} | {r.bench} | {r.claim.text} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + note
