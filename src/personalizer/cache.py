"""The isolate's cache of shared records: LRU, bounded by bytes, with a TTL per entry.

Worker isolates reuse module state across requests; this cache is the one deliberate piece of it. It
holds only records shared by every visitor (manifest, segment, popular, item, banners, inventory), never a
person's profile.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

ENTRY_OVERHEAD = 128  # bytes charged per entry beyond the encoded size, so tiny entries are not free


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

    def _drop(self, key: str) -> None:
        self.bytes -= self._entries.pop(key).size
