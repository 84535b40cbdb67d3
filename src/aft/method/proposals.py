"""Proposal construction: UltraFeedback normalisation (off-policy) and ICL sampling (on-policy).

A proposal record, the one schema both builders write:
    {"id", "messages": [...], "proposals": [str], "proposal_models": [str], "ratings": [float | None]}
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Callable

ASPECT_KEYS = {"fine_grained": "fine-grained_score", "overall": "overall_score"}


def query_id(text: str) -> str:
    """A stable id for a query (UltraFeedback rows carry none)."""
    return "q" + hashlib.sha1(text.encode()).hexdigest()[:12]


def rating_of(completion: dict, rating: str) -> float | None:
    value = completion.get(ASPECT_KEYS[rating])
    if value in (None, "N/A", ""):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def shuffled(items: list, seed: int, key: str) -> list:
    """A deterministic per-example shuffle: the same (seed, key) always gives the same order."""
    out = list(items)
    random.Random(f"{seed}:{key}").shuffle(out)
    return out


def normalise_ultrafeedback(
    rows: list[dict], num_proposals: int, rating: str, seed: int, drop_duplicates: bool = True
) -> tuple[list[dict], Counter]:
    """UltraFeedback rows -> proposal records, with counts of everything dropped and why.

    Empty completions, and with `drop_duplicates` repeated ones, are dropped; a query left with
    fewer than `num_proposals` completions is dropped; the kept proposals are shuffled per example
    with `seed`.
    """
    counts: Counter = Counter(rows_in=len(rows))
    seen: set[str] = set()
    records = []
    for row in rows:
        instruction, completions = row.get("instruction"), row.get("completions")
        # a value of the wrong type is a schema error, counted as such (a missing key is sparsity)
        if not isinstance(instruction, str | None):
            counts["dropped_schema_instruction_not_string"] += 1
            continue
        if not isinstance(completions, list | None):
            counts["dropped_schema_completions_not_list"] += 1
            continue
        query = (instruction or "").strip()
        if not query:
            counts["dropped_empty_query"] += 1
            continue
        if query in seen:
            counts["dropped_duplicate_query"] += 1
            continue
        seen.add(query)
        kept, texts = [], set()
        for c in completions or []:
            if not isinstance(c, dict):
                counts["completions_dropped_schema_not_object"] += 1
                continue
            if not isinstance(c.get("response"), str | None):
                counts["completions_dropped_schema_response_not_string"] += 1
                continue
            text = (c.get("response") or "").strip()
            if not text:
                counts["completions_dropped_empty"] += 1
            elif drop_duplicates and text in texts:
                counts["completions_dropped_duplicate"] += 1
            else:
                texts.add(text)
                r = rating_of(c, rating)
                counts["ratings_missing"] += r is None
                kept.append((text, c.get("model", "unknown"), r))
        if len(kept) < num_proposals:
            counts["dropped_too_few_completions"] += 1
            continue
        qid = query_id(query)
        kept = shuffled(kept, seed, qid)[:num_proposals]
        records.append(
            {
                "id": qid,
                "messages": [{"role": "user", "content": query}],
                "proposals": [k[0] for k in kept],
                "proposal_models": [k[1] for k in kept],
                "ratings": [k[2] for k in kept],
            }
        )
    counts["rows_out"] = len(records)
    return records, counts


def icl_prompt(template: str, query: str) -> str:
    """The URIAL-style prompt: the file's preamble and demonstrations, the query at `{query}`."""
    if "{query}" not in template:
        raise ValueError("the ICL prompt file must contain the marker {query}")
    return template.replace("{query}", query)


MIN_WORDS_WORD_REPEAT = 8  # shorter samples are never called degenerate by word counts
MIN_WORDS_NGRAM_REPEAT = 32
NGRAM = 4


def degenerate_reason(text: str, max_repeat_fraction: float = 0.5) -> str | None:
    """Why a stripped base-model sample is unusable: "empty", "degenerate", or None when it is usable.

    Degenerate: one word makes up more than `max_repeat_fraction` of a sample of 8+ words, or more than
    that share of a 32+-word sample's 4-grams are repeats (a looping continuation)."""
    if not text:
        return "empty"
    words = text.split()
    top_share = Counter(words).most_common(1)[0][1] / len(words)
    if len(words) >= MIN_WORDS_WORD_REPEAT and top_share > max_repeat_fraction:
        return "degenerate"
    if len(words) >= MIN_WORDS_NGRAM_REPEAT:
        grams = [tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]
        if 1 - len(set(grams)) / len(grams) > max_repeat_fraction:
            return "degenerate"
    return None


def trim_sample(text: str, suffix: str = "") -> str:
    """Strip whitespace and, when given, the ICL format's closing marker (e.g. a fence) at the end."""
    text = text.strip()
    if suffix and text.endswith(suffix):
        text = text[: -len(suffix)].rstrip()
    return text


def clean_sample(text: str, max_repeat_fraction: float = 0.5, suffix: str = "") -> str | None:
    """Strip a base-model sample; None for an empty or degenerate (repeating) one."""
    text = trim_sample(text, suffix)
    return None if degenerate_reason(text, max_repeat_fraction) else text


def collect_samples(
    n_queries: int,
    sample: Callable[[list[int], int], list[list[str]]],
    num_proposals: int,
    resample_rounds: int,
    suffix: str = "",
) -> tuple[list[list[str]], Counter]:
    """Clean samples per query, re-sampling queries left short of `num_proposals` clean ones.

    `sample(indices, round)` returns the raw samples of those queries (round 0 = all queries; round
    r > 0 = the queries still short after round r - 1). Counts say what was dropped and why."""
    kept: list[list[str]] = [[] for _ in range(n_queries)]
    counts: Counter = Counter()
    pending = list(range(n_queries))
    for round_ in range(resample_rounds + 1):
        if not pending:
            break
        if round_:
            counts["resampled_queries"] += len(pending)
        for i, outs in zip(pending, sample(pending, round_), strict=True):
            for raw in outs:
                counts["samples_total"] += 1
                text = trim_sample(raw, suffix)
                reason = degenerate_reason(text)
                if reason:
                    counts[f"samples_dropped_{reason}"] += 1
                    counts["samples_dropped"] += 1
                else:
                    kept[i].append(text)
        pending = [i for i in pending if len(kept[i]) < num_proposals]
    return kept, counts


def on_policy_records(
    queries: list[dict], samples: list[list[str]], num_proposals: int, seed: int
) -> tuple[list[dict], Counter]:
    """Samples -> proposal records (`num_proposals` of a query's clean samples, chosen and ordered by a
    per-query shuffle with `seed`); queries without enough clean samples are dropped."""
    counts: Counter = Counter(queries_in=len(queries))
    records = []
    for q, outs in zip(queries, samples, strict=True):
        cleaned = [c for c in map(clean_sample, outs) if c is not None]
        counts["samples_dropped"] += len(outs) - len(cleaned)
        if len(cleaned) < num_proposals:
            counts["dropped_too_few_samples"] += 1
            continue
        records.append(
            {
                "id": q["id"],
                "messages": q["messages"],
                "proposals": shuffled(cleaned, seed, q["id"])[:num_proposals],
                "proposal_models": ["base"] * num_proposals,
                "ratings": [None] * num_proposals,
            }
        )
    counts["queries_out"] = len(records)
    return records, counts
