"""Progress lines a person can follow in a job's log (aft.pipeline.progress) and the console's summary at
the end of a run (aft.pipeline.summary): what is done, the rate, the time left, at about every tenth."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

from aft.pipeline.progress import (
    Progress,
    checkpoints,
    duration,
    log_bar,
    progress_line,
    training_line,
    training_progress,
)
from aft.pipeline.summary import run_summary


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_lines_say_done_rate_and_time_left():
    assert duration(0) == "0:00:00" and duration(0.2) == "0:00:01" and duration(3725) == "1:02:05"
    assert progress_line("judge", 0, 805, 0.0, "calls") == "judge: 0/805 calls (0%)"
    assert (
        progress_line("judge", 81, 805, 27.0, "calls", "0 retries")
        == "judge: 81/805 calls (10%), 3.00 calls/s, ETA 0:04:02, 0 retries"
    )
    assert (
        training_line(120, 430, 0.61494, 4210.4, 18.2)
        == "step 120/430 (28%), loss 0.6149, 4,210 tokens/s, ETA 0:00:19"
    )
    assert training_line(1, 430, None, None, None) == "step 1/430 (0%)"


def test_a_line_about_every_tenth_and_at_the_end_from_any_thread():
    assert checkpoints(805) == {81, 162, 243, 324, 405, 486, 567, 648, 729, 805}
    assert checkpoints(3) == {1, 2, 3} and checkpoints(0) == set()
    lines, clock = [], Clock()
    p = Progress("endpoint x", 805, "calls", extra=lambda: "0 retries", clock=clock, emit=lines.append)

    def work():
        for _ in range(161):
            clock.t += 0.1
            p.advance()

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.done == 805 and len(lines) == 10  # one a checkpoint, none twice, none missed
    assert lines[-1].startswith("endpoint x: 805/805 calls (100%)") and lines[-1].endswith("0 retries")
    big = Progress("x", 100, emit=lines.append, clock=clock)
    big.advance(35)  # a jump over several checkpoints: one line
    assert lines[-1].startswith("x: 35/100 items (35%)") and len(lines) == 11


def test_a_library_progress_bar_becomes_lines_with_its_postfix():
    lines = []
    bar_type = log_bar("vLLM", "prompts")
    bar = bar_type(total=20, desc="Processed prompts", postfix="est. speed input: 0.00 toks/s")
    bar.progress.emit = lines.append
    for _ in range(20):
        bar.postfix = "est. speed input: 5.00 toks/s"
        bar.update(4)  # vLLM adds a request's samples; the line counts requests
    bar.close()
    assert len(lines) == 10 and lines[0].startswith("vLLM: 2/20 prompts (10%)")
    assert lines[-1].startswith("vLLM: 20/20 prompts (100%)") and "est. speed input: 5.00 toks/s" in lines[-1]
    assert bar.format_dict["elapsed"] >= 0  # what vLLM reads for its rates


def test_training_lines_at_the_first_step_each_tenth_and_every_minute():
    lines, clock = [], Clock()
    cb = training_progress(every_s=60, clock=clock, emit=lines.append)
    state = SimpleNamespace(global_step=0, max_steps=100, is_world_process_zero=True)
    cb.on_train_begin(None, state, None)
    for step in range(1, 101):
        clock.t += 2.0 if step < 50 else 40.0
        state.global_step = step
        cb.on_log(None, state, None, logs={"loss": 1.0 / step, "num_tokens": 500.0 * step})
    steps = [int(line.split()[1].split("/")[0]) for line in lines]
    # the first and every tenth (2 s a step: never a minute between), then at 40 s a step every other step
    assert steps[:9] == [1, 10, 20, 30, 40, 50, 52, 54, 56] and steps[-1] == 100
    assert (
        "tokens/s" in lines[1] and "ETA" in lines[1] and lines[0].startswith("step 1/100 (1%), loss 1.0000")
    )
    assert lines[1] == "step 10/100 (10%), loss 0.1000, 250 tokens/s, ETA 0:03:00"
    # logged every 7 steps: the first logged step past each tenth
    out: list[str] = []
    sparse = training_progress(every_s=1e9, clock=clock, emit=out.append)
    state7 = SimpleNamespace(global_step=0, max_steps=100, is_world_process_zero=True)
    sparse.on_train_begin(None, state7, None)
    for step in range(7, 101, 7):
        clock.t += 1.0
        state7.global_step = step
        sparse.on_log(None, state7, None, logs={"loss": 0.5})
    lines7 = [int(line.split()[1].split("/")[0]) for line in out]
    assert lines7 == [7, 14, 21, 35, 42, 56, 63, 70, 84, 91]
    other = SimpleNamespace(global_step=5, max_steps=100, is_world_process_zero=False)
    before = len(lines)
    cb.on_log(None, other, None, logs={"loss": 1.0})
    assert len(lines) == before  # rank 0 only


def test_the_console_summary_names_the_report_and_every_claim(tmp_path):
    assert run_summary(tmp_path) == ""  # no report made: nothing to say
    where = {"base": "mini", "bench": "exact_match"}
    claims = [
        where
        | {"claim": "AFT-on-policy > SFT", "difference": 4.3, "lo": 1.8, "hi": 6.7, "verdict": "reproduced"},
        where | {"claim": "w/ Agg. > majority vote", "difference": -4.8, "lo": -6.9, "hi": -2.6},
    ]
    claims[1]["verdict"] = "contradicted"
    (tmp_path / "results.json").write_text(json.dumps({"claims": claims}))
    text = run_summary(tmp_path).splitlines()
    assert text[0] == f"Report: {tmp_path}/results.md (also results.html, plots beside it)"
    assert text[1] == "Claims: 1 reproduced, 1 contradicted, 0 inconclusive"
    assert text[2] == "  mini exact_match: AFT-on-policy > SFT: +4.3 [+1.8, +6.7] -> reproduced"
