"""A build's records kept in a temporary file: in memory, only their keys and where each value is.

A million profiles are about 4 GB of values; held as bytes objects they were two thirds of a 1M build's peak
memory. Here they cost their keys' memory. The file is written once, read back by the outputs (kv.json, the
manifest), and while there is room the kernel's page cache holds it, which is not this process's memory.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterator, MutableMapping
from typing import Any


class Spool(MutableMapping[str, bytes]):
    """A ``dict`` of ``str`` keys to ``bytes`` values, the values in an unnamed temporary file (gone with the
    spool, or with the process). A replaced or deleted value's space is not reused: a build writes each key
    once."""

    def __init__(self, directory: str | None = None) -> None:
        self._fd, path = tempfile.mkstemp(prefix="pz-records-", dir=directory)
        os.unlink(path)  # nameless: the space is the system's again when the descriptor closes
        self._closed = weakref.finalize(self, os.close, self._fd)  # on close(), or when the spool is let go
        self._at: dict[str, tuple[int, int]] = {}
        self._end = 0

    def __setitem__(self, key: str, value: bytes) -> None:
        n = len(value)
        written = 0
        while written < n:  # a pwrite may write less than asked
            written += os.pwrite(self._fd, memoryview(value)[written:], self._end + written)
        self._at[key] = (self._end, n)
        self._end += n

    def __getitem__(self, key: str) -> bytes:
        at, n = self._at[key]
        value = os.pread(self._fd, n, at)
        while len(value) < n:  # likewise a pread
            value += os.pread(self._fd, n - len(value), at + len(value))
        return value

    def __delitem__(self, key: str) -> None:
        del self._at[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: object) -> bool:
        return key in self._at

    def __reduce__(self) -> tuple[Any, tuple[dict[str, bytes]]]:
        """Pickled with its values (a descriptor means nothing in another process); unpickled into a new file."""
        return _spooled, (dict(self.items()),)

    def close(self) -> None:
        self._closed()


def _spooled(values: dict[str, bytes]) -> Spool:
    spool = Spool()
    spool.update(values)
    return spool
