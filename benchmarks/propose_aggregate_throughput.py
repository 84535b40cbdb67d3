"""Benchmark: propose-and-aggregate call patterns on the same vLLM engine and model.

ours:     one call per layer for all queries, SamplingParams(n=5), prefix caching (prompt prefilled once)
official: each prompt repeated n times with n=1, queries in batches of 16 (Linzwcs/AFT's pattern)
Both produce the same number of outputs (5 + 5 + 1 per query with the default settings).

Usage:
    python benchmarks/propose_aggregate_throughput.py --model results/train_model/mini/aft_off/model \
        --bench results/prepare_bench/exact_match.jsonl [--config config/config.yaml] [--queries 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from aft.gen.engine import RepeatedPromptEngine, VLLMEngine
from aft.method.aggregate import answer_dialogues, answerer
from aft.method.interface import EngineStats
from aft.method.prompts import load_template
from aft.pipeline.config import load_config
from aft.pipeline.io import read_jsonl
from aft.stages.generate_answers import settings


def measure(engine, pattern_engine, turns, s, template, batch_size) -> dict:
    engine.llm.reset_prefix_cache()
    engine.stats = EngineStats()
    t0 = time.perf_counter()
    answers, _ = answer_dialogues(turns, answerer("agg", pattern_engine, s, template), batch_size=batch_size)
    wall = time.perf_counter() - t0
    st = engine.stats
    return {
        "wall_s": wall,
        "requests": st.requests,
        "generated_tokens": st.generated_tokens,
        "generated_tok_per_s": st.generated_tokens / wall,
        "prompt_tokens": st.prompt_tokens,
        "prefill_tokens_computed": st.prompt_tokens - st.cached_prompt_tokens,
        "answers": sum(len(a) for a in answers),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--repeats", type=int, default=2, help="alternating runs per pattern; best is kept")
    args = p.parse_args()
    ic = load_config(yaml.safe_load(args.config.read_text())).inference
    turns = [r["turns"] for r in read_jsonl(args.bench)[: args.queries]]
    engine = VLLMEngine(args.model, ic.engine, seed=ic.seed, progress=False)
    s, template = settings(ic), load_template(ic.template_file)
    patterns = {"ours": (engine, None), "official": (RepeatedPromptEngine(engine), 16)}
    best: dict[str, dict] = {}
    for _ in range(args.repeats):
        for name, (eng, batch) in patterns.items():
            r = measure(engine, eng, turns, s, template, batch)
            if name not in best or r["wall_s"] < best[name]["wall_s"]:
                best[name] = r
    keys = list(best["ours"])
    print(f"{len(turns)} queries, n={s.n}, num_aggregation={s.num_aggregation}, model={args.model}")
    print(f"{'':<26}{'ours':>14}{'official':>14}{'official/ours':>15}")
    for k in keys:
        o, f = best["ours"][k], best["official"][k]
        print(f"{k:<26}{o:>14.1f}{f:>14.1f}{(f / o if o else float('nan')):>15.2f}")


if __name__ == "__main__":
    main()
