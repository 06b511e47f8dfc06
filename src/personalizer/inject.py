"""Edge-side injection: fill the placeholders of the shop's own HTML as it streams through the worker.

A placeholder is an element or a comment, anywhere in the page (attribute values in double quotes)::

    <pz-slot name="home">shown when there is nothing better</pz-slot>
    <pz-slot name="item" item="p0042"></pz-slot>
    <!--pz-slot name="hero"-->

Sans-IO: ``Splicer`` turns byte chunks, cut anywhere, into text and ``Marker`` parts; ``splice`` drives it
over any async byte source and sink. Everything before the first placeholder is written at once (the page's
head reaches the browser before any fragment is computed); at a placeholder it reads ahead a bounded amount
to find the page's other placeholders, so their fragments are computed together (no card twice on a page),
and never holds the whole body. A placeholder that cannot be filled is written exactly as the origin sent it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from .keys import is_valid_id
from .request import PAGE_SLOTS

MAX_ATTRS = 512         # bytes of a placeholder's attributes
MAX_INNER = 8192        # bytes of an element placeholder's own (fallback) content
LOOKAHEAD = 64 * 1024   # bytes read past a placeholder to find the page's others before computing
_MARKER = re.compile(
    rb"<pz-slot\b([^>]{0,%d})>(.{0,%d}?)</pz-slot\s*>|<!--\s*pz-slot\b([^>]{0,%d}?)\s*-->" % (
        MAX_ATTRS, MAX_INNER, MAX_ATTRS), re.IGNORECASE | re.DOTALL)
_START = re.compile(rb"<pz-slot\b|<!--\s*pz-slot\b", re.IGNORECASE)
_ATTR = re.compile(rb'([A-Za-z-]+)\s*=\s*"([^"]*)"')
_LONGEST = MAX_ATTRS + MAX_INNER + 64  # a start with no complete placeholder within this is plain text
_HOLD = 16  # bytes at a chunk's end that may be the beginning of a placeholder's start


@dataclass(frozen=True, slots=True)
class Marker:
    """One placeholder: ``slot`` ``None`` when it names no known slot (it is then left as it is)."""

    raw: bytes
    slot: str | None = None
    item: str | None = None


def marker(raw: bytes, attrs: bytes) -> Marker:
    found = {k.lower(): v for k, v in _ATTR.findall(attrs)}
    slot = found.get(b"name", b"").decode("ascii", "replace")
    item = found.get(b"item", b"").decode("ascii", "replace") or None
    if slot not in PAGE_SLOTS or (item is not None and not is_valid_id(item)) or (slot == "item" and not item):
        return Marker(raw)
    return Marker(raw, slot, item)


class Splicer:
    """Byte chunks in, text and ``Marker`` parts out, in order; ``close`` returns what is left as text."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes | Marker]:
        buf = self._buf + chunk
        out: list[bytes | Marker] = []
        pos = 0
        while True:
            m = _MARKER.search(buf, pos)
            start = _START.search(buf, pos)
            if start is not None and (m is None or start.start() < m.start()):
                # A start before any complete placeholder: incomplete (wait for more) or malformed (text).
                if len(buf) - start.start() <= _LONGEST:
                    break
                end = start.start() + 1
                out.append(buf[pos:end])
                pos = end
                continue
            if m is None:
                break
            if m.start() > pos:
                out.append(buf[pos:m.start()])
            out.append(marker(m.group(0), m.group(1) if m.group(1) is not None else m.group(3)))
            pos = m.end()
        start = _START.search(buf, pos)
        keep = start.start() if start is not None else max(pos, _tail(buf, pos))
        if keep > pos:
            out.append(buf[pos:keep])
        self._buf = buf[keep:]
        return out

    def close(self) -> list[bytes | Marker]:
        rest, self._buf = self._buf, b""
        return [rest] if rest else []


def _tail(buf: bytes, pos: int) -> int:
    """Where a possible beginning of a placeholder's start begins in the last few bytes (else the end)."""
    i = buf.rfind(b"<", max(pos, len(buf) - _HOLD))
    return i if i >= 0 and b">" not in buf[i:] else len(buf)


Fill = Callable[[Sequence[Marker]], Awaitable[Sequence[bytes | None]]]


async def splice(chunks: AsyncIterator[bytes], write: Callable[[bytes], Awaitable[None]], fill: Fill,
                 lookahead: int = LOOKAHEAD) -> int:
    """Copy ``chunks`` to ``write``, placeholders replaced by what ``fill`` returns (``None``: left as sent).

    Returns the number of placeholders filled. ``fill`` gets every placeholder found within ``lookahead``
    bytes of the first one not yet written, in page order, and must not raise.
    """
    splicer = Splicer()
    done = False
    filled = 0

    async def more() -> list[bytes | Marker]:
        nonlocal done
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            done = True
            return splicer.close()
        return splicer.feed(chunk)

    parts: list[bytes | Marker] = []
    while True:
        while parts and not isinstance(parts[0], Marker):
            text = parts.pop(0)
            assert isinstance(text, bytes)
            await write(text)
        if parts:
            ahead = 0
            while not done and ahead < lookahead:
                new = await more()
                parts += new
                ahead += sum(len(p) for p in new if isinstance(p, bytes))
            found = [p for p in parts if isinstance(p, Marker)]
            fills = await fill(found)
            by_marker = iter(fills)
            for part in parts:
                if isinstance(part, bytes):
                    await write(part)
                    continue
                html = next(by_marker)
                filled += html is not None
                await write(part.raw if html is None else html)
            parts = []
        if done:
            return filled
        parts = await more()
