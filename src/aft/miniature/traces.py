"""What the aggregation layers did: per-layer accuracy, majority vote and copying, from the traces
that generate_answers writes (miniature: answers checkable by exact match).

Used to tell "the aggregator has nothing to work with" (no correct proposal, errors shared) from
"the aggregator does not use what it gets" (a right majority it fails to copy).
"""

from __future__ import annotations

from collections import Counter

from aft.miniature.world import extract_answer


def _majority(answers: list[str | None]) -> tuple[str | None, int]:
    counts = Counter(a for a in answers if a is not None)
    return counts.most_common(1)[0] if counts else (None, 0)


def trace_stats(answers: list[dict], gold: dict[str, str]) -> dict[str, float]:
    """Percentages over queries (last turn): per layer the mean proposal accuracy, any-correct and
    majority-vote accuracy; then how the first aggregation layer uses the proposals it got."""
    n = len(answers)
    st: Counter = Counter()
    for a in answers:
        g = gold[a["id"]]
        layers = [[extract_answer(t) for t in layer] for layer in a["trace"][-1]]
        for i, got in enumerate(layers):
            st[f"layer{i}_accuracy"] += sum(x == g for x in got) / len(got)
            st[f"layer{i}_any_correct"] += g in got
            st[f"layer{i}_majority_vote"] += _majority(got)[0] == g
        if len(layers) < 2:
            continue
        props, agg = layers[0], layers[1]
        st["agg_answer_among_proposals"] += sum(x in props for x in agg) / len(agg)
        top, votes = _majority(props)
        if votes >= len(props) // 2 + 1:
            st["queries_with_strict_majority"] += 1
            st["agg_copies_strict_majority"] += sum(x == top for x in agg) / len(agg)
        if g in props:
            st["queries_with_a_correct_proposal"] += 1
            st["agg_correct_given_a_correct_proposal"] += sum(x == g for x in agg) / len(agg)
    out = {k: 100.0 * v / n for k, v in st.items() if not k.startswith(("agg_copies", "agg_correct_given"))}
    for key, base in (
        ("agg_copies_strict_majority", "queries_with_strict_majority"),
        ("agg_correct_given_a_correct_proposal", "queries_with_a_correct_proposal"),
    ):
        if st[base]:
            out[key] = 100.0 * st[key] / st[base]
    return dict(sorted(out.items()))
