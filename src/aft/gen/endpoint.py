"""One client for every OpenAI-compatible endpoint (the OpenAI API, a vLLM server): the judges and an API
teacher alike, configured by one schema (aft.pipeline.config.EndpointConfig).

The openai SDK is the transport (connection pool, auth header, its error types); the retry loop is ours
so that every cause is counted and every reply validated: 429, 408/409, 5xx, timeouts, connection
errors and malformed replies (not JSON, no choices, logprobs asked for and missing) are retried with
jittered exponential backoff, or after the server's Retry-After (seconds, Retry-After-ms, or an HTTP
date) when that is longer; never longer than `backoff_max_s`. At most `concurrency` requests are in
flight. Judgments are kept in a cache keyed by (judge, prompt hash), so a rerun never pays twice. The
API key is read from the environment, sent only in the Authorization header, never cached, and redacted
from every message this module writes.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from aft.method.interface import EngineStats, Message, Sampling, Seeds
from aft.pipeline.config import OPENAI_API, EndpointConfig
from aft.pipeline.io import atomic_write_text
from aft.pipeline.progress import Progress

log = logging.getLogger("aft")

RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
SHOWN_BODY_CHARS = 300
NO_KEY = "EMPTY"  # vLLM's convention for a server started without --api-key, which ignores it


class EndpointError(RuntimeError):
    """A request that cannot succeed: a non-retryable status, or retries exhausted."""


def endpoint_id(model: str, base_url: str | None) -> str:
    """Who answered: the model and the endpoint serving it (the cache's namespace)."""
    return f"{model}@{(base_url or OPENAI_API).rstrip('/')}"


def endpoint_label(model: str, base_url: str | None) -> str:
    """A readable name for reports: the model and where it was served."""
    host = "OpenAI API" if base_url is None else urlparse(base_url).netloc or base_url
    return f"{model} ({host})"


def is_openai_api(base_url: str | None) -> bool:
    return base_url is None or urlparse(base_url).netloc == urlparse(OPENAI_API).netloc


def backoff_s(
    retry: int, initial: float, maximum: float, retry_after: float | None = None, jitter: float = 1.0
) -> float:
    """Delay before retry number `retry` (1, 2, ...): initial x 2^(retry-1) scaled by `jitter` (a draw
    in [0.75, 1], so parallel clients spread out), or the server's Retry-After when that is longer;
    never above `maximum`."""
    delay = initial * 2 ** (retry - 1) * jitter
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, maximum)


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The server's requested wait in seconds: Retry-After-ms, Retry-After as seconds, or as an HTTP
    date; None when absent or unreadable."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return max(0.0, float(lowered[name]) / divisor)
        except (KeyError, ValueError):
            continue
    try:
        when = email.utils.parsedate_to_datetime(lowered["retry-after"])
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def redact(text: str, secret: str | None) -> str:
    """`text` with the secret (and any 8+ character piece of it a server may echo) replaced."""
    if not secret:
        return text
    text = text.replace(secret, "<redacted>")
    if len(secret) >= 16:  # servers echo masked keys ("sk-abc...wxyz"): drop long fragments too
        for k in range(len(secret) - 8 + 1):
            piece = secret[k : k + 8]
            if piece in text:
                text = text.replace(piece, "<redacted>")
    return text


def prompt_hash(request: Mapping) -> str:
    """The sha256 of a request body (messages and decoding settings), canonical JSON."""
    canon = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def _slug(text: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


@dataclass
class JudgmentCache:
    """One JSON file per judged request: <root>/<judge>/<hash[:2]>/<hash>.json, written atomically (so
    parallel jobs and killed ones leave no half-written entry)."""

    root: Path
    judge: str

    def path(self, request: Mapping) -> Path:
        h = prompt_hash(request)
        return Path(self.root) / _slug(self.judge) / h[:2] / f"{h}.json"

    def get(self, request: Mapping) -> dict | None:
        path = self.path(request)
        if not path.is_file():
            return None
        entry = json.loads(path.read_text())
        return entry["response"] if entry.get("request") == request else None

    def put(self, request: Mapping, response: dict) -> None:
        entry = {"judge": self.judge, "request": request, "response": response}
        atomic_write_text(self.path(request), json.dumps(entry, ensure_ascii=False) + "\n")


@dataclass
class EndpointStats:
    """What the endpoint cost: calls answered, cache hits, retries and their causes, tokens."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: Counter = field(default_factory=Counter)

    def as_dict(self, prefix: str = "judge_") -> dict[str, int]:
        out = {f"{prefix}{k}": v for k, v in self.__dict__.items() if k != "errors"}
        return out | {f"{prefix}errors_{k}": v for k, v in sorted(self.errors.items())}


def _validate(body: object, want_logprobs: bool, chat: bool = True) -> list[dict]:
    """The choices of a reply, sorted by index; ValueError when the reply is malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        raise ValueError("reply has no choices")
    choices = body["choices"]
    if not all(isinstance(c, dict) for c in choices):
        raise ValueError("reply's choices are not objects")
    for choice in choices:
        if chat:
            message = choice.get("message")
            if not isinstance(message, dict) or not isinstance(message.get("content", ""), str | None):
                raise ValueError("reply's choice has no message")
        elif not isinstance(choice.get("text"), str):
            raise ValueError("reply's choice has no text")
    if want_logprobs:
        content = (choices[0].get("logprobs") or {}).get("content")
        if not isinstance(content, list) or not content:
            raise ValueError("logprobs were asked for but the reply has none (does the server support them?)")
    return sorted(choices, key=lambda c: c.get("index", 0))


class EndpointClient:
    """Requests to one model on one endpoint: retried, rate-limited, and (with a cache) cached."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        model: str,
        cache_dir: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        from openai import OpenAI

        env = os.environ if environ is None else environ
        self.cfg = endpoint
        self.model = model
        self.base_url = (endpoint.base_url or OPENAI_API).rstrip("/")
        self.id = endpoint_id(model, endpoint.base_url)
        self.label = endpoint_label(model, endpoint.base_url)
        self.cache = JudgmentCache(Path(cache_dir), self.id) if cache_dir is not None else None
        self.stats = EndpointStats()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._key = env.get(endpoint.api_key_env) or None
        if self._key is None and is_openai_api(endpoint.base_url):
            raise EndpointError(
                f"environment variable {endpoint.api_key_env} (the OpenAI API key) is not set"
            )
        if self._key is None:
            log.info(
                "%s is not set: %s gets the placeholder key %s", endpoint.api_key_env, self.base_url, NO_KEY
            )
        # the SDK's own retries are off: the loop in _post retries, counts causes and validates replies
        self._sdk = OpenAI(
            base_url=self.base_url, api_key=self._key or NO_KEY, max_retries=0, timeout=endpoint.timeout_s
        )

    def close(self) -> None:
        self._sdk.close()

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, messages: list[dict], **decoding: object) -> dict:
        """The request body the endpoint gets (decoding: temperature, max_tokens, logprobs, ...)."""
        return {"model": self.model, "messages": messages, "n": 1, **decoding}

    def chat(self, request: dict, attempt: int = 0) -> dict:
        """The first choice of a chat reply (OpenAI's JSON: message, logprobs, finish_reason) plus "usage".

        `attempt` > 0 asks the same prompt again (a judgment that could not be parsed): a separate
        cache entry, so a rerun replays the same sequence of answers."""
        key = {**request, "_attempt": attempt} if attempt else request
        cached = self.cache.get(key) if self.cache else None
        if cached is not None:
            with self._lock:
                self.stats.cache_hits += 1
            return cached
        choices, usage = self._post(request, chat=True)
        response = {**choices[0], "usage": usage}
        if self.cache:
            self.cache.put(key, response)
        return response

    def chat_many(self, requests: list[dict], attempts: list[int] | None = None) -> list[dict]:
        """`chat` over many requests, at most `concurrency` in flight; results in request order."""
        attempts = attempts or [0] * len(requests)
        return self.parallel(self.chat, requests, attempts)

    def choices(self, request: dict, chat: bool = True) -> list[dict]:
        """Every choice of one reply (chat completions, or text completions with chat=False); uncached."""
        return self._post(request, chat=chat)[0]

    def parallel(self, fn: Callable, *columns: list) -> list:
        """fn over the rows of `columns`, at most `concurrency` at a time; results in row order. A line in
        the log about every tenth of the calls: done/total, rate, ETA, retries and cache hits so far."""
        progress = Progress(f"endpoint {self.label}", len(columns[0]), "calls", extra=self._so_far)

        def one(*row):
            out = fn(*row)
            progress.advance()
            return out

        if len(columns[0]) <= 1 or self.cfg.concurrency == 1:
            return [one(*row) for row in zip(*columns, strict=True)]
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            return list(pool.map(one, *columns))

    def _so_far(self) -> str:
        s = self.stats
        return f"{s.retries} retries, {s.cache_hits} cache hits, errors {dict(s.errors) or 'none'}"

    def _send(self, request: dict, chat: bool):
        """One attempt through the SDK; its raw HTTP response (status 200: anything else raises)."""
        api = self._sdk.chat.completions if chat else self._sdk.completions
        return api.with_raw_response.create(**request).http_response

    def _post(self, request: dict, chat: bool) -> tuple[list[dict], dict]:
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        want_logprobs = bool(request.get("logprobs")) and chat
        for retry in range(self.cfg.max_retries + 1):
            retry_after = None
            try:
                reply = self._send(request, chat).json()
                if self._key and self._key in json.dumps(reply, ensure_ascii=False):
                    # a server that echoes the key in a reply: no caller, cache or file ever sees it
                    reply = json.loads(redact(json.dumps(reply, ensure_ascii=False), self._key))
                choices = _validate(reply, want_logprobs, chat)
                usage = reply["usage"] if isinstance(reply.get("usage"), dict) else {}
                with self._lock:
                    self.stats.calls += 1
                    self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                    self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
                return choices, usage
            except APIStatusError as err:
                body = redact(err.response.text[:SHOWN_BODY_CHARS], self._key)
                if err.status_code not in RETRY_STATUS:
                    raise EndpointError(
                        f"{self.label}: HTTP {err.status_code} (not retried): {body}"
                    ) from None
                kind, detail = f"http_{err.status_code}", body
                retry_after = retry_after_s(err.response.headers)
            except APITimeoutError:
                kind, detail = "timeout", f"no reply within {self.cfg.timeout_s} s"
            except APIConnectionError as err:
                cause = err.__cause__ or err
                kind, detail = "connection", redact(f"{type(cause).__name__}: {cause}", self._key)
            except ValueError as err:  # JSON that does not parse, or a reply without what we need
                kind, detail = "malformed", redact(str(err)[:SHOWN_BODY_CHARS], self._key)
            with self._lock:
                self.stats.errors[kind] += 1
            if retry == self.cfg.max_retries:
                raise EndpointError(
                    f"{self.label}: gave up after {retry + 1} attempts; last error {kind}: {detail}"
                )
            jitter = 1.0 - 0.25 * self._rng.random()
            delay = backoff_s(
                retry + 1, self.cfg.backoff_initial_s, self.cfg.backoff_max_s, retry_after, jitter
            )
            log.warning(
                "endpoint %s: %s (%s); retry %d/%d in %.1f s",
                self.label,
                kind,
                detail[:120],
                retry + 1,
                self.cfg.max_retries,
                delay,
            )
            with self._lock:
                self.stats.retries += 1
            self._sleep(delay)
        raise AssertionError("unreachable")


@dataclass
class EndpointEngine:
    """The Engine interface (aft.method.interface) over an EndpointClient: a teacher served elsewhere."""

    client: EndpointClient
    seed: int | None = None
    stats: EngineStats = field(default_factory=EngineStats)

    def _body(self, sampling: Sampling, seed: int | None) -> dict:
        body = {
            "model": self.client.model,
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": self.seed if seed is None else seed,
        }
        return body | ({"stop": list(sampling.stop)} if sampling.stop else {})

    def _run(self, requests: list[dict], chat: bool) -> list[list[dict]]:
        """Every request's choices, in parallel, with their tokens added to this engine's stats."""
        tokens_in, tokens_out = self.client.stats.prompt_tokens, self.client.stats.completion_tokens
        replies = self.client.parallel(lambda r: self.client.choices(r, chat=chat), requests)
        self.stats.requests += len(requests)
        self.stats.prompt_tokens += self.client.stats.prompt_tokens - tokens_in
        self.stats.generated_tokens += self.client.stats.completion_tokens - tokens_out
        return replies

    def chat(
        self, conversations: list[list[Message]], sampling: Sampling, seeds: Seeds = None
    ) -> list[list[str]]:
        per = seeds if seeds is not None else [None] * len(conversations)
        requests = [self._body(sampling, s) | {"messages": c} for c, s in zip(conversations, per)]
        return [[c["message"].get("content") or "" for c in ch] for ch in self._run(requests, chat=True)]

    def complete(self, prompts: list[str], sampling: Sampling, seeds: Seeds = None) -> list[list[str]]:
        per = seeds if seeds is not None else [None] * len(prompts)
        requests = [self._body(sampling, s) | {"prompt": p} for p, s in zip(prompts, per)]
        return [[c["text"] for c in ch] for ch in self._run(requests, chat=False)]
