"""Stage `generate_answers`: a trained model answers a benchmark with an inference strategy: direct,
propose-and-aggregate (the built-in `agg`, or a named strategy at its own width and depth) or majority
vote (a named strategy); each answer row records what it cost (`usage`: requests, prompt tokens, of
which prefix-cached, generated tokens).

Multi-turn questions (MT-Bench) are answered turn by turn: turn 2 is asked after the turn-1 final
answer, and with propose-and-aggregate every turn is proposed and aggregated over the conversation so
far. MT-Bench answers follow FastChat's settings (`inference.mt_bench`): the answer's temperature by
category, and its token budget.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.generate_answers --config CFG --mode NAME --model DIR_OR_HUB_ID \
        [--revision REV] --bench JSONL --bench-name NAME --out JSONL --metrics FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import time
from pathlib import Path

from aft.eval.registry import REGISTRY
from aft.gen.engine import VLLMEngine
from aft.method.aggregate import AggSettings, VoteFn, answer_dialogues, answerer
from aft.method.interface import MeteredEngine, Usage
from aft.pipeline.config import BUILTIN_MODES, InferenceConfig, Strategy, StrategySection
from aft.pipeline.io import read_jsonl, write_jsonl
from aft.pipeline.stage import Outcome, read_text_input, run_stage


def settings(ic: InferenceConfig) -> AggSettings:
    return AggSettings(
        n=ic.n,
        num_aggregation=ic.num_aggregation,
        temperature=ic.temperature,
        top_p=ic.top_p,
        final_temperature=ic.final_temperature,
        final_top_p=ic.final_top_p,
        max_tokens=ic.max_tokens,
    )


def answer_settings(ic: InferenceConfig, bench: str, category: str) -> AggSettings:
    """The settings one question is answered with: the inference section's, and for MT-Bench FastChat's
    answer temperature by category (the final layer, or direct mode) and token budget (every layer)."""
    s = settings(ic)
    if bench != "mt_bench":
        return s
    temps = ic.mt_bench.temperature_by_category
    if category not in temps:
        raise ValueError(
            f"MT-Bench category {category!r} has no temperature in inference.mt_bench.temperature_by_category"
            f" (it has {sorted(temps)})"
        )
    return dataclasses.replace(s, final_temperature=temps[category], max_tokens=ic.mt_bench.max_new_tokens)


def group_by_settings(
    rows: list[dict], ic: InferenceConfig, bench: str
) -> list[tuple[AggSettings, list[int]]]:
    """Rows that share answer settings, in first-seen order: one batched pass of the engine each."""
    groups: dict[AggSettings, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(answer_settings(ic, bench, r.get("category", "")), []).append(i)
    return list(groups.items())


def strategy_kind(mode: str, strategy: Strategy | None) -> str:
    """The kind of strategy a mode names: the built-in direct and agg, or its `strategy` section's."""
    if strategy is not None:
        return strategy.kind
    if mode not in BUILTIN_MODES:
        raise SystemExit(
            f"--mode {mode!r} is not built in {BUILTIN_MODES}: its --config needs a strategy section"
        )
    return {"direct": "direct", "agg": "propose_aggregate"}[mode]


def vote_extractor(kind: str, bench: str) -> VoteFn | None:
    """The benchmark's answer extraction, for a majority vote (before the engine starts: a bad pair costs
    no GPU time)."""
    if kind != "majority_vote":
        return None
    if not REGISTRY[bench].votable:
        raise SystemExit(f"majority vote on {bench!r}: it has no extractable answer to vote on")
    return importlib.import_module(REGISTRY[bench].module).vote_answers


def answer_rows(
    rows: list[dict],
    ic: InferenceConfig,
    bench: str,
    kind: str,
    engine: MeteredEngine,
    template: str,
    answers_of: VoteFn | None = None,
    barrier_free: bool = False,
) -> tuple[list[list[str]], list, list[Usage]]:
    """Every row's answers (one per turn), traces and cost, each settings group in one batched pass.
    `barrier_free`: propose-and-aggregate with each question's layers seeded from inference.seed and
    advanced on their own (the engine's run_programs)."""
    answers: list = [None] * len(rows)
    traces: list = [None] * len(rows)
    usage: list = [None] * len(rows)
    for s, idx in group_by_settings(rows, ic, bench):
        group = answer_dialogues(
            [rows[i]["turns"] for i in idx],
            answerer(kind, engine, s, template, answers_of, ic.seed if barrier_free else None),
        )
        for i, a, t, u in zip(idx, *group, strict=True):
            answers[i], traces[i], usage[i] = a, t, u
    return answers, traces, usage


def usage_metrics(usage: list[Usage]) -> dict[str, float]:
    """Per-question means of the cost, for the scaling curves (tokens per question)."""
    n = max(len(usage), 1)
    total = sum(usage, Usage())
    return {
        "generated_tokens_per_question": total.generated_tokens / n,
        "prompt_tokens_per_question": total.prompt_tokens / n,
        "computed_prompt_tokens_per_question": (total.prompt_tokens - total.cached_prompt_tokens) / n,
        "requests_per_question": total.requests / n,
    }


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", required=True, help="the strategy: direct, agg, or a key of `strategies`")
    p.add_argument("--model", required=True, help="a trained model folder or a hub id")
    p.add_argument("--revision", default=None, help="pinned hub revision of --model")
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--bench-name", required=True, help="exact_match, alpaca_eval2 or mt_bench")
    p.add_argument("--out", type=Path, required=True)


def run(
    ic: InferenceConfig,
    kind: str,
    model: str,
    revision: str | None,
    bench: Path,
    bench_name: str,
    out: Path,
    barrier_free: bool = False,
) -> dict:
    """Answer every question of `bench` and write them with their traces and costs; returns the engine's
    cost. `barrier_free`: propose-and-aggregate without a barrier between layers (seeded per question)."""
    started = time.time()
    rows = read_jsonl(bench)
    template = read_text_input("inference.template_file", ic.template_file)  # before the engine starts
    answers_of = vote_extractor(kind, bench_name)
    engine = VLLMEngine(model, ic.engine, seed=ic.seed, revision=revision, per_request_seeds=barrier_free)
    answers, traces, usage = answer_rows(
        rows, ic, bench_name, kind, engine, template, answers_of, barrier_free
    )
    out_rows = [
        {"id": r["id"], "turns": r["turns"], "outputs": a, "trace": t, "usage": u.as_dict()}
        for r, a, t, u in zip(rows, answers, traces, usage, strict=True)
    ]
    write_jsonl(out, out_rows)
    metrics = {"n_questions": len(rows)} | engine.stats.as_dict("engine_") | usage_metrics(usage)
    wall = time.time() - started
    metrics["generated_tokens_per_s"] = engine.stats.generated_tokens / max(wall, 1e-9)
    return metrics


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        strategy = cfg["strategy"].root if "strategy" in cfg else None
        kind = strategy_kind(a.mode, strategy)
        barrier_free = getattr(strategy, "schedule", "layered") == "barrier_free"
        metrics = run(cfg["inference"], kind, a.model, a.revision, a.bench, a.bench_name, a.out, barrier_free)
        return Outcome(metrics, [a.out], record={"strategy_kind": kind})

    models = {"inference": InferenceConfig, "strategy": StrategySection}
    run_stage("generate_answers", __doc__, argv, arguments, models, body, optional=("strategy",))


if __name__ == "__main__":
    main()
