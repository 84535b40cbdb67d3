"""The judges in the paper DAG (dry runs: seconds, no job runs): the judge section reaches only the
judge jobs (so editing it reruns judging and the report, nothing else), the judge jobs get the
benchmark's reference and prompt files, and the released-checkpoint overlay trains nothing."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from tests.conftest import copy_workflow

PAPER = ("--configfile", "config/paper.yaml")
RELEASED = ("--configfile", "config/paper.yaml", "config/experiments/released_checkpoints.yaml")


def planned(cwd, *args: str) -> dict[str, tuple[str, str]]:
    """What `snakemake -n -p` plans: first output -> (rule, shell command)."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = {}
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", proc.stdout):
        rule = re.search(r"^(?:local)?rule (\w+):", block, flags=re.M)
        output = re.search(r"^    output: ([^,\n]+)", block, flags=re.M)
        cmd = re.search(r"^Shell command: (.*)$", block, flags=re.M)
        if rule and output:
            jobs[output.group(1)] = (rule.group(1), cmd.group(1) if cmd else "")
    return jobs


KEY = re.compile(r"/[0-9a-f]{10}/")


def by_job(jobs: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """The plan by job (output path with its key left out) -> (rule, command with keys)."""
    return {KEY.sub("/<key>/", path): job for path, job in jobs.items()}


def changed_rules(before: dict, after: dict) -> dict[str, int]:
    """Jobs whose command (config sections and keyed paths included) differs: the jobs a config edit
    makes anew (in new keyed folders) or reruns."""
    before, after = by_job(before), by_job(after)
    out: dict[str, int] = {}
    for job, (rule, cmd) in before.items():
        if after[job][1] != cmd:
            out[rule] = out.get(rule, 0) + 1
    return out


def one(jobs: dict[str, tuple[str, str]], pattern: str) -> str:
    """The command of the one planned job whose first output matches `pattern` (keys as <key>)."""
    (cmd,) = [cmd for path, (_, cmd) in by_job(jobs).items() if re.fullmatch(pattern, path)]
    return cmd


def test_editing_the_judge_section_changes_only_the_judge_jobs(tmp_path):
    wf = copy_workflow(tmp_path)
    before = planned(wf, *PAPER)
    (wf / "judge_edit.yaml").write_text(
        yaml.safe_dump(
            {
                "judge": {
                    "endpoint": {"base_url": "http://127.0.0.1:8000/v1", "concurrency": 32},
                    "model": "Qwen2.5-72B-Instruct",
                    "mt_bench": {"model": None, "max_parse_retries": 5},
                }
            }
        )
    )
    after = planned(wf, *PAPER, "judge_edit.yaml")
    assert set(by_job(after)) == set(by_job(before))
    # the LLM-judged jobs are made anew (new keys) and the report reads them; nothing else changes, not
    # even the GSM8K and IFEval jobs, which lm-eval's code scores
    # (24 of the paper's grid and the 8 + 6 AlpacaEval 2 ones of its scaling sweep and best-of-N)
    assert changed_rules(before, after) == {"judge_answers": 38, "make_report": 1}


def test_judge_jobs_read_the_reference_and_prompt_files_from_sources(tmp_path):
    jobs = planned(copy_workflow(tmp_path), *PAPER)
    ae = one(jobs, r"results/judge_answers/llama31-8b/aft_on/seed42/agg/alpaca_eval2/<key>/result.json")
    mt = one(jobs, r"results/judge_answers/mistral-7b/sft/seed42/direct/mt_bench/<key>/result.json")
    assert "--reference results/download_source/alpaca_eval_reference/gpt4_1106_preview_outputs.json" in ae
    judgments = r"--judgments results/judge_answers/llama31-8b/aft_on/seed42/agg/alpaca_eval2/\w{10}/"
    assert re.search(judgments, ae)
    assert "--reference results/download_source/mt_bench_reference_answers/reference_answer_gpt-4.jsonl" in mt
    assert "--judge-prompts results/download_source/mt_bench_judge_prompts/judge_prompts.jsonl" in mt
    gen = one(jobs, r"results/generate_answers/mistral-7b/sft/seed42/direct/mt_bench/<key>/answers.jsonl")
    assert re.search(r"--model results/train_model/mistral-7b/sft/seed42/[0-9a-f]{10}/model ", gen)
    assert "--bench-name mt_bench" in gen


def test_released_checkpoints_overlay_trains_nothing_and_uses_the_official_template(tmp_path):
    jobs = planned(copy_workflow(tmp_path), *RELEASED)
    rules = {}
    for rule, _ in jobs.values():
        rules[rule] = rules.get(rule, 0) + 1
    assert {k: v for k, v in rules.items() if k != "download_source"} == {
        "fetch_model": 4,  # the four released checkpoints, once each
        "prepare_bench": 2,
        "generate_answers": 16,  # 2 bases x 2 released variants x {direct, agg} x 2 benchmarks
        "judge_answers": 16,
        "make_report": 1,
    }
    assert "results/download_source/aggregation_template/aggregation_template.txt" in jobs
    gen = one(jobs, r"results/generate_answers/llama31-8b/aft_off/seed42/agg/mt_bench/<key>/answers.jsonl")
    assert "--model results/fetch_model/linzw/Llama-AFT-Off-Policy/main/model " in gen
    assert '"template_file":"results/download_source/aggregation_template/aggregation_template.txt"' in gen
