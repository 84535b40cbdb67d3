"""Which LLM judges produced the paper's numbers (AlpacaEval 2 and MT-Bench: alpaca_eval2.py, mt_bench.py)."""

from __future__ import annotations

# The judges behind the paper's numbers (spec/method.md): AlpacaEval 2's GPT-4 Turbo annotator, and
# FastChat's "gpt-4" for MT-Bench (an alias; gpt-4-0613 is its dated snapshot: our ASSUMPTION).
PAPER_JUDGES: dict[str, tuple[str, ...]] = {
    "alpaca_eval2": ("gpt-4-1106-preview",),
    "mt_bench": ("gpt-4", "gpt-4-0613"),
}
PAPER_JUDGE_NAMES = {"alpaca_eval2": "GPT-4 Turbo", "mt_bench": "GPT-4"}


def is_paper_judge(bench: str, model: str, on_openai_api: bool) -> bool:
    """Whether a result comes from the judge the paper used: its model, served by the OpenAI API."""
    return on_openai_api and model in PAPER_JUDGES.get(bench, ())
