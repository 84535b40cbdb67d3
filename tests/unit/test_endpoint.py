"""The endpoint client (judges and an API teacher): backoff schedule with jitter, Retry-After in every
form, retries on 500/429/garbage/timeouts against a scripted fake server (fault tests only), the
judgment cache, the concurrency limit, the engine over it, and a canary key that must never leak."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time

import pytest

from aft.gen.endpoint import (
    EndpointClient,
    EndpointEngine,
    EndpointError,
    backoff_s,
    endpoint_id,
    endpoint_label,
    prompt_hash,
    redact,
    retry_after_s,
)
from aft.method.interface import Sampling
from aft.pipeline.config import EndpointConfig
from tests.judge_fakes import FakeJudgeServer, chat_reply

CANARY = "sk-canary-5f1d0c9e7b2a4e3f8a6b1c2d3e4f5a6b"
ENV = {"AFT_TEST_KEY": CANARY}
MSG = [{"role": "user", "content": "rate this"}]


def endpoint(base_url: str | None, **over: object) -> EndpointConfig:
    cfg = {
        "base_url": base_url,
        "api_key_env": "AFT_TEST_KEY",
        "concurrency": 4,
        "timeout_s": 0.5,
        "max_retries": 3,
        "backoff_initial_s": 1.0,
        "backoff_max_s": 5.0,
    }
    return EndpointConfig(**(cfg | over))


class NoJitter(random.Random):
    """Jitter's draw pinned to 0: each delay is its schedule's upper bound (test_jitter_* tests the draw)."""

    def random(self) -> float:
        return 0.0


def client(server: FakeJudgeServer, tmp_path, sleeps: list | None = None, **over: object) -> EndpointClient:
    record = sleeps.append if sleeps is not None else (lambda s: None)
    cfg = endpoint(server.base_url, **over)
    return EndpointClient(cfg, "judge-x", tmp_path / "cache", ENV, sleep=record, rng=NoJitter())


BACKOFF = [
    ("first", 1, 1.0, 60.0, None, 1.0),
    ("doubles", 4, 1.0, 60.0, None, 8.0),
    ("capped", 10, 1.0, 60.0, None, 60.0),
    ("retry-after-longer", 1, 1.0, 60.0, 7.0, 7.0),
    ("retry-after-shorter", 3, 1.0, 60.0, 0.5, 4.0),
    ("retry-after-capped", 1, 1.0, 5.0, 30.0, 5.0),
]


@pytest.mark.parametrize(
    ("case", "retry", "initial", "cap", "after", "expected"), BACKOFF, ids=[b[0] for b in BACKOFF]
)
def test_backoff_schedule(case, retry, initial, cap, after, expected):
    assert backoff_s(retry, initial, cap, after) == expected


def test_500_garbage_and_timeout_are_retried_with_backoff_then_answered(tmp_path):
    script = {
        0: (500, '{"error": "boom"}', {}, 0.0),
        1: (200, "this is not json <html>", {}, 0.0),
        2: chat_reply("late", prompt_tokens=1)[:3] + (2.0,),  # arrives after the 0.5 s timeout
    }
    sleeps: list[float] = []
    with FakeJudgeServer(lambda k, b, h: script.get(k, chat_reply("Rating: [[7]]"))) as srv:
        c = client(srv, tmp_path, sleeps)
        reply = c.chat(c.request(MSG, temperature=0.0, max_tokens=16))
    assert reply["message"]["content"] == "Rating: [[7]]"
    assert reply["usage"]["completion_tokens"] == 2
    assert len(srv.requests) == 4
    assert sleeps == [1.0, 2.0, 4.0]
    assert (c.stats.calls, c.stats.retries, c.stats.cache_hits) == (1, 3, 0)
    assert dict(c.stats.errors) == {"http_500": 1, "malformed": 1, "timeout": 1}
    assert srv.requests[0] == {
        "model": "judge-x",
        "messages": MSG,
        "n": 1,
        "temperature": 0.0,
        "max_tokens": 16,
    }


def test_429_waits_for_retry_after_up_to_the_cap(tmp_path):
    script = {
        0: (429, "slow down", {"Retry-After": "3"}, 0.0),
        1: (429, "slow down", {"Retry-After": "99"}, 0.0),
    }
    sleeps: list[float] = []
    with FakeJudgeServer(lambda k, b, h: script.get(k, chat_reply("ok"))) as srv:
        c = client(srv, tmp_path, sleeps)
        c.chat(c.request(MSG, temperature=0.0, max_tokens=4))
    assert sleeps == [3.0, 5.0]  # Retry-After 3 > 1 s; 99 is cut to the 5 s cap
    assert dict(c.stats.errors) == {"http_429": 2}


def test_gives_up_after_max_retries_and_caches_nothing(tmp_path):
    with FakeJudgeServer(lambda k, b, h: (503, "overloaded", {}, 0.0)) as srv:
        c = client(srv, tmp_path, [])
        with pytest.raises(EndpointError, match="gave up after 4 attempts; last error http_503: overloaded"):
            c.chat(c.request(MSG, temperature=0.0, max_tokens=4))
    assert len(srv.requests) == 4
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_client_errors_are_not_retried(tmp_path):
    with FakeJudgeServer(lambda k, b, h: (400, '{"error": "bad model"}', {}, 0.0)) as srv:
        c = client(srv, tmp_path, [])
        with pytest.raises(EndpointError, match="HTTP 400 \\(not retried\\)"):
            c.chat(c.request(MSG, temperature=0.0, max_tokens=4))
    assert len(srv.requests) == 1


def test_a_reply_without_the_logprobs_asked_for_is_retried(tmp_path):
    lp = [{"token": "m", "logprob": -0.1, "top_logprobs": [{"token": "m", "logprob": -0.1}]}]
    script = {0: chat_reply("m")}
    with FakeJudgeServer(lambda k, b, h: script.get(k, chat_reply("m", logprobs=lp))) as srv:
        c = client(srv, tmp_path, [])
        reply = c.chat(c.request(MSG, temperature=1.0, max_tokens=1, logprobs=True, top_logprobs=5))
    assert reply["logprobs"]["content"] == lp
    assert dict(c.stats.errors) == {"malformed": 1}


def test_cache_is_keyed_by_judge_and_prompt_and_a_rerun_never_pays_twice(tmp_path):
    with FakeJudgeServer(lambda k, b, h: chat_reply(f"answer {k}")) as srv:
        first = client(srv, tmp_path)
        req = first.request(MSG, temperature=0.0, max_tokens=8)
        assert first.chat(req)["message"]["content"] == "answer 0"
        rerun = client(srv, tmp_path)
        assert rerun.chat(req)["message"]["content"] == "answer 0"
        assert (rerun.stats.calls, rerun.stats.cache_hits) == (0, 1)
        assert rerun.chat(req, attempt=1)["message"]["content"] == "answer 1"  # a re-ask is a new entry
        other_prompt = rerun.request([{"role": "user", "content": "other"}], temperature=0.0, max_tokens=8)
        assert rerun.chat(other_prompt)["message"]["content"] == "answer 2"
        other_judge = EndpointClient(endpoint(srv.base_url), "judge-y", tmp_path / "cache", ENV)
        assert other_judge.chat(other_judge.request(MSG, temperature=0.0, max_tokens=8))["message"][
            "content"
        ] == ("answer 3")
    assert len(srv.requests) == 4
    entry = json.loads(first.cache.path(req).read_text())
    assert entry["judge"] == endpoint_id("judge-x", srv.base_url) and entry["request"] == req
    assert first.cache.path(req).stem == prompt_hash(req)


def test_concurrency_is_limited(tmp_path):
    with FakeJudgeServer(lambda k, b, h: chat_reply(b["messages"][0]["content"])[:3] + (0.15,)) as srv:
        c = client(srv, tmp_path, concurrency=2)
        reqs = [
            c.request([{"role": "user", "content": f"q{i}"}], temperature=0.0, max_tokens=4) for i in range(8)
        ]
        started = time.time()
        replies = c.chat_many(reqs)
    assert [r["message"]["content"] for r in replies] == [f"q{i}" for i in range(8)]  # order kept
    assert srv.max_inflight == 2
    assert time.time() - started >= 4 * 0.15


def test_canary_key_reaches_the_server_and_nowhere_else(tmp_path, caplog):
    """The server echoes the Authorization header in its errors (the worst case): the key must not show
    up in any log record, exception, or cache file."""

    def script(k: int, body: dict, headers: dict):
        if k < 2:
            return 500, f"internal error for {headers.get('Authorization')}", {}, 0.0
        if k == 2:
            return chat_reply("ok")
        return 401, f"Incorrect API key provided: {headers.get('Authorization')}", {}, 0.0

    caplog.set_level(logging.DEBUG)
    with FakeJudgeServer(script) as srv:
        c = client(srv, tmp_path, [])
        c.chat(c.request(MSG, temperature=0.0, max_tokens=4))
        with pytest.raises(EndpointError) as err:
            c.chat(c.request([{"role": "user", "content": "again"}], temperature=0.0, max_tokens=4))
    assert srv.headers[0]["Authorization"] == f"Bearer {CANARY}"
    assert CANARY not in str(err.value) and "<redacted>" in str(err.value)
    assert CANARY[4:20] not in caplog.text and CANARY not in caplog.text
    assert "retry 1/3" in caplog.text
    for f in (tmp_path / "cache").rglob("*"):
        if f.is_file():
            assert CANARY not in f.read_text()


def test_redact_removes_the_key_and_echoed_fragments():
    assert redact(f"key {CANARY} end", CANARY) == "key <redacted> end"
    assert CANARY[-10:] not in redact(f"Incorrect API key provided: sk-can***{CANARY[-10:]}", CANARY)
    assert redact("nothing secret", None) == "nothing secret"


def test_the_openai_api_needs_its_key(tmp_path):
    with pytest.raises(EndpointError, match="environment variable AFT_TEST_KEY"):
        EndpointClient(endpoint(None), "gpt-4-0613", tmp_path, environ={})


def test_judge_names():
    assert endpoint_label("gpt-4-1106-preview", None) == "gpt-4-1106-preview (OpenAI API)"
    assert endpoint_label("tiny", "http://127.0.0.1:8000/v1") == "tiny (127.0.0.1:8000)"
    assert endpoint_id("tiny", "http://h:1/v1/") == "tiny@http://h:1/v1"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After-Ms": "250", "Retry-After": "9"}, 0.25),  # milliseconds win, as in the SDK
        ({"Retry-After": email.utils.formatdate(1_000_030.0, usegmt=True)}, 30.0),  # an HTTP date
        ({"Retry-After": email.utils.formatdate(999_000.0, usegmt=True)}, 0.0),  # a date in the past
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
    ids=["seconds", "float", "ms", "http-date", "past-date", "garbage", "absent"],
)
def test_retry_after_in_every_form(headers, expected):
    assert retry_after_s(headers, now=1_000_000.0) == expected


def test_jitter_spreads_the_schedule_below_its_bound():
    draws = [backoff_s(3, 1.0, 60.0, None, 1.0 - 0.25 * random.Random(s).random()) for s in range(200)]
    assert all(3.0 <= d <= 4.0 for d in draws) and len(set(draws)) == 200


def test_an_http_date_retry_after_is_waited_for(tmp_path):
    later = email.utils.formatdate(time.time() + 4.0, usegmt=True)
    script = {0: (503, "busy", {"Retry-After": later}, 0.0)}
    sleeps: list[float] = []
    with FakeJudgeServer(lambda k, b, h: script.get(k, chat_reply("ok"))) as srv:
        c = client(srv, tmp_path, sleeps, backoff_max_s=10.0)
        c.chat(c.request(MSG, temperature=0.0, max_tokens=4))
    assert len(sleeps) == 1 and 2.0 <= sleeps[0] <= 4.0  # the date, not the 1 s schedule


def test_engine_over_the_client_returns_every_choice_seeded_and_counts_tokens(tmp_path):
    """An API teacher: n choices per request, in index order, the per-request seed sent, tokens added."""

    def script(k, body, headers):
        choices = [
            {"index": i, "message": {"role": "assistant", "content": f"{body['seed']}-{i}"}}
            for i in reversed(range(body["n"]))
        ]
        usage = {"prompt_tokens": 5, "completion_tokens": 3 * body["n"]}
        return 200, json.dumps({"choices": choices, "usage": usage}), {}, 0.0

    with FakeJudgeServer(script) as srv:
        engine = EndpointEngine(client(srv, tmp_path), seed=7)
        out = engine.chat([MSG, MSG], Sampling(2, 0.7, 0.9, 16, ("</s>",)), seeds=[11, None])
    assert out == [["11-0", "11-1"], ["7-0", "7-1"]]
    assert sorted(r["seed"] for r in srv.requests) == [7, 11]
    assert next(r for r in srv.requests if r["seed"] == 11) == {
        "model": "judge-x",
        "messages": MSG,
        "n": 2,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 16,
        "seed": 11,
        "stop": ["</s>"],
    }
    assert (engine.stats.requests, engine.stats.prompt_tokens, engine.stats.generated_tokens) == (2, 10, 12)
    assert not (tmp_path / "cache").exists()  # the engine's requests are not judgments: nothing cached


def test_a_key_echoed_in_a_good_reply_is_redacted_before_it_is_cached_or_returned(tmp_path):
    with FakeJudgeServer(lambda k, b, h: chat_reply(f"your key is {h.get('Authorization')}")) as srv:
        c = client(srv, tmp_path, [])
        reply = c.chat(c.request(MSG, temperature=0.0, max_tokens=4))
        # the uncached path too (a teacher's EndpointEngine): what it returns is written to results/
        (choice,) = c.choices(c.request(MSG, temperature=0.5, max_tokens=4))
    assert CANARY not in reply["message"]["content"] and "<redacted>" in reply["message"]["content"]
    assert CANARY not in json.dumps(choice) and "<redacted>" in choice["message"]["content"]
    cached = [f.read_text() for f in (tmp_path / "cache").rglob("*.json")]
    assert len(cached) == 1 and CANARY not in cached[0] and CANARY[4:20] not in cached[0]
