"""The isolate's cache of shared records: LRU, bounded by bytes, with a TTL per entry.

Worker isolates reuse module state across requests; this cache is the one deliberate piece of it. It
holds only records shared by every visitor (manifest, default, segment, popular, item, banners, inventory), never
a person's profile. Beside it, the last good copy of the shop's default tier (one record, kept without expiry, so
an outage still serves the shop's own content), and a short list of keys whose value failed to decode (a
profile's key among them, but never its content), so a bad record costs one read, not one per request.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

ENTRY_OVERHEAD = 128  # bytes charged per entry beyond the encoded size, so tiny entries are not free
MAX_BAD_KEYS = 1024   # keys remembered as bad at once; the oldest is forgotten first
BAD_KEY_TTL_S = 60.0  # how long a bad key is not read again (KV changes take about as long to be seen)


@dataclass(slots=True)
class _Entry:
    value: Any
    size: int
    expires: float


class SharedCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bad: OrderedDict[str, float] = OrderedDict()  # key -> until when it is not read again
        self._kept: dict[str, Any] = {}  # last good values served through outages (the default tier): no TTL

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> tuple[bool, Any]:
        """``(True, value)`` on a fresh hit (the value may be ``None``: a cached miss), else ``(False, None)``."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry.expires <= now:
            self._drop(key)
            return False, None
        self._entries.move_to_end(key)
        return True, entry.value

    def put(self, key: str, value: Any, size: int, ttl_s: float, now: float) -> None:
        size += ENTRY_OVERHEAD
        if key in self._entries:
            self._drop(key)
        if size > self.max_bytes or ttl_s <= 0:
            return
        while self.bytes + size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[key] = _Entry(value, size, now + ttl_s)
        self.bytes += size

    def mark_bad(self, key: str, now: float, ttl_s: float = BAD_KEY_TTL_S) -> None:
        """Remember that ``key``'s value failed to decode (or was too large), for ``ttl_s``."""
        self._bad.pop(key, None)
        self._bad[key] = now + ttl_s
        while len(self._bad) > MAX_BAD_KEYS:
            self._bad.popitem(last=False)

    def is_bad(self, key: str, now: float) -> bool:
        until = self._bad.get(key)
        if until is None:
            return False
        if until <= now:
            del self._bad[key]
            return False
        return True

    def keep(self, key: str, value: Any) -> None:
        """Hold ``value`` as the last good one of ``key``, beyond its TTL: what an outage serves."""
        self._kept[key] = value

    def kept(self, key: str) -> Any:
        """The last good value of ``key`` this isolate read, or ``None``."""
        return self._kept.get(key)

    def _drop(self, key: str) -> None:
        self.bytes -= self._entries.pop(key).size
