"""The edge's miss path: ask the origin for a record KV does not have, safely.

Per isolate (module state the worker keeps deliberately, like the shared cache): a circuit breaker, one
call in flight per key (concurrent requests share it), and a negative cache of the origin's "not found".
Every call has a deadline; every answer is validated (size, schema, kind, key) before use. Whatever goes
wrong, the caller gets ``None`` and an outcome word, and answers from the next tier.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import codec, keys
from .cache import SharedCache
from .config import Config
from .errors import DecodeError
from .ports import KVWriter
from .records import PARSERS

log = logging.getLogger("personalizer")
MAX_ORIGIN_BYTES = 1024 * 1024


class OriginClient(Protocol):
    async def resolve(self, key: str) -> bytes | None:
        """The record's bytes; ``None`` when the origin says it does not know the key. Raises otherwise."""
        ...


class Breaker:
    """Closed until ``threshold`` failures in a row; then open for ``cooldown_s``; then one probe (half-open)."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 10.0) -> None:
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> str:
        return "closed" if self.opened_at is None else ("half-open" if self.probing else "open")

    def allow(self, now: float) -> bool:
        if self.opened_at is None:
            return True
        if not self.probing and now - self.opened_at >= self.cooldown_s:
            self.probing = True  # exactly one probe goes through
            return True
        return False

    def success(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at, self.probing = now, False


@dataclass(frozen=True, slots=True)
class Resolved:
    value: Any          # the parsed record, or None
    raw: bytes | None   # its bytes, for the write-back
    outcome: str        # hit | shared | absent | negative | open | timeout | error | invalid


class OriginGate:
    @classmethod
    def from_config(cls, config: Config) -> OriginGate:
        return cls(negative_ttl_s=config.origin_negative_ttl_s,
                   breaker=Breaker(config.origin_breaker_failures, config.origin_breaker_cooldown_s))

    def __init__(self, *, negative_ttl_s: float = 30.0, breaker: Breaker | None = None,
                 negative_max_bytes: int = 1024 * 1024) -> None:
        self.breaker = breaker or Breaker()
        self.negative_ttl_s = negative_ttl_s
        self.negative = SharedCache(negative_max_bytes)
        self.inflight: dict[str, asyncio.Future[Resolved]] = {}

    async def resolve(self, key: str, client: OriginClient, *, timeout_s: float, now: float) -> Resolved:
        if self.negative.get(key, now)[0]:
            return Resolved(None, None, "negative")
        shared = self.inflight.get(key)
        if shared is not None:  # another request is already asking: share its answer, not its write-back
            r = await asyncio.shield(shared)
            return Resolved(r.value, None, "shared" if r.outcome == "hit" else r.outcome)
        if not self.breaker.allow(now):
            return Resolved(None, None, "open")
        future: asyncio.Future[Resolved] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            result = await self._call(key, client, timeout_s, now)
            future.set_result(result)
            return result
        except BaseException as exc:  # cancelled: waiters must not hang on the shared future
            future.set_result(Resolved(None, None, "error"))
            raise exc
        finally:
            del self.inflight[key]

    async def _call(self, key: str, client: OriginClient, timeout_s: float, now: float) -> Resolved:
        kind, gen, ident = keys.parse(key)
        try:
            raw = await asyncio.wait_for(client.resolve(key), timeout_s)
        except TimeoutError:
            self.breaker.failure(now)
            log.warning("origin timeout key=%s after_ms=%.0f", key, timeout_s * 1000)
            return Resolved(None, None, "timeout")
        except Exception as exc:  # the transport's errors are runtime-specific; all mean "next tier"
            self.breaker.failure(now)
            log.warning("origin error key=%s error=%s", key, type(exc).__name__)
            return Resolved(None, None, "error")
        if raw is None:
            self.breaker.success()
            self.negative.put(key, True, len(key), self.negative_ttl_s, now)
            return Resolved(None, None, "absent")
        try:
            value = validate(raw, key, kind, gen, ident, now)
        except DecodeError as exc:
            self.breaker.failure(now)
            log.warning("origin answer invalid key=%s error=%s", key, exc)
            return Resolved(None, None, "invalid")
        self.breaker.success()
        return Resolved(value, raw, "hit")


def validate(raw: bytes, key: str, kind: str, gen: str | None, ident: str | None, now: float) -> Any:
    """The origin's answer parsed, or ``DecodeError``: bounded size, v1 schema, right kind, right key."""
    if len(raw) > MAX_ORIGIN_BYTES:
        raise DecodeError(f"answer of {len(raw)} bytes over {MAX_ORIGIN_BYTES}", key=key)
    env = codec.decode(raw, expect=kind, key=key, now=int(now))
    if gen is not None and env.generation != gen:
        raise DecodeError(f"generation {env.generation!r} for a key of {gen!r}", key=key)
    value = PARSERS[kind](env)
    if kind == "profile" and value.id != ident:
        raise DecodeError(f"profile of {value.id!r} for a key of {ident!r}", key=key)
    return value


@dataclass(frozen=True)
class MissPath:
    """What the request service needs to fill a true miss: the origin, the isolate's gate, a way to write
    the answer back to KV, and ``defer`` (the platform's ``wait_until``) so the response never waits for it.
    The deadline and the write-back's expiry are the service's ``Config`` (``origin_timeout_ms``,
    ``origin_writeback_ttl_s``)."""

    client: OriginClient
    gate: OriginGate
    writer: KVWriter
    defer: Callable[[Awaitable[None]], None]
