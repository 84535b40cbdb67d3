"""The report's §6.1 section: each model's per-token loss of the aggregation targets given the query alone
and given the query with its proposals (aft.stages.measure_target_loss), the reduction with its paired
interval over the records, and the claim "the target is lower-perplexity with the proposals in context".

Pure: the measurement files' contents in, a table, claim rows and a plot out.
"""

from __future__ import annotations

from aft.eval import claims
from aft.eval.report import VARIANT_LABEL

MEASURE = "target_loss"  # the claims table's benchmark column for these rows
MODEL_LABEL = {"base": "base model", **VARIANT_LABEL}
CLAIM = "the target is lower-perplexity with the proposals in context"


def ordered(models: dict) -> list[str]:
    """The base first, then the variants in the paper's order."""
    order = list(MODEL_LABEL)
    return sorted(models, key=lambda m: (order.index(m) if m in order else len(order), m))


def check(measured: dict[str, dict]) -> list[claims.ClaimRow]:
    """Per base and model: loss given the query minus loss given query and proposals (per record, nats
    per token), a paired bootstrap over the records; reproduced when the interval lies above zero."""
    rows = []
    for base, result in sorted(measured.items()):
        for name in ordered(result["models"]):
            m = result["models"][name]
            query, both = m["per_record"]["query"], m["per_record"]["query_and_proposals"]
            iv = claims.paired_bootstrap(query, both)
            claim = claims.Claim(
                f"{MODEL_LABEL.get(name, name)}: {CLAIM}", (name, "query"), (name, "both"), "greater"
            )
            rows.append(
                claims.ClaimRow(base, MEASURE, claim, iv, None, claims.verdict(iv, "greater"), {"0": iv})
            )
    return rows


def markdown(measured: dict[str, dict], rows: list[claims.ClaimRow]) -> str:
    """The table (loss and perplexity per context, per model) and the claim rows."""
    if not measured:
        return (
            "Not measured in this experiment (config `target_loss` is null, or no model is trained here).\n"
        )
    lines = [
        "| base | model | records | loss given the query (ppl) | given query + proposals (ppl) |",
        "|---|---|---|---|---|",
    ]
    for base, result in sorted(measured.items()):
        for name in ordered(result["models"]):
            m = result["models"][name]
            lines.append(
                f"| {base} | {MODEL_LABEL.get(name, name)} | {len(result['records'])}"
                f" | {m['loss_query']:.3f} ({m['perplexity_query']:.2f})"
                f" | {m['loss_query_and_proposals']:.3f} ({m['perplexity_query_and_proposals']:.2f}) |"
            )
    text = (
        "Mean per-token loss (nats) of the off-policy aggregation targets, rendered as training renders them"
        " (the base's chat template); the claim compares each record's mean loss in the two contexts:\n\n"
    )
    return (
        text + "\n".join(lines) + "\n\n" + claims.markdown(rows, {MEASURE: "nats per target token"}, digits=3)
    )


def plot(measured: dict[str, dict], path) -> None:
    """Grouped bars: per base and model, the loss given the query and given query and proposals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bases = sorted(measured) or ["(none)"]
    fig, axes = plt.subplots(1, len(bases), figsize=(6 * len(bases), 4), squeeze=False)
    for ax, base in zip(axes[0], bases, strict=True):
        models = ordered(measured[base]["models"]) if base in measured else []
        for k, (key, label, colour) in enumerate(
            (
                ("loss_query", "given the query", "#999"),
                ("loss_query_and_proposals", "given query + proposals", "#1f77b4"),
            )
        ):
            values = [measured[base]["models"][m][key] for m in models]
            ax.bar([i + 0.4 * k for i in range(len(models))], values, width=0.4, color=colour, label=label)
        ax.set_xticks(
            [i + 0.2 for i in range(len(models))], [MODEL_LABEL.get(m, m) for m in models], fontsize=8
        )
        ax.set_ylabel("target loss (nats per token)")
        ax.set_title(f"{base}: §6.1 target loss" if models else "target loss not measured here")
        if models:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
