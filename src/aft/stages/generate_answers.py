"""Stage `generate_answers`: a trained model answers a benchmark, direct or propose-and-aggregate.

Multi-turn questions (MT-Bench) are answered turn by turn: turn 2 is asked after the turn-1 final
answer, and with propose-and-aggregate every turn is proposed and aggregated over the conversation so
far. MT-Bench answers follow FastChat's settings (`inference.mt_bench`): the answer's temperature by
category, and its token budget.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.generate_answers --config CFG --mode {direct,agg} --model DIR_OR_HUB_ID \
        [--revision REV] --bench JSONL --bench-name NAME --out JSONL --metrics FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from aft.gen.engine import VLLMEngine
from aft.method.aggregate import AggSettings, answer_dialogues, answerer
from aft.method.interface import Engine
from aft.pipeline.config import InferenceConfig
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


def answer_rows(
    rows: list[dict], ic: InferenceConfig, bench: str, mode: str, engine: Engine, template: str
) -> tuple[list[list[str]], list]:
    """Every row's answers (one per turn) and traces, each settings group in one batched pass."""
    answers: list = [None] * len(rows)
    traces: list = [None] * len(rows)
    for s, idx in group_by_settings(rows, ic, bench):
        group_answers, group_traces = answer_dialogues(
            [rows[i]["turns"] for i in idx], answerer(mode, engine, s, template)
        )
        for i, a, t in zip(idx, group_answers, group_traces, strict=True):
            answers[i], traces[i] = a, t
    return answers, traces


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", required=True, choices=["direct", "agg"])
    p.add_argument("--model", required=True, help="a trained model folder or a hub id")
    p.add_argument("--revision", default=None, help="pinned hub revision of --model")
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--bench-name", required=True, help="exact_match, alpaca_eval2 or mt_bench")
    p.add_argument("--out", type=Path, required=True)


def run(
    ic: InferenceConfig, mode: str, model: str, revision: str | None, bench: Path, bench_name: str, out: Path
) -> dict:
    """Answer every question of `bench` and write them with their traces; returns the engine's cost."""
    started = time.time()
    rows = read_jsonl(bench)
    template = read_text_input("inference.template_file", ic.template_file)  # before the engine starts
    engine = VLLMEngine(model, ic.engine, seed=ic.seed, revision=revision)
    answers, traces = answer_rows(rows, ic, bench_name, mode, engine, template)
    out_rows = [
        {"id": r["id"], "turns": r["turns"], "outputs": a, "trace": t}
        for r, a, t in zip(rows, answers, traces, strict=True)
    ]
    write_jsonl(out, out_rows)
    metrics = {"n_questions": len(rows)} | engine.stats.as_dict("engine_")
    wall = time.time() - started
    metrics["generated_tokens_per_s"] = engine.stats.generated_tokens / max(wall, 1e-9)
    return metrics


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        metrics = run(cfg["inference"], a.mode, a.model, a.revision, a.bench, a.bench_name, a.out)
        return Outcome(metrics, [a.out])

    run_stage("generate_answers", __doc__, argv, arguments, {"inference": InferenceConfig}, body)


if __name__ == "__main__":
    main()
