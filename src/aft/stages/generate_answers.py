"""Stage `generate_answers`: a trained model answers a benchmark with an inference strategy: direct,
propose-and-aggregate (the built-in `agg`, or a named strategy at its own width and depth), majority
vote or best-of-N with a reward model (named strategies); each answer row records what it cost
(`usage`: requests, prompt tokens, of which prefix-cached, generated tokens, reward-model tokens).

Multi-turn questions (MT-Bench) are answered turn by turn: turn 2 is asked after the turn-1 final
answer, and with propose-and-aggregate every turn is proposed and aggregated over the conversation so
far. MT-Bench answers follow FastChat's settings (`inference.mt_bench`): the answer's temperature by
category, and its token budget.

With `inference.shard_size`, the questions are answered shard by shard (aft.gen.shards: each finished shard
written atomically to `<out>.shards/`), so a rerun after a killed job answers only the shards it lacks, and
every request is seeded from (inference.seed, its question's content), so a resumed run writes what an
unbroken one would. Without it, one pass over all questions samples from the engine's seed stream, as the
official code does.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.generate_answers --config CFG --mode NAME --model DIR \
        --bench JSONL --bench-name NAME --out JSONL [--reward-model DIR] \
        --metrics FILE
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import time
from collections import Counter
from pathlib import Path

from aft.eval.registry import REGISTRY
from aft.gen import shards
from aft.gen.engine import VLLMEngine
from aft.gen.reward import RewardScorer
from aft.method.aggregate import AggSettings, VoteFn, answer_dialogues, answerer, best_of
from aft.method.interface import EngineStats, MeteredEngine, Usage
from aft.pipeline.config import BUILTIN_MODES, InferenceConfig, RewardModelConfig, Strategy, StrategySection
from aft.pipeline.io import read_jsonl, write_jsonl
from aft.pipeline.stage import Outcome, add_scatter_arguments, read_text_input, run_stage


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
    seeded: bool = False,
) -> tuple[list[list[str]], list, list[Usage]]:
    """Every row's answers (one per turn), traces and cost, each settings group in one batched pass.
    `seeded`: every request seeded from inference.seed and its question's content (a question's samples
    then do not depend on its batch); `barrier_free`: propose-and-aggregate seeded so, each question's
    layers advanced on their own (the engine's run_programs)."""
    seed = ic.seed if seeded or barrier_free else None
    answers: list = [None] * len(rows)
    traces: list = [None] * len(rows)
    usage: list = [None] * len(rows)
    for s, idx in group_by_settings(rows, ic, bench):
        group = answer_dialogues(
            [rows[i]["turns"] for i in idx],
            answerer(kind, engine, s, template, answers_of, seed, barrier_free),
        )
        for i, a, t, u in zip(idx, *group, strict=True):
            answers[i], traces[i], usage[i] = a, t, u
    return answers, traces, usage


def check_single_turn(rows: list[dict]) -> None:
    """Best-of-N answers single-turn questions (the config refuses multi-turn benchmarks; this guards a
    hand-run job before the engine starts)."""
    multi = [r["id"] for r in rows if len(r["turns"]) != 1]
    if multi:
        raise SystemExit(
            f"best-of-N answers single-turn questions; {len(multi)} have more turns ({multi[:5]})"
        )


def choose_best(
    rows: list[dict], traces: list, usage: list[Usage], scorer: RewardScorer
) -> tuple[list[list[str]], list[list[list[float]]], list[Usage], int]:
    """Best-of-N over the samples answer_rows(kind="sample") made (single-turn rows, check_single_turn):
    the reward model scores each sample as the reply to its question; the highest-scored is the answer.
    Returns the answers, the scores (per turn, per sample), the costs with the tokens the reward model
    read, and how many scored conversations were cut to its max_length."""
    convs, owner = [], []
    for i, (row, trace) in enumerate(zip(rows, traces, strict=True)):
        (samples,) = trace[0]
        for x in samples:
            convs.append([{"role": "user", "content": row["turns"][0]}, {"role": "assistant", "content": x}])
            owner.append(i)
    scored = scorer.score(convs)
    scores: list[list[float]] = [[] for _ in rows]
    read = [0] * len(rows)
    for i, s in zip(owner, scored, strict=True):
        scores[i].append(s.score)
        read[i] += s.tokens
    answers = [[trace[0][0][best_of(trace[0][0], sc)]] for trace, sc in zip(traces, scores, strict=True)]
    usage = [u + Usage(reward_tokens=r) for u, r in zip(usage, read, strict=True)]
    return answers, [[sc] for sc in scores], usage, sum(s.cut for s in scored)


def usage_metrics(usage: list[Usage]) -> dict[str, float]:
    """Per-question means of the cost, for the scaling curves (tokens per question)."""
    n = max(len(usage), 1)
    total = sum(usage, Usage())
    return {
        "generated_tokens_per_question": total.generated_tokens / n,
        "prompt_tokens_per_question": total.prompt_tokens / n,
        "computed_prompt_tokens_per_question": (total.prompt_tokens - total.cached_prompt_tokens) / n,
        "requests_per_question": total.requests / n,
        "reward_tokens_per_question": total.reward_tokens / n,
    }


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", required=True, help="the strategy: direct, agg, or a key of `strategies`")
    p.add_argument("--model", required=True, help="the answering model's folder")
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--bench-name", required=True, help="exact_match, alpaca_eval2 or mt_bench")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reward-model", default=None, help="best-of-N: the reward model's folder")
    add_scatter_arguments(p)


def shard_context(ic: InferenceConfig, kind: str, model: str, bench: str, template: str) -> str:
    """Everything besides its questions that decides a shard's answers (see aft.gen.shards)."""
    return json.dumps(
        {
            "inference": ic.model_dump(mode="json", exclude={"shard_size", "engine"}),
            "engine": shards.engine_content(ic.engine),
            "kind": kind,
            "model": model,
            "bench": bench,
            "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
        },
        sort_keys=True,
    )


def answer_records(
    rows: list[dict], answers: list, traces: list, usage: list[Usage], extra: list[dict] | None = None
) -> list[dict]:
    """The answer file's rows: each question with its answers (one per turn), trace and cost."""
    extra = extra or [{} for _ in rows]
    return [
        {"id": r["id"], "turns": r["turns"], "outputs": a, "trace": t, "usage": u.as_dict()} | x
        for r, a, t, u, x in zip(rows, answers, traces, usage, extra, strict=True)
    ]


def scored_records(records: list[dict], scorer: RewardScorer) -> tuple[list[dict], int]:
    """Best-of-N's answer rows from its sample rows (choose_best): the chosen answer, the scores, the
    reward model's tokens in the cost; and how many scored conversations were cut."""
    usage = [Usage(**r["usage"]) for r in records]
    traces = [r["trace"] for r in records]
    answers, scores, usage, cut = choose_best(records, traces, usage, scorer)
    extra = [{"reward_scores": sc} for sc in scores]
    return answer_records(records, answers, traces, usage, extra), cut


def run(
    ic: InferenceConfig,
    kind: str,
    model: str,
    bench: Path,
    bench_name: str,
    out: Path,
    barrier_free: bool = False,
    reward: tuple[RewardModelConfig, str] | None = None,
    part: str | None = None,
    parts: list[Path] | None = None,
) -> Outcome:
    """Answer every question of `bench` and write them with their traces and costs; metrics: the engine's
    cost. `barrier_free`: propose-and-aggregate without a barrier between layers (seeded per question).
    `reward`: best-of-N's reward model (its section, and its folder). With inference.shard_size, shard by
    shard (resumable; seeded per question), and as scatter job `part` (its shards, answered and scored,
    to the part file `out`) or the gather of `parts` (assembled, nothing answered)."""
    started = time.time()
    rows = read_jsonl(bench)
    template = read_text_input("inference.template_file", ic.template_file)  # before the engine starts
    answers_of = vote_extractor(kind, bench_name)
    if kind == "best_of_n":
        if reward is None:
            raise SystemExit("a best_of_n strategy needs --reward-model and the reward_model config section")
        check_single_turn(rows)
    sharded = ic.shard_size is not None
    if (part or parts) and not sharded:
        raise SystemExit("--part/--parts: answers are split into parts by shards; set inference.shard_size")
    answer_kind = "sample" if kind == "best_of_n" else kind
    context = shard_context(ic, answer_kind, model, bench_name, template)
    metrics: dict = {}
    if parts:  # the part jobs answered (and scored) every shard: assemble, answer nothing
        records, _, summary = shards.gather(rows, ic.shard_size, context, parts)
        write_jsonl(out, records)
        usage = [Usage(**r["usage"]) for r in records]
        metrics = {"n_questions": len(rows)} | summary.as_dict() | usage_metrics(usage)
        return Outcome(metrics, [out], record={"strategy_kind": kind})
    engines: list[VLLMEngine] = []  # started on the first shard that needs it: a finished run needs none

    def engine() -> VLLMEngine:
        if not engines:
            seeds = barrier_free or sharded
            engines.append(VLLMEngine(model, ic.engine, seed=ic.seed, per_request_seeds=seeds))
        return engines[0]

    def answer(questions: list[dict]) -> shards.ShardResult:
        a, t, u = answer_rows(
            questions, ic, bench_name, answer_kind, engine(), template, answers_of, barrier_free, sharded
        )
        return answer_records(questions, a, t, u), Counter()

    finished: list[dict] = []
    job, num_jobs = shards.parse_part(part) if part else (0, 1)
    if sharded:
        finished, summary = shards.run_sharded(
            rows, ic.shard_size, shards.work_dir(out), context, answer, job, num_jobs
        )
        records, _ = shards.assemble(finished)
        metrics |= summary.as_dict()
    else:
        records, _ = answer(rows)
    stats = engines[0].stats if engines else EngineStats()
    if kind == "best_of_n":
        if engines:
            engines[0].close()  # the reward model gets the device to itself
        rc, path = reward
        scorer = RewardScorer(path, rc.dtype, rc.batch_size, rc.max_length)
        records, metrics["n_reward_conversations_cut"] = scored_records(records, scorer)
        # the shards keep their samples (a rerun scores again); the part file gets the scored rows
        scored = iter(records)
        finished = [d | {"records": [next(scored) for _ in d["records"]]} for d in finished]
    usage = [Usage(**r["usage"]) for r in records]
    metrics |= {"n_questions": len(records)} | stats.as_dict("engine_") | usage_metrics(usage)
    metrics["generated_tokens_per_s"] = stats.generated_tokens / max(time.time() - started, 1e-9)
    cleanup = [shards.work_dir(out)] if sharded else []
    if part:
        shards.write_part(out, part, finished, summary)
        metrics = {"job": job, "num_jobs": num_jobs} | metrics
        return Outcome(metrics, [out], stage="generate_answers_part", cleanup=cleanup)
    write_jsonl(out, records)
    return Outcome(metrics, [out], record={"strategy_kind": kind}, cleanup=cleanup)


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        strategy = cfg["strategy"].root if "strategy" in cfg else None
        kind = strategy_kind(a.mode, strategy)
        barrier_free = getattr(strategy, "schedule", "layered") == "barrier_free"
        rc = cfg.get("reward_model")
        reward = (rc, a.reward_model) if rc is not None and a.reward_model else None
        ic = cfg["inference"]
        return run(ic, kind, a.model, a.bench, a.bench_name, a.out, barrier_free, reward, a.part, a.parts)

    models = {"inference": InferenceConfig, "strategy": StrategySection, "reward_model": RewardModelConfig}
    optional = ("strategy", "reward_model")
    run_stage("generate_answers", __doc__, argv, arguments, models, body, optional=optional)


if __name__ == "__main__":
    main()
