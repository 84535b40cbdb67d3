"""Stage `judge_answers`: score one model's answers on one benchmark.

exact_match (miniature): the known answers. alpaca_eval2: LC and raw win rate against the
gpt4_1106_preview reference outputs (--reference), through the alpaca-eval library. mt_bench: FastChat's
single-answer grading of both turns with its judge prompts (--judge-prompts) and GPT-4 reference answers
(--reference). LLM judges are called through the `judge.endpoint` (OpenAI API or any compatible server);
the key comes from the environment variable `judge.endpoint.api_key_env` only. Every result names the
judge that produced it.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.judge_answers --config CFG --bench-name NAME --answers JSONL --bench JSONL \
        [--reference FILE...] [--judge-prompts FILE...] --out JSON --judgments JSONL --metrics FILE
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aft.eval.judging import PAPER_JUDGE_NAMES, is_paper_judge
from aft.gen.judge_client import is_openai_api
from aft.miniature.exact_match import exact_match, judgment_rows
from aft.pipeline.config import OPENAI_API, JudgeConfig
from aft.pipeline.io import read_jsonl, write_json, write_jsonl
from aft.pipeline.sources import read_all_records
from aft.pipeline.stage import Outcome, parse_wildcards, run_stage

log = logging.getLogger("aft")


def judge_client(jc: JudgeConfig, bench: str):
    from aft.gen.judge_client import JudgeClient

    model = jc.model_for(bench)
    if jc.endpoint is None or model is None:
        raise SystemExit(f"benchmark {bench!r} needs judge.endpoint and a judge model (judge.model)")
    return JudgeClient(jc.endpoint, model, jc.cache_dir)


def judge_alpaca_eval2(
    jc: JudgeConfig, answers: list[dict], bench: list[dict], references: list[dict], generator: str, client
) -> tuple[dict, list[dict]]:
    from aft.eval import alpaca_eval2 as ae

    if jc.alpaca_eval2 is None:
        raise SystemExit("benchmark 'alpaca_eval2' needs the judge.alpaca_eval2 section")
    if not references:
        raise SystemExit("benchmark 'alpaca_eval2' needs the reference outputs: give --reference FILE")
    cfg = jc.alpaca_eval2
    model_out, ref_out = ae.head_to_head(bench, answers, references, generator)
    annotations = ae.annotate(
        model_out,
        ref_out,
        ae.completions_fn(client),
        client.model,
        cfg.annotator,
        cfg.seed,
        ae.canonical_index(bench),
    )
    metrics = ae.win_rates(annotations, cfg.hf_cache_dir)
    return ae.result(annotations, metrics) | {"protocol": cfg.annotator}, ae.judgment_rows(annotations)


def judge_mt_bench(
    jc: JudgeConfig,
    answers: list[dict],
    bench: list[dict],
    references: list[dict],
    prompt_rows: list[dict],
    client,
) -> tuple[dict, list[dict]]:
    from aft.eval import mt_bench as mt

    if jc.mt_bench is None:
        raise SystemExit("benchmark 'mt_bench' needs the judge.mt_bench section")
    if not prompt_rows:
        raise SystemExit("benchmark 'mt_bench' needs FastChat's judge prompts: give --judge-prompts FILE")
    cfg = jc.mt_bench
    todo = mt.matches(bench, answers, mt.judge_prompts(prompt_rows), mt.reference_answers(references))

    def ask(conversations: list[list[dict]], attempt: int) -> list[str]:
        decoding = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        requests = [client.request(c, **decoding) for c in conversations]
        replies = client.chat_many(requests, [attempt] * len(requests))
        return [(r.get("message") or {}).get("content") or "" for r in replies]

    judgments = mt.judge(todo, ask, cfg.max_parse_retries)
    return mt.scores(judgments) | {"protocol": "fastchat-single"}, judgments


def flat_metrics(result: dict) -> dict[str, float | int]:
    """The numbers logged to metrics.json and MLflow."""
    out = {k: v for k, v in result["scores"].items() if v is not None}
    out |= {f"{k}_se": v for k, v in result.get("standard_errors", {}).items()}
    for key in ("n", "n_judged", "n_unjudged", "n_judgments", "n_unparsable", "n_reasked"):
        if key in result:
            out[key] = result[key]
    for cat, block in result.get("per_category", {}).items():
        if isinstance(block, dict):
            out |= {f"{cat}_{k}": v for k, v in block.items() if v is not None}
        elif block is not None:
            out[f"{cat}_accuracy"] = block  # exact_match: accuracy per category
    return out


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bench-name", required=True)
    p.add_argument("--answers", type=Path, required=True)
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--reference", type=Path, nargs="*", default=[], help="reference outputs/answers")
    p.add_argument("--judge-prompts", type=Path, nargs="*", default=[], help="FastChat judge_prompts.jsonl")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--judgments", type=Path, required=True, help="per-question judgments (JSONL)")


def run(
    jc: JudgeConfig,
    name: str,
    answers: list[dict],
    bench: list[dict],
    references: list[dict],
    prompts: list[dict],
    wildcards: dict[str, str],
) -> tuple[dict, list[dict], dict, dict[str, str]]:
    """Judge one model's answers; returns (result, per-question rows, judge metrics, record)."""
    if name == "exact_match":
        result = exact_match(answers, bench) | {"judge": "exact_match", "paper_judge": False}
        return result, judgment_rows(answers, bench), {}, {"judge": "exact_match"}
    if name not in ("alpaca_eval2", "mt_bench"):
        raise SystemExit(f"unknown benchmark {name!r}; expected exact_match, alpaca_eval2 or mt_bench")
    with judge_client(jc, name) as client:
        log.info("judging %s with %s", name, client.label)
        if name == "alpaca_eval2":
            generator = "-".join(wildcards[k] for k in ("base", "variant", "mode") if k in wildcards)
            result, rows = judge_alpaca_eval2(jc, answers, bench, references, generator or "model", client)
        else:
            result, rows = judge_mt_bench(jc, answers, bench, references, prompts, client)
        endpoint = jc.endpoint.base_url or OPENAI_API
        on_openai = is_openai_api(jc.endpoint.base_url)
        result |= {
            "judge": client.label,
            "judge_model": client.model,
            "judge_endpoint": endpoint,
            "paper_judge": is_paper_judge(name, client.model, on_openai),
            "paper_judge_name": PAPER_JUDGE_NAMES[name],
            "judge_stats": client.stats.as_dict(""),
        }
        record = {"judge": client.label, "judge_model": client.model, "judge_endpoint": endpoint}
        return result, rows, client.stats.as_dict("judge_"), record


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        wildcards = parse_wildcards(a.wildcards)
        result, rows, judge_metrics, record = run(
            cfg["judge"],
            a.bench_name,
            read_jsonl(a.answers),
            read_jsonl(a.bench),
            read_all_records(a.reference),
            read_all_records(a.judge_prompts),
            wildcards,
        )
        result |= {"bench": a.bench_name, "wildcards": wildcards}
        write_json(a.out, result)
        write_jsonl(a.judgments, rows)
        return Outcome(flat_metrics(result) | judge_metrics, [a.out, a.judgments], record=record)

    run_stage("judge_answers", __doc__, argv, arguments, {"judge": JudgeConfig}, body)


if __name__ == "__main__":
    main()
