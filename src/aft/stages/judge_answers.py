"""Stage `judge_answers`: score one model's answers on one benchmark.

exact_match (miniature): the known answers. gsm8k and ifeval: lm-eval's own scorers (answer
extraction and exact match; IFEval's instruction checks, with NLTK's punkt_tab from --punkt-tab).
alpaca_eval2: LC and raw win rate against the gpt4_1106_preview reference outputs (--reference), through
the alpaca-eval library, its LC fit on df_gamed.csv (--lc-fit). mt_bench: FastChat's single-answer
grading of both turns with its judge prompts (--judge-prompts) and GPT-4 reference answers (--reference).
LLM judges are called through the `judge.endpoint` (OpenAI API or any compatible server); the key comes
from the environment variable `judge.endpoint.api_key_env` only. Every result names the judge (or
scorer) that produced it.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.judge_answers --config CFG --bench-name NAME --answers JSONL --bench JSONL \
        [--reference FILE...] [--judge-prompts FILE...] [--lc-fit CSV] [--punkt-tab FILE...] \
        --out JSON --judgments JSONL --metrics FILE
"""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

from aft.eval.registry import JudgeFiles, benchmark
from aft.gen.endpoint import is_openai_api
from aft.pipeline.config import OPENAI_API, JudgeConfig
from aft.pipeline.io import read_jsonl, write_json, write_jsonl
from aft.pipeline.sources import read_all_records
from aft.pipeline.stage import Outcome, parse_wildcards, run_stage

log = logging.getLogger("aft")


def judge_client(jc: JudgeConfig, bench: str):
    from aft.gen.endpoint import EndpointClient

    model = jc.model_for(bench)
    if jc.endpoint is None or model is None:
        raise SystemExit(f"benchmark {bench!r} needs judge.endpoint and a judge model (judge.model)")
    return EndpointClient(jc.endpoint, model, jc.cache_dir)


def flat_metrics(result: dict) -> dict[str, float | int]:
    """The numbers logged to metrics.json and MLflow."""
    out = {k: v for k, v in result["scores"].items() if v is not None}
    out |= {f"{k}_se": v for k, v in result.get("standard_errors", {}).items() if v is not None}
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
    p.add_argument(
        "--lc-fit",
        type=Path,
        nargs="*",
        default=[],
        help="df_gamed.csv, alpaca-eval's length-controlled fit data",
    )
    p.add_argument(
        "--punkt-tab", type=Path, nargs="*", default=[], help="NLTK's punkt_tab files (IFEval's scorer)"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--judgments", type=Path, required=True, help="per-question judgments (JSONL)")


def run(
    jc: JudgeConfig | None,
    name: str,
    answers: list[dict],
    bench: list[dict],
    files: JudgeFiles,
    wildcards: dict[str, str],
) -> tuple[dict, list[dict], dict, dict[str, str]]:
    """Judge one model's answers; returns (result, per-question rows, judge metrics, record)."""
    spec = benchmark(name)
    code = importlib.import_module(spec.module)  # the benchmark's module, named by its registry entry
    if not spec.llm_judged:
        result, rows = code.score(answers, bench, files)
        scorer = result.get("scorer", spec.judge)  # e.g. "lm-eval ifeval": the code that scored
        result |= {"judge": scorer, "paper_judge": False}
        return result, rows, {}, {"judge": scorer}
    if jc is None:
        raise SystemExit(f"benchmark {name!r} is judged by an LLM: --config needs the judge section")
    with judge_client(jc, name) as client:
        log.info("judging %s with %s", name, client.label)
        generator = "-".join(wildcards[k] for k in ("base", "variant", "mode") if k in wildcards)
        result, rows = code.judge_answers(jc, answers, bench, files, client, generator or "model")
        endpoint = jc.endpoint.base_url or OPENAI_API
        on_openai = is_openai_api(jc.endpoint.base_url)
        result |= {
            "judge": client.label,
            "judge_model": client.model,
            "judge_endpoint": endpoint,
            "paper_judge": spec.is_paper_judge(client.model, on_openai),
            "paper_judge_name": spec.paper_judge_name,
            "judge_stats": client.stats.as_dict(""),
        }
        record = {"judge": client.label, "judge_model": client.model, "judge_endpoint": endpoint}
        return result, rows, client.stats.as_dict("judge_"), record


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        wildcards = parse_wildcards(a.wildcards)
        result, rows, judge_metrics, record = run(
            cfg.get("judge"),
            a.bench_name,
            read_jsonl(a.answers),
            read_jsonl(a.bench),
            JudgeFiles(
                reference=read_all_records(a.reference),
                judge_prompts=read_all_records(a.judge_prompts),
                lc_fit=a.lc_fit[0] if a.lc_fit else None,
                punkt_tab=a.punkt_tab,
            ),
            wildcards,
        )
        result |= {"bench": a.bench_name, "wildcards": wildcards}
        write_json(a.out, result)
        write_jsonl(a.judgments, rows)
        return Outcome(flat_metrics(result) | judge_metrics, [a.out, a.judgments], record=record)

    # a benchmark scored by lm-eval reads no judge settings (its jobs' keys leave them out)
    run_stage("judge_answers", __doc__, argv, arguments, {"judge": JudgeConfig}, body, optional=("judge",))


if __name__ == "__main__":
    main()
