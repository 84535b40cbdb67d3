"""Best-of-N's reward models in the report: each trained one's accuracy on the preference pairs of
held-out queries (the chosen completion scored above the rejected one), with a 95% interval that
resamples queries, since a query's pairs share its completions. Open models from the hub are named
with what they are; their accuracy is their publisher's, not measured here.

Pure: the held-out rows train_reward_model writes in, a table out.
"""

from __future__ import annotations

from aft.eval import stats


def accuracy(rows: list[dict]) -> stats.Estimate:
    """Held-out pair accuracy in %, its interval over queries (a pair's id is `<query id>-<k>`)."""
    by_query: dict[str, list[float]] = {}
    for r in rows:
        by_query.setdefault(r["id"].rsplit("-", 1)[0], []).append(100.0 * r["correct"])
    return stats.cluster_interval(by_query)


def markdown(trained: dict[str, list[dict]], hub: dict[str, str]) -> str:
    """A row per reward model the strategies use: trained here (held-out accuracy) or from the hub."""
    if not trained and not hub:
        return ""
    lines = [
        "| reward model | source | held-out pairs (queries) | pair accuracy % [95% CI] |",
        "|---|---|---|---|",
    ]
    for name, rows in sorted(trained.items()):
        est = accuracy(rows)
        lines.append(
            f"| {name} | trained here (TRL RewardTrainer) | {len(rows)} ({est.n}) | {est.formatted()} |"
        )
    for name, model in sorted(hub.items()):
        lines.append(f"| {name} | {model} (hub) | not measured here | - |")
    return "\n".join(lines) + "\n"
