"""The benchmark `ifeval`: the 541 verifiable-instruction prompts, scored by lm-eval's own code.

Each answer goes through lm-eval's IFEval `process_results` (0.4.13, its instruction registry): per
prompt, whether every instruction was followed (prompt level) and which ones were (instruction level),
strict and loose (loose also tries the answer without its first or last line and without "*").
Aggregates as lm-eval makes them: the mean over prompts, and `agg_inst_level_acc` over instructions.

Some instructions count sentences with NLTK's punkt_tab. It comes from the source `nltk_punkt_tab`
(download_source, pinned like every input): it is laid out as an NLTK data folder before lm-eval is
imported, because lm-eval's IFEval module calls `nltk.download` at import when it finds no punkt_tab,
which on a compute node without internet prints "Downloaded punkt_tab" and then fails on the first
sentence-count instruction.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from aft.eval.registry import JudgeFiles

PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt")
LEVELS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")
LM_EVAL_KEYS = {  # lm-eval's metric names -> ours
    "prompt_level_strict_acc": "prompt_strict",
    "inst_level_strict_acc": "inst_strict",
    "prompt_level_loose_acc": "prompt_loose",
    "inst_level_loose_acc": "inst_loose",
}


def question_rows(records: list[dict]) -> list[dict]:
    """IFEval prompts (input_data.jsonl records, file order) in the project's schema; the record itself
    is kept as `doc`, which lm-eval's scorer reads. Category: the first instruction's group."""
    return [
        {
            "id": f"ifeval{r['key']}",
            "turns": [r["prompt"]],
            "answer": None,
            "category": r["instruction_id_list"][0].split(":")[0] if r["instruction_id_list"] else "none",
            "doc": {k: r[k] for k in ("key", "prompt", "instruction_id_list", "kwargs")},
        }
        for r in records
    ]


def nltk_data_folder(punkt_files: list[Path], root: Path) -> Path:
    """An NLTK data folder under `root` holding English punkt_tab from the source's files."""
    by_name = {p.name: p for p in punkt_files}
    missing = [n for n in PUNKT_FILES if n not in by_name]
    if missing:
        raise SystemExit(
            f"benchmark 'ifeval' needs NLTK's punkt_tab (source nltk_punkt_tab): missing {missing};"
            " give --punkt-tab FILE..."
        )
    english = root / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True, exist_ok=True)
    for name in PUNKT_FILES:
        shutil.copyfile(by_name[name], english / name)
    return root


def use_punkt_tab(folder: Path) -> None:
    """Make NLTK find punkt_tab in `folder` first, and refuse to go on if it still does not (rather than
    let lm-eval's import download it)."""
    import nltk

    if str(folder) not in nltk.data.path:
        nltk.data.path.insert(0, str(folder))
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError as err:
        raise SystemExit(f"NLTK does not find punkt_tab in {folder}: {err}") from None


def process(doc: dict, response: str) -> dict:
    """lm-eval's IFEval process_results for one prompt (NLTK must already find punkt_tab)."""
    from lm_eval.tasks.ifeval import utils

    raw = utils.process_results(doc, [response])
    return {LM_EVAL_KEYS[k]: v for k, v in raw.items()}


def judgment_rows(answers: list[dict], questions: list[dict], punkt_files: list[Path]) -> list[dict]:
    """Per prompt: its instructions, and lm-eval's verdicts strict and loose, per prompt and instruction."""
    by_id = {a["id"]: a for a in answers}
    missing = [q["id"] for q in questions if q["id"] not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} questions have no answer, e.g. {missing[:3]}")
    with tempfile.TemporaryDirectory(prefix="nltk_data_") as tmp:
        use_punkt_tab(nltk_data_folder(punkt_files, Path(tmp)))
        return [
            {
                "id": q["id"],
                "category": q["category"],
                "instructions": q["doc"]["instruction_id_list"],
                "empty_answer": not by_id[q["id"]]["outputs"][-1].strip(),
            }
            | process(q["doc"], by_id[q["id"]]["outputs"][-1])
            for q in questions
        ]


def score(answers: list[dict], questions: list[dict], files: JudgeFiles) -> tuple[dict, list[dict]]:
    """The four IFEval accuracies (%) as lm-eval aggregates them, and the per-prompt rows."""
    rows = judgment_rows(answers, questions, files.punkt_tab)  # first: it makes NLTK find punkt_tab
    from lm_eval.tasks.ifeval.utils import agg_inst_level_acc

    n = len(rows)
    scores = {
        "prompt_strict": 100.0 * sum(r["prompt_strict"] for r in rows) / n,
        "inst_strict": 100.0 * agg_inst_level_acc([r["inst_strict"] for r in rows]),
        "prompt_loose": 100.0 * sum(r["prompt_loose"] for r in rows) / n,
        "inst_loose": 100.0 * agg_inst_level_acc([r["inst_loose"] for r in rows]),
    }
    n_inst = sum(len(r["instructions"]) for r in rows)
    result = {"scores": scores, "n": n, "n_instructions": n_inst, "scorer": "lm-eval ifeval"}
    return result | {"n_empty_answers": sum(r["empty_answer"] for r in rows)}, rows


def question_scores(rows: list[dict]) -> dict[str, float]:
    """Per prompt: 100 if every instruction was followed (loose), else 0 (the claim's units)."""
    return {r["id"]: 100.0 * bool(r["prompt_loose"]) for r in rows}
