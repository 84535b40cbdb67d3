"""A judge's endpoint: any OpenAI-compatible chat-completions server (the OpenAI API, a vLLM server).

Retries with exponential backoff on 429, 5xx, timeouts, connection errors and malformed replies; at most
`concurrency` requests in flight; every answered request is kept in a judgment cache keyed by
(judge, prompt hash), so a rerun never pays twice. The API key is read from the environment, sent only
in the Authorization header, never cached, and redacted from every message this module writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from aft.pipeline.config import OPENAI_API, JudgeEndpointConfig
from aft.pipeline.io import atomic_write_text

log = logging.getLogger("aft")

RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
SHOWN_BODY_CHARS = 300


class JudgeError(RuntimeError):
    """A judge request that cannot succeed: a non-retryable status, or retries exhausted."""


def judge_id(model: str, base_url: str | None) -> str:
    """Who judged: the model and the endpoint serving it (the cache's namespace)."""
    return f"{model}@{(base_url or OPENAI_API).rstrip('/')}"


def judge_label(model: str, base_url: str | None) -> str:
    """A readable judge name for reports: the model and where it was served."""
    host = "OpenAI API" if base_url is None else urlparse(base_url).netloc or base_url
    return f"{model} ({host})"


def is_openai_api(base_url: str | None) -> bool:
    return base_url is None or urlparse(base_url).netloc == urlparse(OPENAI_API).netloc


def backoff_s(retry: int, initial: float, maximum: float, retry_after: float | None = None) -> float:
    """Delay before retry number `retry` (1, 2, ...): initial x 2^(retry-1), or the server's Retry-After
    when that is longer; never above `maximum`."""
    delay = initial * 2 ** (retry - 1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, maximum)


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
class JudgeStats:
    """What judging cost: endpoint calls (answered), cache hits, retries and their causes, tokens."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: Counter = field(default_factory=Counter)

    def as_dict(self, prefix: str = "judge_") -> dict[str, int]:
        out = {f"{prefix}{k}": v for k, v in self.__dict__.items() if k != "errors"}
        return out | {f"{prefix}errors_{k}": v for k, v in sorted(self.errors.items())}


def _validate(body: object, want_logprobs: bool) -> dict:
    """The first choice of a chat-completions reply; ValueError when the reply is malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        raise ValueError("reply has no choices")
    choice = body["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content", ""), str | None):
        raise ValueError("reply's first choice has no message")
    if want_logprobs:
        content = (choice.get("logprobs") or {}).get("content")
        if not isinstance(content, list) or not content:
            raise ValueError("logprobs were asked for but the reply has none (does the server support them?)")
    return choice


class JudgeClient:
    """Chat completions from one judge model on one endpoint, cached, retried and rate-limited."""

    def __init__(
        self,
        endpoint: JudgeEndpointConfig,
        model: str,
        cache_dir: str | Path,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx

        env = os.environ if environ is None else environ
        self.cfg = endpoint
        self.model = model
        self.base_url = (endpoint.base_url or OPENAI_API).rstrip("/")
        self.judge = judge_id(model, endpoint.base_url)
        self.label = judge_label(model, endpoint.base_url)
        self.cache = JudgmentCache(Path(cache_dir), self.judge)
        self.stats = JudgeStats()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._key = env.get(endpoint.api_key_env) or None
        if self._key is None and is_openai_api(endpoint.base_url):
            raise JudgeError(f"environment variable {endpoint.api_key_env} (the OpenAI API key) is not set")
        if self._key is None:
            log.info(
                "%s is not set: no Authorization header is sent to %s", endpoint.api_key_env, self.base_url
            )
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=endpoint.timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JudgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, messages: list[dict], **decoding: object) -> dict:
        """The request body the endpoint gets (decoding: temperature, max_tokens, logprobs, ...)."""
        return {"model": self.model, "messages": messages, "n": 1, **decoding}

    def chat(self, request: dict, attempt: int = 0) -> dict:
        """The first choice of a reply (OpenAI's JSON: message, logprobs, finish_reason) plus "usage".

        `attempt` > 0 asks the same prompt again (a judgment that could not be parsed): a separate
        cache entry, so a rerun replays the same sequence of answers."""
        key = {**request, "_attempt": attempt} if attempt else request
        cached = self.cache.get(key)
        if cached is not None:
            with self._lock:
                self.stats.cache_hits += 1
            return cached
        response = self._post(request)
        self.cache.put(key, response)
        return response

    def chat_many(self, requests: list[dict], attempts: list[int] | None = None) -> list[dict]:
        """`chat` over many requests, at most `concurrency` in flight; results in request order."""
        attempts = attempts or [0] * len(requests)
        if len(requests) <= 1 or self.cfg.concurrency == 1:
            return [self.chat(r, a) for r, a in zip(requests, attempts, strict=True)]
        with ThreadPoolExecutor(self.cfg.concurrency) as pool:
            return list(pool.map(self.chat, requests, attempts))

    def _post(self, request: dict) -> dict:
        import httpx

        want_logprobs = bool(request.get("logprobs"))
        for retry in range(self.cfg.max_retries + 1):
            retry_after = None
            try:
                resp = self._http.post("/chat/completions", json=request)
                if resp.status_code == 200:
                    reply = resp.json()
                    choice = _validate(reply, want_logprobs)
                    usage = reply["usage"] if isinstance(reply.get("usage"), dict) else {}
                    with self._lock:
                        self.stats.calls += 1
                        self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                        self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
                    return {**choice, "usage": usage}
                body = redact(resp.text[:SHOWN_BODY_CHARS], self._key)
                if resp.status_code not in RETRY_STATUS:
                    raise JudgeError(
                        f"judge {self.label}: HTTP {resp.status_code} (not retried): {body}"
                    ) from None
                kind, detail = f"http_{resp.status_code}", body
                retry_after = _retry_after(resp.headers.get("retry-after"))
            except httpx.TimeoutException:
                kind, detail = "timeout", f"no reply within {self.cfg.timeout_s} s"
            except httpx.TransportError as err:
                kind, detail = "connection", redact(f"{type(err).__name__}: {err}", self._key)
            except ValueError as err:  # JSON that does not parse, or a reply without what we need
                kind, detail = "malformed", redact(str(err)[:SHOWN_BODY_CHARS], self._key)
            with self._lock:
                self.stats.errors[kind] += 1
            if retry == self.cfg.max_retries:
                raise JudgeError(
                    f"judge {self.label}: gave up after {retry + 1} attempts; last error {kind}: {detail}"
                )
            delay = backoff_s(retry + 1, self.cfg.backoff_initial_s, self.cfg.backoff_max_s, retry_after)
            log.warning(
                "judge %s: %s (%s); retry %d/%d in %.1f s",
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


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own schedule
