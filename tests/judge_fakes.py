"""Test helpers for the judges: a scripted fake chat-completions server (for fault tests only: 500s,
429s, garbage, timeouts, a key echoed back; the real judge tests use a vLLM server) and a synthetic
df_gamed.csv, the data of alpaca-eval's length-controlled fit."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# A reply: (status, body text, headers, delay in seconds before answering)
Reply = tuple[int, str, dict[str, str], float]


def chat_reply(content: str, logprobs: list[dict] | None = None, prompt_tokens: int = 10) -> Reply:
    """A well-formed chat-completions reply with one choice."""
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": prompt_tokens + 2}
    return 200, json.dumps({"choices": [choice], "usage": usage}), {}, 0.0


# FastChat-shaped judge prompts with short templates (the real file is tested in test_mt_bench.py)
FAKE_JUDGE_PROMPTS = [
    {
        "name": n,
        "type": "single",
        "output_format": "[[rating]]",
        "system_prompt": f"SYS {n}",
        "prompt_template": t,
    }
    for n, t in (
        ("single-v1", "Q {question} A {answer}"),
        ("single-math-v1", "Q {question} R {ref_answer_1} A {answer}"),
        ("single-v1-multi-turn", "{question_1} {answer_1} {question_2} {answer_2}"),
        (
            "single-math-v1-multi-turn",
            "{question_1} {ref_answer_1} {answer_1} {question_2} {ref_answer_2} {answer_2}",
        ),
    )
]


class FakeJudgeServer:
    """Answers POST /v1/chat/completions with `script(request_number, body, headers)`; records requests
    and the most requests in flight at once."""

    def __init__(self, script: Callable[[int, dict, dict], Reply]) -> None:
        self.script = script
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.inflight = 0
        self.max_inflight = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                # header names are case-insensitive (the openai SDK sends "authorization"): one spelling
                headers = {k.title(): v for k, v in self.headers.items()}
                with lock:
                    k = len(server.requests)
                    server.requests.append(body)
                    server.headers.append(headers)
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    status, text, reply_headers, delay = server.script(k, body, headers)
                    time.sleep(delay)
                    data = text.encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for h, v in reply_headers.items():
                        self.send_header(h, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)
                finally:
                    with lock:
                        server.inflight -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeJudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_synthetic_df_gamed(path: Path, n_instructions: int = 805, seed: int = 0) -> Path:
    """A df_gamed.csv (alpaca-eval's length-controlled fit data: two "gamed" baselines per instruction)
    at `path`, as download_source writes the source alpaca_eval_lc_fit.

    Synthetic: made here, not the published file. Rows of the first model come first, in index order,
    so the row label of each instruction equals its index (alpaca-eval looks difficulty up by label)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0.0, 1.0, n_instructions)
    frames = []
    for model, sign in (("gpt4_1106_preview_verbose", 1.0), ("gpt4_1106_preview_concise", -1.0)):
        delta = sign * np.abs(rng.normal(1.0, 0.5, n_instructions))
        pref = 1.0 / (1.0 + np.exp(-(0.8 * np.tanh(delta) - 0.3 * difficulty)))
        frames.append(
            pd.DataFrame(
                {
                    "model": model,
                    "index": np.arange(n_instructions),
                    "preference": pref,
                    "std_delta_len": delta,
                    "instruction_difficulty": difficulty,
                    "not_gamed_baseline": False,
                }
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path
