"""What the paper-scale data stages cost: requests, tokens in/out and GPU hours, estimated from a config.

Token counts follow from the config (queries, samples per query, max_new_tokens, the ICL prompt and
template files) and mean text lengths; GPU hours divide them by an engine throughput. The throughputs
and the mean lengths not measured from data are ASSUMPTIONS, printed with the table: replace them with
your own measurements (flags below; --ultrafeedback measures the query and completion lengths).

Usage:
    python -m aft.costs --configfile config/paper.yaml [overlay.yaml ...] [--ultrafeedback FILE ...]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from aft.config import (
    BaseModelConfig,
    DataConfig,
    GridConfig,
    OnPolicyConfig,
    ProposalsConfig,
    Section,
    TargetsConfig,
)

ULTRAFEEDBACK_ROWS = 63_967  # openbmb/UltraFeedback, all six files (its dataset card: "about 64k prompts")
# ASSUMPTIONS, not measured here (no GPU in this environment); see README "Paper-scale data".
CHARS_PER_TOKEN = 4.0  # English text with the Llama-3 / Mistral tokenizers
MEAN_QUERY_TOKENS = 150  # UltraFeedback instruction, when no data is given
MEAN_COMPLETION_TOKENS = 350  # UltraFeedback completion, when no data is given
MEAN_GENERATED_TOKENS = 400  # a base-model sample or a teacher target that stops before max_new_tokens
# vLLM, bf16, one engine instance, large batches. Anchor: MLPerf Inference v5.1 reports 5,777 output
# tokens/s offline for Llama-3.1-8B in FP8 on one H100; bf16 and 2k-token outputs are slower.
BASE_DECODE_TPS = 3_000.0  # 8B base on 1 x H100
BASE_PREFILL_TPS = 20_000.0
TEACHER_DECODE_TPS = 1_300.0  # 70B teacher, tensor parallel over 4 x H100 (one engine)
TEACHER_PREFILL_TPS = 9_000.0


class DataStages(Section):
    """The config sections the data stages read (the rest of a config does not change their cost)."""

    grid: GridConfig
    data: DataConfig
    bases: dict[str, BaseModelConfig]
    proposals: ProposalsConfig
    on_policy: OnPolicyConfig
    targets: TargetsConfig


@dataclass(frozen=True)
class Throughput:
    prefill_tps: float  # prompt tokens computed per second, one engine instance
    decode_tps: float  # generated tokens per second, one engine instance


@dataclass(frozen=True)
class Lengths:
    query: float
    completion: float
    generated: float  # mean sample/target length before max_new_tokens (capped by it)


@dataclass(frozen=True)
class StageCost:
    stage: str
    jobs: int
    requests: int
    tokens_in: int
    tokens_out: int
    gpus: int  # per job; 0 = CPU or an API
    gpu_hours: float | None  # all jobs; None = paid per token at an API


def tokens_of(text: str, chars_per_token: float) -> int:
    return round(len(text) / chars_per_token)


def engine_hours(prefill: float, decode: float, tp: Throughput) -> float:
    return (prefill / tp.prefill_tps + decode / tp.decode_tps) / 3600


def estimate(
    cfg: DataStages,
    n_queries: int,
    lengths: Lengths,
    icl_tokens: int,
    template_tokens: int,
    base_tp: Throughput,
    teacher_tp: Throughput,
    upper_bound: bool,
) -> list[StageCost]:
    """Cost per data stage. upper_bound: every generation runs to max_new_tokens."""
    on, tc, pc = cfg.on_policy, cfg.targets, cfg.proposals
    n_bases = len(cfg.bases)
    sample = on.max_new_tokens if upper_bound else min(lengths.generated, on.max_new_tokens)
    target = tc.max_new_tokens if upper_bound else min(lengths.generated, tc.max_new_tokens)
    out: list[StageCost] = [StageCost("build_proposals_off", 1, 0, 0, 0, 0, 0.0)]

    # on-policy: the ICL preamble is shared by every prompt (prefix cache), the query is not
    on_in = n_queries * (icl_tokens + lengths.query)
    on_prefill = n_queries * lengths.query + icl_tokens
    on_out = n_queries * on.num_samples * sample
    gpus = on.engine.tensor_parallel_size
    hours = engine_hours(on_prefill, on_out, base_tp) * gpus
    out.append(StageCost("build_proposals_on", n_bases, n_bases * n_queries, n_bases * round(on_in),
                         n_bases * round(on_out), gpus, n_bases * hours))  # fmt: skip

    if tc.teacher == "model":
        prompt_off = template_tokens + pc.num_proposals * lengths.completion + lengths.query
        prompt_on = template_tokens + pc.num_proposals * sample + lengths.query
        t_in = n_queries * (prompt_off + n_bases * prompt_on)
        t_out = (1 + n_bases) * n_queries * target
        api = tc.api_base_url is not None
        t_gpus = 0 if api else tc.engine.tensor_parallel_size
        t_hours = None if api else engine_hours(t_in, t_out, teacher_tp) * t_gpus
        out.append(StageCost("build_targets", 1 + n_bases, (1 + n_bases) * n_queries, round(t_in),
                             round(t_out), t_gpus, t_hours))  # fmt: skip
    else:
        out.append(StageCost("build_targets", 1 + n_bases, 0, 0, 0, 0, 0.0))
    out.append(StageCost("build_dataset", n_bases * len(cfg.grid.variants), 0, 0, 0, 0, 0.0))
    return out


def measure_ultrafeedback(
    files: list[Path], chars_per_token: float, max_queries: int | None
) -> tuple[int, Lengths]:
    """Distinct queries and mean query/completion lengths (tokens) of UltraFeedback files."""
    from aft.sources import read_all_records

    rows = read_all_records(files)[:max_queries]
    queries = {(r.get("instruction") or "").strip() for r in rows} - {""}
    completions = [c.get("response") or "" for r in rows for c in r.get("completions") or []]
    q = sum(map(len, queries)) / max(len(queries), 1) / chars_per_token
    c = sum(map(len, completions)) / max(len(completions), 1) / chars_per_token
    return len(queries), Lengths(q, c, MEAN_GENERATED_TOKENS)


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


def table(rows: list[StageCost]) -> str:
    lines = [
        "| stage | jobs | requests | tokens in | tokens out | GPUs/job | GPU hours |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        hours = "API (per token)" if r.gpu_hours is None else f"{r.gpu_hours:,.0f}" if r.gpus else "CPU"
        cells = [r.stage, r.jobs, f"{r.requests:,}", f"{r.tokens_in:,}", f"{r.tokens_out:,}", r.gpus, hours]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    gpu = sum(r.gpu_hours or 0.0 for r in rows)
    tokens_in, tokens_out = sum(r.tokens_in for r in rows), sum(r.tokens_out for r in rows)
    lines.append(f"| **total** | | | {tokens_in:,} | {tokens_out:,} | | {gpu:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configfile", nargs="+", required=True, help="a config, then overlays (like snakemake)")
    p.add_argument(
        "--ultrafeedback", type=Path, nargs="*", default=[], help="measure queries and lengths here"
    )
    p.add_argument(
        "--queries", type=int, help=f"training queries (default: max_queries or {ULTRAFEEDBACK_ROWS:,})"
    )
    p.add_argument("--chars-per-token", type=float, default=CHARS_PER_TOKEN)
    p.add_argument("--mean-query-tokens", type=float, default=MEAN_QUERY_TOKENS)
    p.add_argument("--mean-completion-tokens", type=float, default=MEAN_COMPLETION_TOKENS)
    p.add_argument("--mean-generated-tokens", type=float, default=MEAN_GENERATED_TOKENS)
    p.add_argument("--base-decode-tps", type=float, default=BASE_DECODE_TPS)
    p.add_argument("--base-prefill-tps", type=float, default=BASE_PREFILL_TPS)
    p.add_argument("--teacher-decode-tps", type=float, default=TEACHER_DECODE_TPS)
    p.add_argument("--teacher-prefill-tps", type=float, default=TEACHER_PREFILL_TPS)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = p.parse_args(argv)

    raw: dict = {}
    for f in args.configfile:
        raw = _merge(raw, yaml.safe_load(Path(f).read_text()))
    cfg = DataStages.model_validate({k: raw[k] for k in DataStages.model_fields})
    if cfg.data.kind != "paper":
        raise SystemExit(
            "the estimate is for data.kind='paper' configs (the miniature runs on a CPU in minutes)"
        )
    cpt = args.chars_per_token
    max_queries = cfg.data.paper.max_queries
    if args.ultrafeedback:
        n_queries, lengths = measure_ultrafeedback(args.ultrafeedback, cpt, max_queries)
        lengths = Lengths(lengths.query, lengths.completion, args.mean_generated_tokens)
        where = f"measured on {len(args.ultrafeedback)} UltraFeedback file(s)"
    else:
        n_queries = min(ULTRAFEEDBACK_ROWS, max_queries or ULTRAFEEDBACK_ROWS)
        lengths = Lengths(args.mean_query_tokens, args.mean_completion_tokens, args.mean_generated_tokens)
        where = "ASSUMED (no data given)"
    n_queries = args.queries or n_queries
    icl = tokens_of(Path(cfg.on_policy.icl_prompt_file).read_text(), cpt)
    template = tokens_of(Path(cfg.targets.template_file).read_text(), cpt)
    base_tp = Throughput(args.base_prefill_tps, args.base_decode_tps)
    teacher_tp = Throughput(args.teacher_prefill_tps, args.teacher_decode_tps)
    results = {
        kind: estimate(cfg, n_queries, lengths, icl, template, base_tp, teacher_tp, kind == "upper_bound")
        for kind in ("typical", "upper_bound")
    }
    if args.json:
        print(json.dumps({k: [r.__dict__ for r in v] for k, v in results.items()}, indent=2))
        return
    served = "API" if cfg.targets.api_base_url else "vLLM in-process"
    print(f"queries: {n_queries:,}; bases: {len(cfg.bases)}; K = {cfg.on_policy.num_samples};", end=" ")
    print(f"teacher: {cfg.targets.model} ({served})")
    print(f"ICL prompt {icl} tokens, template {template} tokens ({cpt} characters a token)")
    print(
        f"mean query {lengths.query:.0f} / UltraFeedback completion {lengths.completion:.0f} tokens: {where}"
    )
    print(f"\nTypical: generations stop at {lengths.generated:.0f} tokens on average (ASSUMED)\n")
    print(table(results["typical"]))
    print(
        f"\nUpper bound: every generation runs to max_new_tokens (on-policy {cfg.on_policy.max_new_tokens},"
        f" teacher {cfg.targets.max_new_tokens})\n"
    )
    print(table(results["upper_bound"]))
    print(
        f"\nThroughput (ASSUMED, one engine): base {base_tp.decode_tps:,.0f} decode /"
        f" {base_tp.prefill_tps:,.0f} prefill tokens/s; teacher {teacher_tp.decode_tps:,.0f} /"
        f" {teacher_tp.prefill_tps:,.0f} tokens/s. GPU hours = engine hours x GPUs per engine."
    )


if __name__ == "__main__":
    main()
