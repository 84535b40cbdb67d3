"""The benchmark registry: everything the pipeline knows about a benchmark, in one entry.

Config validation (aft.pipeline.config), the rules' inputs (workflow/rules/common.smk), the report
(aft.eval.report) and the cost estimate (aft.tools.costs) read this and nothing else. The code of a
benchmark (its rows, its scorer or judge) is the module named by `module`:
    question_rows(records) -> rows          paper benchmarks: rows from the source's records
    question_rows(tasks) -> rows            the miniature's exact_match: rows from the world's tasks
    judge_answers(jc, answers, bench, files, client, generator) -> (result, rows)   LLM-judged; `files`
        is a JudgeFiles: what the entry's `judge_sources` name, by role
    score(answers, bench, files) -> (result, rows)           scored by code (exact match, lm-eval)
    question_scores(judgment_rows) -> {question id: score}   per question, in `claim_key`'s units
    vote_answers(responses) -> [answer or None]              `votable` ones: the answer each response
        gives, as its scorer extracts it (what a majority vote counts)
Adding a benchmark: one module with that code, one entry below.

Pure: imports nothing beyond the standard library, so the config schema can read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Column:
    """One column of the report: our score key, its title, and the key of the paper's number (or None)."""

    key: str
    title: str
    paper_key: str | None = None


@dataclass(frozen=True)
class Sizes:
    """A benchmark as generate_answers and judge_answers see it, for the cost estimate. Characters are
    means measured on the pinned files (the copies in ../shared/data), turned into tokens with
    --chars-per-token."""

    questions: int
    query_chars: tuple[float, ...]  # the user message of each turn (one entry per turn)
    judge_chars: tuple[float, ...]  # the judge's prompt for each turn, without the texts filled in
    reference_chars: tuple[float, ...]  # reference text the judge also reads for each turn
    judge_reply_tokens: int | None  # a verdict of fixed length; None = a free-text judgment

    @property
    def turns(self) -> int:
        return len(self.query_chars)


@dataclass(frozen=True)
class JudgeFiles:
    """What an LLM judge reads besides the answers, one field per role of `Benchmark.judge_sources`."""

    reference: list[dict] = field(default_factory=list)  # reference outputs or answers (records)
    judge_prompts: list[dict] = field(default_factory=list)  # FastChat's judge prompts (records)
    lc_fit: Path | None = None  # alpaca-eval's df_gamed.csv, the length-controlled fit's data
    punkt_tab: list[Path] = field(default_factory=list)  # NLTK's English punkt_tab files (IFEval's scorer)


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str  # the code: rows and scorer or judge (see the module docstring)
    data_kind: Literal["miniature", "paper"]  # the data.kind whose questions it reads
    judge: Literal["exact_match", "lm_eval", "llm"]  # who scores: the known answer, lm-eval's code, an LLM
    columns: tuple[Column, ...]
    headline: str  # the score the plot uses
    claim_key: str  # the score the claims compare question by question (a mean of per-question scores)
    questions_source: str | None = None  # the `sources` entry with its questions (paper benchmarks)
    paper_figure: str | None = None  # where the paper shows it when not in its table (numbers not in text)
    judge_sources: dict[str, str] = field(default_factory=dict)  # judge file role -> `sources` entry
    optional_roles: tuple[str, ...] = ()  # roles whose source may be null: the score they feed is then None
    votable: bool = False  # an answer can be extracted from a response (majority vote applies)
    multi_turn: bool = False  # a question has several user turns, each answered after the last
    paper_judge_name: str | None = None  # who judged the paper's numbers
    paper_judge_models: tuple[str, ...] = ()  # the model ids that count as the paper's judge
    paper: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # base -> row -> key -> value
    sizes: Sizes | None = None  # paper-scale sizes for the cost estimate (None: not a paper benchmark)

    @property
    def llm_judged(self) -> bool:
        return self.judge == "llm"

    @property
    def claim_column(self) -> Column:
        return next(c for c in self.columns if c.key == self.claim_key)

    def is_paper_judge(self, model: str, on_openai_api: bool) -> bool:
        """Whether a result comes from the judge the paper used: its model, served by the OpenAI API."""
        return on_openai_api and model in self.paper_judge_models


# The paper's table (arXiv 2501.11877, spec/method.md): rows by model label, one dict per benchmark.
def _rows(*values: tuple[str, tuple[float, ...]], keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
    return {label: dict(zip(keys, v, strict=True)) for label, v in values}


_MT = ("mt_1st", "mt_2nd", "mt_avg")
_AE = ("ae2_lc", "ae2_wr")

EXACT_MATCH = Benchmark(
    name="exact_match",
    module="aft.miniature.exact_match",
    data_kind="miniature",
    judge="exact_match",
    columns=(Column("accuracy", "EM acc. %"),),
    headline="accuracy",
    claim_key="accuracy",
    votable=True,
)

ALPACA_EVAL2 = Benchmark(
    name="alpaca_eval2",
    module="aft.eval.alpaca_eval2",
    data_kind="paper",
    judge="llm",
    columns=(Column("lc_win_rate", "AE2 LC %", "ae2_lc"), Column("win_rate", "AE2 WR %", "ae2_wr")),
    headline="lc_win_rate",
    claim_key="win_rate",  # LC has no per-question form: the claims compare the raw win rate
    questions_source="alpaca_eval_instructions",
    judge_sources={"reference": "alpaca_eval_reference", "lc_fit": "alpaca_eval_lc_fit"},
    optional_roles=("lc_fit",),  # without df_gamed.csv: the raw win rate, and LC None with its reason
    paper_judge_name="GPT-4 Turbo",
    paper_judge_models=("gpt-4-1106-preview",),
    paper={
        "Mistral-7B-v0.1": _rows(
            ("SFT", (6.7, 6.1)),
            ("AFT-off-policy", (19.8, 20.0)),
            ("AFT-off-policy w/ Agg.", (33.8, 47.8)),
            ("AFT-on-policy", (23.4, 24.9)),
            ("AFT-on-policy w/ Agg.", (30.7, 48.4)),
            keys=_AE,
        ),
        "Llama-3.1-8B": _rows(
            ("SFT", (8.0, 7.3)),
            ("AFT-off-policy", (20.3, 19.6)),
            ("AFT-off-policy w/ Agg.", (40.3, 47.8)),
            ("AFT-on-policy", (21.5, 21.8)),
            ("AFT-on-policy w/ Agg.", (41.3, 51.3)),
            keys=_AE,
        ),
    },
    # 805 instructions (165 characters). alpaca-eval's weighted_alpaca_eval_gpt4_turbo judge reads its
    # prompt (system + template, ~1,300 characters; counted on a copy, not the pinned file), the
    # instruction, the gpt4_1106_preview reference output (2,049 characters) and the answer, and replies
    # with 1 token (max_tokens 1: the logprobs of "m"/"M" are the verdict).
    sizes=Sizes(805, (165.0,), (1_300.0,), (2_049.0,), 1),
)

MT_BENCH = Benchmark(
    name="mt_bench",
    module="aft.eval.mt_bench",
    data_kind="paper",
    judge="llm",
    multi_turn=True,
    columns=(
        Column("turn1", "MT 1st", "mt_1st"),
        Column("turn2", "MT 2nd", "mt_2nd"),
        Column("avg", "MT avg", "mt_avg"),
    ),
    headline="avg",
    claim_key="avg",
    questions_source="mt_bench_questions",
    judge_sources={"judge_prompts": "mt_bench_judge_prompts", "reference": "mt_bench_reference_answers"},
    # FastChat's "gpt-4" (an alias; gpt-4-0613 is its dated snapshot: our ASSUMPTION)
    paper_judge_name="GPT-4",
    paper_judge_models=("gpt-4", "gpt-4-0613"),
    paper={
        "Mistral-7B-v0.1": _rows(
            ("SFT", (6.6, 6.1, 6.4)),
            ("AFT-off-policy", (7.7, 6.3, 7.0)),
            ("AFT-off-policy w/ Agg.", (8.0, 7.0, 7.5)),
            ("AFT-on-policy", (7.5, 6.4, 6.9)),
            ("AFT-on-policy w/ Agg.", (8.3, 7.0, 7.6)),
            keys=_MT,
        ),
        "Llama-3.1-8B": _rows(
            ("SFT", (7.3, 6.2, 6.8)),
            ("AFT-off-policy", (7.7, 6.9, 7.3)),
            ("AFT-off-policy w/ Agg.", (8.3, 7.6, 7.9)),
            ("AFT-on-policy", (7.9, 6.9, 7.4)),
            ("AFT-on-policy w/ Agg.", (8.5, 7.6, 8.1)),
            keys=_MT,
        ),
    },
    # 80 questions of 2 turns (300 and 105 characters). FastChat's single-answer prompts: 669 / 825
    # characters (turn 1 / 2), the math/reasoning/coding ones 795 / 1,045 characters and with GPT-4's
    # reference answers (753 characters per turn) for 30 of the 80 questions: the means below. The turn-2
    # judge reads both questions, both answers (and both references).
    sizes=Sizes(80, (300.0, 105.0), (716.0, 908.0), (282.0, 565.0), None),
)

# The paper's downstream tasks (its Fig. 5, Llama-3.1-8B: SFT and AFT, direct and w/ Agg.). The figure's
# values are not in the paper's text, so no paper numbers stand beside ours (docs/downstream.md).
GSM8K = Benchmark(
    name="gsm8k",
    module="aft.eval.gsm8k",
    data_kind="paper",
    judge="lm_eval",
    columns=(Column("flexible_extract", "GSM8K flex %"), Column("strict_match", "GSM8K strict %")),
    headline="flexible_extract",
    claim_key="flexible_extract",  # ASSUMPTION: the last number, so the claim does not hinge on format
    questions_source="gsm8k_test",
    paper_figure="Fig. 5",
    votable=True,
    # 1,319 problems (240 characters) in gsm8k_cot_llama's instruction (194 characters); scored by code
    sizes=Sizes(1_319, (434.0,), (0.0,), (0.0,), 0),
)

IFEVAL = Benchmark(
    name="ifeval",
    module="aft.eval.ifeval",
    data_kind="paper",
    judge="lm_eval",
    columns=(
        Column("prompt_loose", "IFEval P-loose %"),
        Column("prompt_strict", "IFEval P-strict %"),
        Column("inst_loose", "IFEval I-loose %"),
        Column("inst_strict", "IFEval I-strict %"),
    ),
    headline="prompt_loose",
    claim_key="prompt_loose",  # ASSUMPTION: Tulu 3's IFEval number (prompt level, loose)
    questions_source="ifeval_input",
    judge_sources={"punkt_tab": "nltk_punkt_tab"},
    paper_figure="Fig. 5",
    # 541 prompts (211 characters), asked as they are; scored by code
    sizes=Sizes(541, (211.0,), (0.0,), (0.0,), 0),
)

# in the report's column order
REGISTRY: dict[str, Benchmark] = {b.name: b for b in (EXACT_MATCH, MT_BENCH, ALPACA_EVAL2, GSM8K, IFEVAL)}


def benchmark(name: str) -> Benchmark:
    if name not in REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(REGISTRY)}")
    return REGISTRY[name]
