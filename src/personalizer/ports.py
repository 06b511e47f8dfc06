"""The core's ports: one- or two-method Protocols that the worker, the origin and tests implement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class KVReader(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The value's bytes, or ``None`` when the key does not exist. May raise on a KV outage."""
        ...


class KVWriter(Protocol):
    async def put(self, key: str, value: bytes, expiration_ttl: int | None = None) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock epoch seconds (token ages, record expiry, cart age)."""
        ...

    def monotonic_ms(self) -> float:
        """Milliseconds from an arbitrary origin, for Server-Timing."""
        ...


class EventSink(Protocol):
    async def send(self, message: dict[str, Any]) -> None:
        """Queue one accepted beacon (``events.message``) for the origin. May raise: nothing was queued."""
        ...


IdMinter = Callable[[], str]


class InMemorySink:
    """A list-backed event queue for tests and CPython runs of the core."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


class InMemoryKV:
    """A dict-backed KV for tests, benchmarks and CPython runs of the core."""

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        self.data: dict[str, bytes] = dict(data or {})
        self.reads: list[str] = []

    async def get(self, key: str) -> bytes | None:
        self.reads.append(key)
        return self.data.get(key)

    async def put(self, key: str, value: bytes, expiration_ttl: int | None = None) -> None:
        self.data[key] = bytes(value)


@dataclass(frozen=True, slots=True)
class Reply:
    """A platform-neutral HTTP response."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)
