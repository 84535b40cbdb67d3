"""What the paper reproduction costs, stage by stage: requests, tokens in/out and GPU hours, from a config.

Data stages (proposals, teacher targets): token counts follow from the config (queries, samples per query,
max_new_tokens, the ICL prompt and template files) and mean text lengths; GPU hours divide them by an
engine throughput. Training: FLOPs = 6 x parameters x tokens trained on, divided by a GPU's peak and a
utilisation. Inference: the benchmarks' sizes and the propose-and-aggregate call structure, at the base
throughput. Judging: API calls and tokens (no GPU hours). The throughputs, the peak and utilisation, and the
mean lengths not measured from data are ASSUMPTIONS, printed with the table: replace them with your own
measurements (flags below; --ultrafeedback measures the query and completion lengths).

Usage:
    python -m aft.tools.costs --configfile config/paper.yaml [overlay.yaml ...] [--ultrafeedback FILE ...]
        [--params BASE=N ...] [--mfu F] [--peak-flops F]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from aft.eval.registry import REGISTRY, Sizes
from aft.pipeline.config import (
    BaseModelConfig,
    CheckpointConfig,
    DataConfig,
    DatasetConfig,
    GridConfig,
    InferenceConfig,
    JudgeConfig,
    Mode,
    OnPolicyConfig,
    ProposalsConfig,
    Section,
    Strategy,
    StrategyShape,
    TargetLossConfig,
    TargetsConfig,
    TrainConfig,
    Variant,
    in_scope,
    shape_of,
)
from aft.pipeline.configfile import ConfigFileError, read_config_files

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
# best-of-N's 8B reward model read by transformers (padded batches, no paged attention): half the vLLM
# prefill rate; ASSUMPTION
REWARD_MODEL_TPS = 10_000.0
TEACHER_DECODE_TPS = 1_300.0  # 70B teacher, tensor parallel over 4 x H100 (one engine)
TEACHER_PREFILL_TPS = 9_000.0
# Training: GPU hours = 6 x parameters x tokens / (peak x MFU). ASSUMPTIONS, each a flag.
PEAK_BF16_FLOPS = 989e12  # one H100 SXM, dense bf16 (NVIDIA's datasheet figure, without sparsity)
MFU = 0.35  # model FLOPs utilisation of ZeRO-3 full fine-tuning with gradient checkpointing
# Parameter counts (the models' hub pages), keyed by the last part of the model id, so a local copy
# named like the hub repository matches too; any other model needs --params.
PARAMS = {"llama-3.1-8b": 8.03e9, "mistral-7b-v0.1": 7.24e9}
MEAN_JUDGMENT_TOKENS = 200  # an MT-Bench judgment: a short explanation, then [[score]]; ASSUMPTION


class DataStages(Section):
    """The config sections the data stages read (the rest of a config does not change their cost)."""

    grid: GridConfig
    data: DataConfig
    bases: dict[str, BaseModelConfig]
    proposals: ProposalsConfig
    on_policy: OnPolicyConfig
    targets: TargetsConfig


class PaperRun(DataStages):
    """The config sections the whole run's estimate reads: the data stages', training, inference, judge."""

    dataset: DatasetConfig
    train: TrainConfig
    inference: InferenceConfig
    judge: JudgeConfig
    checkpoints: dict[str, dict[Variant, CheckpointConfig]] = Field(default_factory=dict)  # not trained
    strategies: dict[Mode, Strategy] = Field(default_factory=dict)  # the named strategies grid.modes uses
    target_loss: TargetLossConfig | None = None  # §6.1's measurement (null: not run)

    def jobs_of(self, mode: str, bench: str) -> int:
        """The answer (or judge) jobs of one strategy and benchmark: bases x variants in its scope x seeds."""
        variants = [v for v in self.grid.variants if in_scope(mode, v, bench, self.strategies)]
        return len(self.grid.bases) * len(variants) * len(self.grid.seeds)


# paper-scale sizes of every benchmark that has them, from the registry
BENCHES: dict[str, Sizes] = {name: b.sizes for name, b in REGISTRY.items() if b.sizes is not None}


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
    part: str = ""  # which jobs of the stage (variant, mode, benchmark) when they differ in cost


@dataclass(frozen=True)
class Compute:
    """What a training GPU delivers: GPU hours = FLOPs / (peak_flops x mfu)."""

    peak_flops: float  # dense bf16 FLOP/s of one GPU
    mfu: float  # share of the peak a fine-tuning run achieves


@dataclass(frozen=True)
class Load:
    """One job's work: requests (prompts; one sampled n times is one request, as vLLM runs it), tokens."""

    requests: int
    tokens_in: float
    tokens_out: float


def tokens_of(text: str, chars_per_token: float) -> int:
    return round(len(text) / chars_per_token)


def file_tokens(path: str, chars_per_token: float) -> int:
    """Tokens of a prompt file the config names; one that a stage downloads must be downloaded first."""
    if not Path(path).is_file():
        raise SystemExit(
            f"{path} is absent: the estimate reads the prompt and template files the config names (one under"
            " results/download_source/ comes from `snakemake ... --until download_source`)"
        )
    return tokens_of(Path(path).read_text(), chars_per_token)


def engine_hours(prefill: float, decode: float, tp: Throughput) -> float:
    return (prefill / tp.prefill_tps + decode / tp.decode_tps) / 3600


def generated(mean: float, max_new_tokens: int, upper_bound: bool) -> float:
    """Mean length of a generation: max_new_tokens for the upper bound, else the mean capped by it."""
    return max_new_tokens if upper_bound else min(mean, max_new_tokens)


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
    n_bases = len(cfg.grid.bases)
    sample = generated(lengths.generated, on.max_new_tokens, upper_bound)
    target = generated(lengths.generated, tc.max_new_tokens, upper_bound)
    out: list[StageCost] = [StageCost("build_proposals_off", 1, 0, 0, 0, 0, 0.0)]

    # on-policy: the ICL preamble is shared by every prompt (prefix cache), the query is not
    on_in = n_queries * (icl_tokens + lengths.query)
    on_prefill = n_queries * lengths.query + icl_tokens
    on_out = n_queries * on.num_samples * sample
    gpus = on.engine.tensor_parallel_size
    hours = engine_hours(on_prefill, on_out, base_tp) * gpus
    # GPU jobs: num_jobs scatter jobs per output (their gather runs on CPU and makes nothing)
    on_jobs = n_bases * on.num_jobs
    out.append(StageCost("build_proposals_on", on_jobs, n_bases * n_queries, n_bases * round(on_in),
                         n_bases * round(on_out), gpus, n_bases * hours))  # fmt: skip

    if tc.teacher == "model":
        prompt_off = template_tokens + pc.num_proposals * lengths.completion + lengths.query
        prompt_on = template_tokens + pc.num_proposals * sample + lengths.query
        t_in = n_queries * (prompt_off + n_bases * prompt_on)
        t_out = (1 + n_bases) * n_queries * target
        api = tc.endpoint is not None
        t_gpus = 0 if api else tc.engine.tensor_parallel_size
        t_hours = None if api else engine_hours(t_in, t_out, teacher_tp) * t_gpus
        t_jobs = (1 + n_bases) * tc.num_jobs
        out.append(StageCost("build_targets", t_jobs, (1 + n_bases) * n_queries, round(t_in),
                             round(t_out), t_gpus, t_hours))  # fmt: skip
    else:
        out.append(StageCost("build_targets", 1 + n_bases, 0, 0, 0, 0, 0.0))
    out.append(StageCost("build_dataset", n_bases * len(cfg.grid.variants), 0, 0, 0, 0, 0.0))
    return out


# ------------------------------------------------------------------------------------------ training
def params_of(name: str, base: BaseModelConfig, overrides: dict[str, float]) -> float:
    """A base's parameter count: --params, else PARAMS by the model id's last part."""
    if name in overrides:
        return overrides[name]
    key = (base.model or "").rstrip("/").rsplit("/", 1)[-1].lower()
    if key in PARAMS:
        return PARAMS[key]
    raise ValueError(
        f"base {name!r} (model {base.model!r}): its parameter count is unknown (known: {sorted(PARAMS)});"
        f" give it with --params {name}=N, e.g. --params {name}=8.0e9"
    )


def train_set(
    cfg: PaperRun, variant: str, n_queries: int, lengths: Lengths, template_tokens: int, upper_bound: bool
) -> tuple[int, float]:
    """(examples, tokens of one epoch) of a variant's training set (aft.method.dataset.build_examples).

    SFT: one direct example (query -> target) a query. AFT: an aggregation example (template + the
    proposals + query -> target) a query, plus a direct one for direct_fraction of them. Each example is
    capped at the max length: build_dataset drops longer ones and training truncates at its max_length,
    so no trained example is longer (chat-template tokens, a few a message, are left out)."""
    cap = min(cfg.train.max_length, cfg.dataset.max_length)
    if cfg.targets.teacher == "best_rated":
        target = lengths.completion  # an UltraFeedback completion
    else:
        target = generated(lengths.generated, cfg.targets.max_new_tokens, upper_bound)
    direct = min(lengths.query + target, cap)
    if variant == "sft":
        return n_queries, n_queries * direct
    if variant == "aft_off":
        proposal = lengths.completion
    else:
        proposal = generated(lengths.generated, cfg.on_policy.max_new_tokens, upper_bound)
    prompt = template_tokens + cfg.proposals.num_proposals * proposal + lengths.query
    agg = min(prompt + target, cap)
    n_direct = round(cfg.dataset.direct_fraction * n_queries)
    return n_queries + n_direct, n_queries * agg + n_direct * direct


def train_gpu_hours(params: float, tokens: float, compute: Compute) -> float:
    """6 FLOPs a parameter a token (forward 2, backward 4); the gradient-checkpointing recompute and the
    padding are in the utilisation, as MFU figures count them."""
    return 6 * params * tokens / (compute.peak_flops * compute.mfu) / 3600


def train_rows(
    cfg: PaperRun,
    n_queries: int,
    lengths: Lengths,
    template_tokens: int,
    params: dict[str, float],
    compute: Compute,
    upper_bound: bool,
) -> list[StageCost]:
    """train_model, one row a variant: requests = training examples, tokens in = tokens trained on
    (all epochs); a variant given in `checkpoints` is evaluated as it is, not trained."""
    rows = []
    for variant in cfg.grid.variants:
        # one training run per base and replica (grid.seeds)
        bases = [b for b in cfg.grid.bases if variant not in cfg.checkpoints.get(b, {})] * len(cfg.grid.seeds)
        if not bases:
            continue
        examples, epoch = train_set(cfg, variant, n_queries, lengths, template_tokens, upper_bound)
        tokens = epoch * cfg.train.num_train_epochs
        hours = sum(train_gpu_hours(params[b], tokens, compute) for b in bases)
        rows.append(StageCost("train_model", len(bases), len(bases) * examples, len(bases) * round(tokens),
                              0, cfg.train.num_gpus, hours, variant))  # fmt: skip
    return rows


def target_loss_rows(
    cfg: PaperRun,
    lengths: Lengths,
    template_tokens: int,
    params: dict[str, float],
    compute: Compute,
    upper_bound: bool,
) -> list[StageCost]:
    """measure_target_loss, one job a base with a model trained here: num_records off-policy targets
    scored by the base and each trained model, given the query and given query + proposals (two forward
    passes a record and model, 2 FLOPs a parameter a token, at the training MFU)."""
    tl = cfg.target_loss
    # the base and the models trained from it (a variant given in `checkpoints` is not measured)
    models = {
        b: 1 + sum(v not in cfg.checkpoints.get(b, {}) for v in cfg.grid.variants) for b in cfg.grid.bases
    }
    models = {b: m for b, m in models.items() if m > 1}
    if tl is None or not models:
        return []
    cap = min(cfg.train.max_length, cfg.dataset.max_length)
    target = generated(lengths.generated, cfg.targets.max_new_tokens, upper_bound)
    proposals = template_tokens + cfg.proposals.num_proposals * lengths.completion
    record = min(lengths.query + target, cap) + min(proposals + lengths.query + target, cap)
    tokens = {b: m * tl.num_records * record for b, m in models.items()}
    hours = sum(2 * params[b] * t for b, t in tokens.items()) / (compute.peak_flops * compute.mfu) / 3600
    requests = 2 * tl.num_records * sum(models.values())
    return [StageCost("measure_target_loss", len(models), requests, round(sum(tokens.values())), 0, 1, hours)]


# ----------------------------------------------------------------------------------------- inference
def answer_budget(ic: InferenceConfig, bench: str) -> int:
    """Max new tokens of every generation (MT-Bench: FastChat's budget, generate_answers.answer_settings)."""
    return ic.mt_bench.max_new_tokens if bench == "mt_bench" else ic.max_tokens


def conversation_tokens(b: Sizes, answer: float, chars_per_token: float) -> list[float]:
    """Tokens of the conversation each turn is asked in: the earlier questions and final answers, then
    its own question (aggregate.answer_dialogues)."""
    return [sum(b.query_chars[: t + 1]) / chars_per_token + t * answer for t in range(b.turns)]


def answer_load(
    shape: StrategyShape, b: Sizes, answer: float, template_tokens: int, chars_per_token: float
) -> Load:
    """One generate_answers job. direct: one generation a turn. majority_vote, best_of_n: one prompt
    sampled n times a turn (best-of-N's reward model reading: reward_tokens). propose_aggregate
    (aggregate.propose_and_aggregate): a proposal prompt sampled n times,
    depth - 1 intermediate prompts sampled n times and a final prompt sampled once, each aggregation
    prompt holding the previous layer's n outputs (as long as an answer): 1 + depth requests and
    n x depth + 1 generations a turn."""
    convs = conversation_tokens(b, answer, chars_per_token)
    turns = b.questions * b.turns
    if shape.kind in ("direct", "majority_vote", "best_of_n"):
        return Load(turns, b.questions * sum(convs), turns * shape.n * answer)
    layers, n = shape.depth, shape.n
    prompts_in = sum(c + layers * (template_tokens + n * answer + c) for c in convs)
    return Load(turns * (1 + layers), b.questions * prompts_in, turns * (n * layers + 1) * answer)


def reward_tokens(shape: StrategyShape, b: Sizes, answer: float, chars_per_token: float) -> float:
    """Tokens best-of-N's reward model reads in one job: each of the n samples with its question (the
    reward model scores whole conversations); 0 for the other strategies."""
    if shape.kind != "best_of_n":
        return 0.0
    convs = conversation_tokens(b, answer, chars_per_token)
    return b.questions * shape.n * sum(c + answer for c in convs)


def bench_of(name: str, benches: dict[str, Sizes]) -> Sizes:
    if name not in benches:
        raise ValueError(f"benchmark {name!r} has no paper-scale size here (known: {sorted(benches)})")
    return benches[name]


def inference_rows(
    cfg: PaperRun,
    lengths: Lengths,
    template_tokens: int,
    tp: Throughput,
    chars_per_token: float,
    upper_bound: bool,
    benches: dict[str, Sizes] = BENCHES,
) -> list[StageCost]:
    """generate_answers, one row a (mode, benchmark): every (base, variant) answers with a vLLM engine at
    the base throughput (a fine-tuned model is as fast as its base)."""
    ic, rows = cfg.inference, []
    gpus = ic.engine.tensor_parallel_size
    for mode in cfg.grid.modes:
        shape = shape_of(mode, ic, cfg.strategies)
        for name in cfg.grid.benchmarks:
            jobs = cfg.jobs_of(mode, name)
            if not jobs:
                continue
            answer = generated(lengths.generated, answer_budget(ic, name), upper_bound)
            load = answer_load(shape, bench_of(name, benches), answer, template_tokens, chars_per_token)
            read = reward_tokens(shape, bench_of(name, benches), answer, chars_per_token)
            hours = jobs * (
                engine_hours(load.tokens_in, load.tokens_out, tp) + read / REWARD_MODEL_TPS / 3600
            )
            hours *= gpus
            tokens_in = jobs * round(load.tokens_in + read)  # the reward model's reading included
            tokens_out = jobs * round(load.tokens_out)
            rows.append(StageCost("generate_answers", jobs, jobs * load.requests, tokens_in, tokens_out,
                                  gpus, hours, f"{mode}, {name}"))  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------- judging
def judge_load(b: Sizes, answer: float, judgment: float, chars_per_token: float) -> Load:
    """One judge_answers job: a call a turn of every question (AlpacaEval 2: one an instruction; MT-Bench:
    two a question). The call of turn t reads the prompt, the questions and answers up to t, and the
    references; re-asked unparsable judgments and judgment-cache hits are not counted."""
    texts = [b.judge_chars[t] + sum(b.query_chars[: t + 1]) + b.reference_chars[t] for t in range(b.turns)]
    tokens_in = sum(c / chars_per_token + (t + 1) * answer for t, c in enumerate(texts))
    reply = judgment if b.judge_reply_tokens is None else b.judge_reply_tokens
    return Load(b.questions * b.turns, b.questions * tokens_in, b.questions * b.turns * reply)


def judge_rows(
    cfg: PaperRun,
    lengths: Lengths,
    judgment_tokens: float,
    chars_per_token: float,
    upper_bound: bool,
    benches: dict[str, Sizes] = BENCHES,
) -> list[StageCost]:
    """judge_answers, one row an LLM-judged benchmark (every base, variant and mode): API calls, no GPU
    hours. GSM8K and IFEval are scored by lm-eval's code in seconds on a CPU: no row."""
    mt = cfg.judge.mt_bench
    judgment = generated(judgment_tokens, mt.max_tokens, upper_bound) if mt else judgment_tokens
    rows = []
    for name in cfg.grid.benchmarks:
        if not REGISTRY[name].llm_judged:
            continue
        jobs = sum(cfg.jobs_of(mode, name) for mode in cfg.grid.modes)
        answer = generated(lengths.generated, answer_budget(cfg.inference, name), upper_bound)
        load = judge_load(bench_of(name, benches), answer, judgment, chars_per_token)
        rows.append(StageCost("judge_answers", jobs, jobs * load.requests, jobs * round(load.tokens_in),
                              jobs * round(load.tokens_out), 0, None, name))  # fmt: skip
    return rows


def measure_ultrafeedback(
    files: list[Path], chars_per_token: float, max_queries: int | None
) -> tuple[int, Lengths]:
    """Distinct queries and mean query/completion lengths (tokens) of UltraFeedback files."""
    from aft.pipeline.sources import read_all_records

    rows = read_all_records(files)[:max_queries]
    queries = {(r.get("instruction") or "").strip() for r in rows} - {""}
    completions = [c.get("response") or "" for r in rows for c in r.get("completions") or []]
    q = sum(map(len, queries)) / max(len(queries), 1) / chars_per_token
    c = sum(map(len, completions)) / max(len(completions), 1) / chars_per_token
    return len(queries), Lengths(q, c, MEAN_GENERATED_TOKENS)


def table(rows: list[StageCost]) -> str:
    lines = [
        "| stage | jobs | requests | tokens in | tokens out | GPUs/job | GPU hours |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        hours = "API (per token)" if r.gpu_hours is None else _hours(r.gpu_hours) if r.gpus else "CPU"
        stage = f"{r.stage} ({r.part})" if r.part else r.stage
        cells = [stage, r.jobs, f"{r.requests:,}", f"{r.tokens_in:,}", f"{r.tokens_out:,}", r.gpus, hours]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    gpu = sum(r.gpu_hours or 0.0 for r in rows)
    tokens_in, tokens_out = sum(r.tokens_in for r in rows), sum(r.tokens_out for r in rows)
    lines.append(f"| **total** | | | {tokens_in:,} | {tokens_out:,} | | {gpu:,.0f} |")
    return "\n".join(lines)


def _hours(h: float) -> str:
    # inference rows are a few hours or less: keep a decimal rather than print 0
    return f"{h:,.0f}" if h >= 10 else f"{h:.1f}" if h >= 0.05 or h == 0 else "<0.1"


def stage_totals(rows: list[StageCost]) -> str:
    """GPU hours summed per stage (its rows), and the calls and tokens of the stages served by an API."""
    gpu: dict[str, float] = {}
    api: dict[str, tuple[int, int, int]] = {}
    for r in rows:
        if r.gpu_hours is None:
            n, t_in, t_out = api.get(r.stage, (0, 0, 0))
            api[r.stage] = (n + r.requests, t_in + r.tokens_in, t_out + r.tokens_out)
        elif r.gpus:
            gpu[r.stage] = gpu.get(r.stage, 0.0) + r.gpu_hours
    parts = [f"{stage} {_hours(h)}" for stage, h in gpu.items()]
    line = f"GPU hours by stage: {', '.join(parts)}; all stages {sum(gpu.values()):,.0f}"
    for stage, (n, t_in, t_out) in api.items():
        line += f". {stage} at an API: {n:,} calls, {t_in / 1e6:,.1f} M tokens in, {t_out / 1e6:,.2f} M out"
    return line


def _parser() -> argparse.ArgumentParser:
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
    p.add_argument("--mean-judgment-tokens", type=float, default=MEAN_JUDGMENT_TOKENS)
    p.add_argument("--base-decode-tps", type=float, default=BASE_DECODE_TPS)
    p.add_argument("--base-prefill-tps", type=float, default=BASE_PREFILL_TPS)
    p.add_argument("--teacher-decode-tps", type=float, default=TEACHER_DECODE_TPS)
    p.add_argument("--teacher-prefill-tps", type=float, default=TEACHER_PREFILL_TPS)
    p.add_argument("--peak-flops", type=float, default=PEAK_BF16_FLOPS, help="dense bf16 FLOP/s of one GPU")
    p.add_argument("--mfu", type=float, default=MFU, help="model FLOPs utilisation of training")
    p.add_argument(
        "--params",
        action="append",
        default=[],
        metavar="BASE=N",
        help="parameter count of a base (needed for a model not in the built-in table)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def _param_counts(cfg: PaperRun, given: list[str]) -> dict[str, float]:
    """Every base's parameter count (--params BASE=N first); a clear error for an unknown model."""
    overrides: dict[str, float] = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or name not in cfg.bases:
            raise ValueError(f"--params {item!r}: expected BASE=N with BASE one of {sorted(cfg.bases)}")
        overrides[name] = float(value)
    return {name: params_of(name, base, overrides) for name, base in cfg.bases.items()}


def _load(files: list[str]) -> PaperRun:
    try:
        raw = read_config_files(files)
    except ConfigFileError as err:
        raise SystemExit(str(err)) from None
    cfg = PaperRun.model_validate({k: raw[k] for k in PaperRun.model_fields if k in raw})
    if cfg.data.kind != "paper":
        raise SystemExit(
            "the estimate is for data.kind='paper' configs (the miniature runs on a CPU in minutes)"
        )
    return cfg


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    cfg = _load(args.configfile)
    try:
        params = _param_counts(cfg, args.params)
    except ValueError as err:
        raise SystemExit(str(err)) from None
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
    icl = file_tokens(cfg.on_policy.icl_prompt_file, cpt)
    template = file_tokens(cfg.targets.template_file, cpt)
    train_template = file_tokens(cfg.dataset.template_file, cpt)
    answer_template = file_tokens(cfg.inference.template_file, cpt)
    base_tp = Throughput(args.base_prefill_tps, args.base_decode_tps)
    teacher_tp = Throughput(args.teacher_prefill_tps, args.teacher_decode_tps)
    compute = Compute(args.peak_flops, args.mfu)

    def rows(upper: bool) -> list[StageCost]:
        return [
            *estimate(cfg, n_queries, lengths, icl, template, base_tp, teacher_tp, upper),
            *train_rows(cfg, n_queries, lengths, train_template, params, compute, upper),
            *target_loss_rows(cfg, lengths, train_template, params, compute, upper),
            *inference_rows(cfg, lengths, answer_template, base_tp, cpt, upper),
            *judge_rows(cfg, lengths, args.mean_judgment_tokens, cpt, upper),
        ]

    results = {kind: rows(kind == "upper_bound") for kind in ("typical", "upper_bound")}
    if args.json:
        print(json.dumps({k: [r.__dict__ for r in v] for k, v in results.items()}, indent=2))
        return
    served = "API" if cfg.targets.endpoint else "vLLM in-process"
    print(f"queries: {n_queries:,}; bases: {len(cfg.grid.bases)}; K = {cfg.on_policy.num_samples};", end=" ")
    print(f"teacher: {cfg.targets.model} ({served})")
    print(f"ICL prompt {icl} tokens, template {template} tokens ({cpt} characters a token)")
    print(
        f"mean query {lengths.query:.0f} / UltraFeedback completion {lengths.completion:.0f} tokens: {where}"
    )
    print(f"\nTypical: generations stop at {lengths.generated:.0f} tokens on average (ASSUMED)\n")
    print(table(results["typical"]))
    print("\n" + stage_totals(results["typical"]))
    ic, mt_judge = cfg.inference, cfg.judge.mt_bench
    judge_max = mt_judge.max_tokens if mt_judge else "-"
    print(
        f"\nUpper bound: every generation runs to max_new_tokens (on-policy {cfg.on_policy.max_new_tokens},"
        f" teacher {cfg.targets.max_new_tokens}, answers {ic.max_tokens} / MT-Bench"
        f" {ic.mt_bench.max_new_tokens}, MT-Bench judgments {judge_max})\n"
    )
    print(table(results["upper_bound"]))
    print("\n" + stage_totals(results["upper_bound"]))
    print(
        f"\nThroughput (ASSUMED, one engine): base {base_tp.decode_tps:,.0f} decode /"
        f" {base_tp.prefill_tps:,.0f} prefill tokens/s; teacher {teacher_tp.decode_tps:,.0f} /"
        f" {teacher_tp.prefill_tps:,.0f} tokens/s. GPU hours = engine hours x GPUs per engine."
    )
    print_run_assumptions(cfg, params, compute, args.mean_judgment_tokens)


def print_run_assumptions(cfg: PaperRun, params: dict[str, float], compute: Compute, judgment: float) -> None:
    """The training, inference and judging assumptions, printed under the tables."""
    tr, ic = cfg.train, cfg.inference
    counts = ", ".join(f"{name} {n / 1e9:.2f} B" for name, n in params.items())
    print(
        f"Training (ASSUMED): FLOPs = 6 x parameters x tokens trained on ({counts}); GPU hours = FLOPs /"
        f" ({compute.peak_flops / 1e12:,.0f} TFLOP/s peak a GPU (default: H100 SXM, dense bf16) x MFU"
        f" {compute.mfu} (default: ZeRO-3 full fine-tuning)); {tr.num_train_epochs:g} epochs, examples capped"
        f" at {min(tr.max_length, cfg.dataset.max_length):,} tokens; {tr.num_gpus} GPUs a job (wall clock ="
        " GPU hours / GPUs). Requests = training examples, tokens in = tokens trained on. §6.1's"
        " measure_target_loss: forward passes only (2 x parameters x tokens) at the same MFU."
    )
    print(
        f"Inference: agg = {1 + ic.num_aggregation} prompts and {ic.n * ic.num_aggregation + 1} generations"
        f" a turn (n {ic.n}, num_aggregation {ic.num_aggregation}), direct = 1; AlpacaEval 2 805 x 1 turn,"
        " MT-Bench 80 x 2 turns; every proposal and answer as long as a generation above; base throughput;"
        " engine start-up and small batches (MT-Bench turns run one after another) not counted. Best-of-N:"
        " n samples a question, then its reward model reads each with its question (tokens in include it)"
        f" at {REWARD_MODEL_TPS:,.0f} tokens/s (ASSUMED, transformers on one GPU)."
    )
    print(
        "Judging (API, per token): AlpacaEval 2 one call an instruction (its ~1,300-character prompt +"
        " instruction + 2,049-character reference + answer -> 1 token); MT-Bench one call a turn (FastChat"
        f" prompts, GPT-4 references for 30 of 80 questions) -> {judgment:.0f}-token judgment (ASSUMED);"
        " re-asks and cache hits not counted."
    )


if __name__ == "__main__":
    main()
