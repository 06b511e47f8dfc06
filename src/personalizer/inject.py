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

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from .keys import is_valid_id
from .request import PAGE_SLOTS

MAX_ATTRS = 512         # bytes of a placeholder's attributes
MAX_INNER = 8192        # bytes of an element placeholder's own (fallback) content
LOOKAHEAD = 64 * 1024   # bytes read past a placeholder to find the page's others before computing
LOOKAHEAD_WAIT_S = 0.05  # ...but no longer than this: what arrived is then filled and sent (streamed pages)
MAX_PLACEHOLDERS = 64   # placeholders filled in one page; the rest of it passes through untouched
MAX_FALSE_STARTS = 256  # starts of placeholders that were not (or not yet) one, likewise
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
    """Byte chunks in, text and ``Marker`` parts out, in order; ``close`` returns what is left as text.

    Linear in the page's bytes whatever its markup: starts are found by one forward search, and each is tried
    once, anchored, in work bounded by the longest placeholder. The work per page is bounded too: after
    ``MAX_PLACEHOLDERS`` placeholders, or ``MAX_FALSE_STARTS`` starts that turned out not to be one (unclosed,
    malformed, or tried again while incomplete), the rest of the page passes through untouched.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._found = 0
        self._false = 0
        self._waiting = False  # the buffer begins with a start that may still complete
        self.passthrough = False

    def feed(self, chunk: bytes) -> list[bytes | Marker]:
        if self.passthrough:
            return [chunk] if chunk else []
        buf = self._buf + chunk
        if self._waiting and b">" not in chunk and len(buf) <= _LONGEST:
            self._buf = buf  # a placeholder can only complete at a ">": nothing to try again yet
            return []
        self._waiting = False
        out: list[bytes | Marker] = []
        pos = 0
        keep = None
        while True:
            start = _START.search(buf, pos)
            if start is None:
                break
            at = start.start()
            m = _MARKER.match(buf, at)
            if m is None:
                self._false += 1
                if len(buf) - at <= _LONGEST and self._false <= MAX_FALSE_STARTS:
                    keep = at  # it may still complete: wait for more
                    self._waiting = True
                    break
                out.append(buf[pos:at + 1])  # not a placeholder: text
                pos = at + 1
            else:
                if at > pos:
                    out.append(buf[pos:at])
                out.append(marker(m.group(0), m.group(1) if m.group(1) is not None else m.group(3)))
                pos = m.end()
                self._found += 1
            if self._found >= MAX_PLACEHOLDERS or self._false > MAX_FALSE_STARTS:
                self.passthrough = True
                if pos < len(buf):
                    out.append(buf[pos:])
                self._buf = b""
                return out
        if keep is None:
            keep = max(pos, _tail(buf, pos))
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
                 lookahead: int = LOOKAHEAD, wait_s: float = LOOKAHEAD_WAIT_S) -> int:
    """Copy ``chunks`` to ``write``, placeholders replaced by what ``fill`` returns (``None``: left as sent).

    Returns the number of placeholders filled. ``fill`` gets every placeholder found within ``lookahead``
    bytes of the first one not yet written, or within ``wait_s`` seconds of reaching it (a page streamed in
    parts, or an origin that stalls, is not held back longer), in page order, and must not raise.
    """
    splicer = Splicer()
    done = False
    filled = 0
    pending: asyncio.Future[bytes] | None = None  # the next chunk, asked for and not yet arrived

    async def more(timeout: float | None = None) -> list[bytes | Marker] | None:
        """The parts of the next chunk; ``None`` when it has not arrived within ``timeout`` (it is kept)."""
        nonlocal done, pending
        if pending is None:
            pending = asyncio.ensure_future(chunks.__anext__())
        if timeout is not None:
            arrived, _ = await asyncio.wait({pending}, timeout=max(timeout, 0))
            if not arrived:
                return None
        try:
            chunk = await pending
        except StopAsyncIteration:
            done = True
            return splicer.close()
        finally:
            if pending.done():
                pending = None
        return splicer.feed(chunk)

    parts: deque[bytes | Marker] = deque()
    loop = asyncio.get_running_loop()
    while True:
        while parts and not isinstance(parts[0], Marker):
            text = parts.popleft()
            assert isinstance(text, bytes)
            await write(text)
        if parts:
            ahead = 0
            deadline = loop.time() + wait_s
            while not done and ahead < lookahead:
                new = await more(deadline - loop.time())
                if new is None:
                    break
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
            parts.clear()
        if done:
            return filled
        parts += await more() or ()


# -- the headers of a proxied page ---------------------------------------------------------------------------
# Request headers not passed on to the shop's origin: hop-by-hop, the worker's own business, and what a client
# may claim about where it came from (replaced by the worker's own view, as a proxy is expected to).
NOT_FORWARDED = frozenset(("host", "connection", "keep-alive", "transfer-encoding", "upgrade", "content-length",
                           "accept-encoding", "te", "trailer", "proxy-authorization", "x-forwarded-for",
                           "x-forwarded-host", "x-forwarded-proto", "forwarded", "x-real-ip"))
# Origin headers that would be wrong on a page whose body the worker changed: its length, encoding and validators,
# and every caching directive, those meant for shared caches included (RFC 9213 lets CDN-Cache-Control override
# Cache-Control, so a cache in front of the worker could keep one person's page).
NOT_RETURNED = frozenset(("content-length", "content-encoding", "etag", "last-modified", "cache-control",
                          "expires", "age", "transfer-encoding", "connection", "keep-alive", "cdn-cache-control",
                          "cloudflare-cdn-cache-control", "surrogate-control", "x-accel-expires", "pragma",
                          "x-content-type-options", "vary", "x-pz-preview", "x-pz-holdout"))


def forward_headers(headers: Sequence[tuple[str, str]], client_ip: str | None, host: str,
                    scheme: str) -> list[tuple[str, str]]:
    """The request headers for the shop's origin: the client's, less what is not forwarded, plus where the
    request really came from (``client_ip``: the connecting address Cloudflare gives, ``CF-Connecting-IP``)."""
    out = [(n, v) for n, v in headers if n.lower() not in NOT_FORWARDED]
    out += [("x-forwarded-host", host), ("x-forwarded-proto", scheme)]
    if client_ip:
        node = f'"[{client_ip}]"' if ":" in client_ip else client_ip
        out += [("x-forwarded-for", client_ip), ("forwarded", f'for={node};host="{host}";proto={scheme}')]
    return out


def page_headers(origin: Sequence[tuple[str, str]], set_cookies: Sequence[tuple[str, str]],
                 preview: str | None = None) -> list[tuple[str, str]]:
    """The headers of a page whose placeholders the worker fills: the origin's, less ``NOT_RETURNED``; never
    stored by a shared cache (``private, no-cache``), ``no-store`` when the shop said so, a cookie is set, or
    it is a preview (``preview``: the campaign a preview link shows, said in ``x-pz-preview``)."""
    out = [(n, v) for n, v in origin if n.lower() not in NOT_RETURNED]
    if preview is not None:
        out.append(("x-pz-preview", preview))
    vary = ", ".join(v for n, v in origin if n.lower() == "vary")
    no_store = bool(set_cookies) or preview is not None or any(
        n.lower() == "cache-control" and "no-store" in (d.strip().lower() for d in v.split(",")) for n, v in origin)
    return [*out, ("cache-control", "no-store" if no_store else "private, no-cache"),
            ("vary", f"{vary}, Cookie, Sec-GPC" if vary else "Cookie, Sec-GPC"),
            ("x-content-type-options", "nosniff"), *set_cookies]
