"""Intervals for scores and differences over replicas (training seeds) and questions.

Pure: per-question scores in, (mean, low, high) out. Every interval is a 95% interval by default.
- one score, several seeds: a t interval over the seeds' scores (the replicas are the samples);
- one score, one seed: a percentile bootstrap over the questions;
- a paired difference over several seeds: a bootstrap that resamples seeds and questions together
  (the same questions for both sides and all seeds: Owen's pigeonhole bootstrap for a crossed design),
  so both the training noise and the question sample are in the interval. It is conservative: the
  seeds' spread already holds some question noise, which resampling the questions adds again. With one
  seed it is the paired bootstrap over questions (aft.eval.claims.paired_bootstrap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float | None  # None: no interval (one seed and no per-question scores)
    hi: float | None
    n: int  # the samples the interval is over (seeds or questions)
    over: str  # "seeds", "questions" or "clusters"

    def formatted(self, digits: int = 1) -> str:
        if self.lo is None or self.hi is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def seed_interval(values: list[float], level: float = 0.95) -> Estimate:
    """Mean of the seeds' scores with its t interval (no interval for one seed)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, None, None, n, "seeds")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n, "seeds")


def question_interval(
    scores: dict[str, float], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> Estimate:
    """Mean of per-question scores with a percentile bootstrap interval over the questions."""
    values = np.array([scores[k] for k in sorted(scores)], dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Estimate(float(values.mean()), float(lo), float(hi), len(values), "questions")


def crossed_bootstrap(
    higher: list[dict[str, float]],
    lower: list[dict[str, float]],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float, int]:
    """Mean paired difference over seeds x questions and its bootstrap interval, resampling the seeds
    and (jointly for all seeds) the questions that every seed of both sides scored.

    higher, lower: one {question id: score} per seed, in the same seed order.
    Returns (difference, low, high, questions)."""
    if len(higher) != len(lower) or not higher:
        raise ValueError(f"{len(higher)} seeds on one side and {len(lower)} on the other")
    ids = sorted(set.intersection(*(set(s) for s in [*higher, *lower])))
    if not ids:
        raise ValueError("the two rows share no question scored in every seed")
    diffs = np.array([[h[i] - lo[i] for i in ids] for h, lo in zip(higher, lower, strict=True)])
    k, n = diffs.shape
    rng = np.random.default_rng(seed)
    seed_counts = np.stack([np.bincount(rng.integers(0, k, k), minlength=k) for _ in range(resamples)])
    question_counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)])
    means = np.einsum("rk,kn,rn->r", seed_counts, diffs, question_counts) / (k * n)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(diffs.mean()), float(lo), float(hi), n


def cluster_interval(
    values: dict[str, list[float]], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> Estimate:
    """Mean over every item with a percentile bootstrap that resamples clusters (items of one cluster,
    e.g. the preference pairs of one query, are not independent). `values`: cluster -> its items."""
    keys = [k for k in sorted(values) if values[k]]
    if not keys:
        raise ValueError("no item to average")
    sums = np.array([sum(values[k]) for k in keys], dtype=float)
    counts = np.array([len(values[k]) for k in keys], dtype=float)
    rng = np.random.default_rng(seed)
    draws = np.stack(
        [np.bincount(rng.integers(0, len(keys), len(keys)), minlength=len(keys)) for _ in range(resamples)]
    )
    means = (draws @ sums) / (draws @ counts)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Estimate(float(sums.sum() / counts.sum()), float(lo), float(hi), len(keys), "clusters")
