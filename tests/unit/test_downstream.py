"""The paper's downstream tasks (Fig. 5): GSM8K and IFEval rows from the real files, scored by lm-eval's
own code on fixed answers whose verdicts are known, IFEval with punkt_tab from its source and no
download (the scorer runs in a fresh interpreter, as a job does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aft.eval import gsm8k, ifeval
from aft.eval.registry import JudgeFiles
from aft.pipeline.config import DataConfig
from aft.pipeline.io import read_json, read_jsonl, write_jsonl
from aft.pipeline.sources import read_records
from aft.stages.prepare_bench import bench_rows, evenly_spaced, with_prompt
from tests.conftest import ROOT, shared_file

MINIATURE = DataConfig.model_validate(
    {"kind": "miniature", "seed": 0, "miniature": {**json.loads('{"tasks": ["add"]}'), **{
        "max_operand": 9, "n_pretrain": 100, "n_train": 10, "n_eval": 10,
        "pretrain_wrong_fraction": 0.3, "offpolicy_model_accuracies": [0.5]}}}
)  # fmt: skip
PUNKT = [f"data/nltk_data/tokenizers/punkt_tab/english/{n}" for n in ifeval.PUNKT_FILES]


def test_gsm8k_rows_are_the_1319_test_problems_with_their_final_answers():
    rows = bench_rows(MINIATURE, "gsm8k", [shared_file("data/gsm8k/test.jsonl")])
    assert len(rows) == 1319 and len({r["id"] for r in rows}) == 1319
    assert rows[0]["id"] == "gsm0000" and rows[0]["answer"] == "18"
    assert rows[0]["turns"][0].startswith("Janet’s ducks lay 16 eggs per day.")
    assert all(r["answer"] and "####" not in r["answer"] for r in rows)


def test_ifeval_rows_are_the_541_prompts_with_lm_evals_doc():
    records = read_records(shared_file("data/ifeval/input_data.jsonl"))
    rows = bench_rows(MINIATURE, "ifeval", [shared_file("data/ifeval/input_data.jsonl")])
    assert len(rows) == 541 and len({r["id"] for r in rows}) == 541
    assert rows[0]["doc"] == {k: records[0][k] for k in ("key", "prompt", "instruction_id_list", "kwargs")}
    assert rows[0]["turns"] == [records[0]["prompt"]] and rows[0]["category"] == "punctuation"
    assert sum(len(r["doc"]["instruction_id_list"]) for r in rows) == 834


def test_a_slice_is_evenly_spaced_and_a_prompt_wraps_only_the_first_turn():
    rows = [{"id": str(i), "turns": [f"q{i}", "t2"]} for i in range(10)]
    assert [r["id"] for r in evenly_spaced(rows, 4)] == ["0", "2", "5", "7"]
    assert evenly_spaced(rows, None) == rows and evenly_spaced(rows, 50) == rows
    wrapped = with_prompt(rows[:1], 'Solve {"json": 1} {question}\nEnd.')
    assert wrapped[0]["turns"] == ['Solve {"json": 1} q0\nEnd.', "t2"]


def test_the_gsm8k_prompt_is_lm_evals_gsm8k_cot_llama_text():
    prompt = (ROOT / "config/prompts/gsm8k_cot_llama.txt").read_text(encoding="utf-8")
    assert prompt == gsm8k.task_config()["doc_to_text"].replace("{{question}}", "{question}")


def test_gsm8k_scores_through_lm_evals_filters_and_exact_match():
    rows = gsm8k.question_rows(read_records(shared_file("data/gsm8k/test.jsonl"))[:1])  # answer 18
    said = {
        "a": "16 - 3 - 4 = 9 eggs, 9 * 2 = 18. The final answer is 18",  # both
        "b": "She sells 9 eggs for $18.",  # no "The final answer is": flexible only
        "c": "The final answer is $18.",  # "$" and the final "." are ignored by the task's metric
        "d": "The final answer is 18. Check: 9 * 2 = 19",  # strict reads the phrase, flexible the last number
        "e": "I'm ready to help. What's the problem?",  # no number: neither
    }
    verdicts = {}
    for key, text in said.items():
        result, (row,) = gsm8k.score([{"id": rows[0]["id"], "outputs": [text]}], rows, JudgeFiles())
        verdicts[key] = (row["strict_match"], row["flexible_extract"])
        assert result["scorer"] == "lm-eval gsm8k_cot_llama"
    assert verdicts == {
        "a": (True, True),
        "b": (False, True),
        "c": (True, True),
        "d": (True, False),
        "e": (False, False),
    }
    result, out = gsm8k.score(
        [{"id": rows[0]["id"], "outputs": ["draft", said["b"]]}], rows, JudgeFiles()
    )  # the last turn's answer counts
    assert result["scores"] == {"strict_match": 0.0, "flexible_extract": 100.0}
    assert gsm8k.question_scores(out) == {"gsm0000": 100.0}


def test_gsm8k_votes_count_the_flexible_extraction_as_its_metric_compares_it():
    votes = gsm8k.vote_answers(
        ["The final answer is $1,000.", "so 1000", "It costs 1000 dollars, or 999 after tax", "no number"]
    )
    # "$", "," and the final "." are ignored as exact_match ignores them; the last number is the answer
    assert votes == ["1000", "1000", "999", None]


def test_the_miniatures_votes_are_its_extracted_answers():
    from aft.miniature.exact_match import vote_answers

    assert vote_answers(["The answer is 7.", "The answer is 7, 8.", "I do not know."]) == ["7", "7, 8", None]


def ifeval_answers() -> tuple[list[dict], list[dict]]:
    """Prompts 1001 (no comma), 1174 (letter count, fewer than 6 sentences: punkt_tab, 2 highlights) and
    122 (wrapped in quotes), with answers whose verdicts are known."""
    records = {r["key"]: r for r in read_records(shared_file("data/ifeval/input_data.jsonl"))}
    rows = ifeval.question_rows([records[1001], records[1174], records[1174], records[122]])
    rows[2] = rows[2] | {"id": "ifeval1174b"}
    answers = [
        {"id": "ifeval1001", "outputs": ["Hark, the journey begins"]},  # a comma: not followed
        {"id": "ifeval1174", "outputs": ["*Hi*. *A day*. Be ready."]},  # 3 sentences, no "o": all followed
        {
            "id": "ifeval1174b",
            "outputs": ["*Hi there*. *Up we go*. It rains. It snows. We run. We jump. We stop."],
        },  # 7 sentences: one not followed
        {"id": "ifeval122", "outputs": ['Sure, here it is:\n"The internet began as ARPANET."']},  # loose only
    ]
    return rows, answers


def test_ifeval_scores_through_lm_evals_process_results_in_a_fresh_job(tmp_path):
    """The judge_answers stage in a fresh interpreter, punkt_tab only from --punkt-tab, NLTK's download
    made impossible (no NLTK_DATA, no network): the sentence-count verdicts need punkt_tab."""
    rows, answers = ifeval_answers()
    write_jsonl(tmp_path / "bench.jsonl", rows)
    write_jsonl(tmp_path / "answers.jsonl", answers)
    out = tmp_path / "result.json"
    cmd = [
        sys.executable,
        "-m",
        "aft.stages.judge_answers",
        *("--config", "{}", "--bench-name", "ifeval"),
        *("--answers", str(tmp_path / "answers.jsonl"), "--bench", str(tmp_path / "bench.jsonl")),
        *("--punkt-tab", *(str(shared_file(p)) for p in PUNKT)),
        *("--out", str(out), "--judgments", str(tmp_path / "judgments.jsonl")),
        *("--metrics", str(tmp_path / "metrics.json"), "--wildcards", "base=b,variant=sft,mode=direct"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NLTK_"))}
    env |= {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "HOME": str(tmp_path)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Downloaded punkt_tab" not in proc.stdout + proc.stderr
    assert "nltk_data" not in proc.stderr  # NLTK's "[nltk_data] Error loading ..." lines
    by_id = {r["id"]: r for r in read_jsonl(tmp_path / "judgments.jsonl")}
    assert by_id["ifeval1001"]["inst_strict"] == [False]
    assert by_id["ifeval1174"]["inst_strict"] == [True, True, True]
    assert by_id["ifeval1174b"]["inst_strict"] == [True, False, True]
    assert (by_id["ifeval122"]["inst_strict"], by_id["ifeval122"]["inst_loose"]) == ([False], [True])
    result = read_json(out)
    assert result["judge"] == "lm-eval ifeval" and result["n"] == 4 and result["n_instructions"] == 8
    assert result["scores"] == pytest.approx(
        {"prompt_strict": 25.0, "prompt_loose": 50.0, "inst_strict": 500 / 8, "inst_loose": 600 / 8}
    )
    metrics = read_json(tmp_path / "metrics.json")["metrics"]
    assert metrics["prompt_loose"] == pytest.approx(50.0)


def test_ifeval_without_punkt_tab_stops_with_its_source_named(tmp_path):
    rows, answers = ifeval_answers()
    with pytest.raises(SystemExit, match=r"needs NLTK's punkt_tab \(source nltk_punkt_tab\)"):
        ifeval.score(answers, rows, JudgeFiles(punkt_tab=[Path(shared_file(PUNKT[0]))]))
