"""Cloudflare Workers KV over its REST API (httpx): bulk write (each value's digest as its metadata), bulk
delete, single-key write and read, key listing.

Published contract honoured: Bearer token; bulk bodies of at most 10,000 pairs and 100 MB, values base64;
429 and 5xx retried with exponential backoff and full jitter, waiting at least ``Retry-After``; at most
1,200 requests per 5 minutes per token; a timeout on every request. The token comes only from the
environment and never appears in a message, a log line or an exception.
"""

from __future__ import annotations

import base64
import email.utils
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from personalizer.digits import ascii_digits

from .plan import digest_metadata, metadata_digest

API = "https://api.cloudflare.com/client/v4"
RATE_LIMIT = (1200, 300.0)  # requests, seconds


class PushError(Exception):
    """A request that failed for good (after retries, or not retryable). Carries the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimiter:
    """Sliding window: never more than ``limit`` requests in any ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.limit, self.window_s, self.clock, self.sleep = limit, window_s, clock, sleep
        self.sent: deque[float] = deque()

    def acquire(self) -> None:
        while True:
            now = self.clock()
            while self.sent and now - self.sent[0] >= self.window_s:
                self.sent.popleft()
            if len(self.sent) < self.limit:
                self.sent.append(now)
                return
            self.sleep(self.window_s - (now - self.sent[0]))


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    if ascii_digits(value.strip()):
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class CloudflareKV:
    """One namespace. ``sleep``/``clock`` are injectable so tests can check waits without waiting."""

    def __init__(self, account_id: str, namespace_id: str, token: str, *, base_url: str = API,
                 timeout_s: float = 60.0, max_attempts: int = 6, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 rate_limit: tuple[int, float] = RATE_LIMIT) -> None:
        if not token:
            raise PushError("no API token: set CLOUDFLARE_API_TOKEN in the environment")
        self.name = f"cloudflare-{account_id}-{namespace_id}"
        self._base = f"{base_url}/accounts/{quote(account_id)}/storage/kv/namespaces/{quote(namespace_id)}"
        self._client = httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=timeout_s)
        self.max_attempts, self.backoff_s, self.max_backoff_s = max_attempts, backoff_s, max_backoff_s
        self.sleep = sleep
        self.limiter = RateLimiter(*rate_limit, clock=clock, sleep=sleep)
        self.requests = 0

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(1, self.max_attempts + 1):
            self.limiter.acquire()
            self.requests += 1
            try:
                resp = self._client.request(method, self._base + path, **kwargs)
            except httpx.TransportError as exc:  # timeouts and connection errors: retried like a 5xx
                if attempt == self.max_attempts:
                    raise PushError(f"{method} {path}: {type(exc).__name__} after {attempt} attempts") from None
                self.sleep(self._backoff(attempt, None))
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                if attempt == self.max_attempts:
                    raise PushError(f"{method} {path}: HTTP {resp.status_code} after {attempt} attempts",
                                    resp.status_code)
                self.sleep(self._backoff(attempt, retry_after_s(resp.headers.get("retry-after"))))
                continue
            if resp.status_code >= 400:
                raise PushError(f"{method} {path}: HTTP {resp.status_code}: {_errors(resp)}", resp.status_code)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        jittered = random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))
        return max(jittered, retry_after or 0.0)

    def put_many(self, pairs: Sequence[tuple[str, bytes]]) -> None:
        body = [{"key": k, "value": base64.b64encode(v).decode(), "base64": True, "metadata": digest_metadata(v)}
                for k, v in pairs]
        result = self._send("PUT", "/bulk", json=body).json().get("result") or {}
        failed = result.get("unsuccessful_keys") or []
        if failed:
            raise PushError(f"bulk write: {len(failed)} key(s) not written, first {failed[0]!r}")

    def delete_many(self, keys: Sequence[str]) -> None:
        result = self._send("POST", "/bulk/delete", json=list(keys)).json().get("result") or {}
        failed = result.get("unsuccessful_keys") or []
        if failed:
            raise PushError(f"bulk delete: {len(failed)} key(s) not deleted, first {failed[0]!r}")

    def put_one(self, key: str, value: bytes) -> None:
        self._send("PUT", f"/values/{quote(key, safe='')}", content=value,
                   headers={"content-type": "application/octet-stream"})

    def get_one(self, key: str) -> bytes | None:
        """A key's value (``GET .../values/<key>``), ``None`` when the namespace has no such key."""
        try:
            return self._send("GET", f"/values/{quote(key, safe='')}").content
        except PushError as exc:
            if exc.status == 404:
                return None
            raise

    def list_keys(self, prefix: str) -> Iterator[tuple[str, str | None]]:
        """Every key under ``prefix`` with the digest its metadata carries (``GET .../keys``, 1,000 a page)."""
        cursor = ""
        while True:
            params = {"prefix": prefix, "limit": "1000", **({"cursor": cursor} if cursor else {})}
            body = self._send("GET", "/keys", params=params).json()
            for item in body.get("result") or []:
                yield item["name"], metadata_digest(item.get("metadata"))
            cursor = (body.get("result_info") or {}).get("cursor") or ""
            if not cursor:
                return


def _errors(resp: httpx.Response) -> str:
    try:
        errors = resp.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or resp.reason_phrase
    except ValueError:
        return resp.reason_phrase
