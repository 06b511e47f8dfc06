"""The parsers of untrusted input, each as one call with a JSON-able outcome, for CPython and Pyodide alike.

tests/runtime/probe.mjs runs these inside Pyodide (with the deploy bundle's modules); the fuzz tests run them in
both runtimes and compare: a crash that only Pyodide has (its stack overflows where CPython raises) cannot hide.
Bytes travel as base64 text; ``splice`` is a coroutine (awaited by the caller, in Pyodide by its event loop).
"""

from __future__ import annotations

import base64
from typing import Any

from personalizer import codec, inject, preview
from personalizer.errors import BadRequest, PersonalizerError
from personalizer.events import accept, parse_beacon
from personalizer.request import parse_ask, parse_cookies


def beacon(content_type: str | None, body: str, received: int) -> dict[str, Any]:
    try:
        events = parse_beacon(content_type, base64.b64decode(body))
    except BadRequest as exc:
        return {"status": exc.status, "code": exc.code}
    kept, rejected = accept(events, received)
    return {"kept": kept, "rejected": rejected}


def cookies(header: str | None) -> dict[str, str] | None:
    return parse_cookies(header)


def ask(method: str, path: str, query: str) -> dict[str, Any]:
    try:
        a = parse_ask(method, path, query)
    except BadRequest as exc:
        return {"status": exc.status, "code": exc.code}
    return {"endpoint": a.endpoint, "slots": list(a.slots), "limit": a.limit, "item": a.item, "format": a.format}


def preview_link(token: str, key: str, now: int) -> dict[str, Any] | None:
    shown = preview.verify(token, (key.encode(),), now)
    return None if shown is None else {"campaign": shown.campaign, "variant": shown.variant, "as": shown.person,
                                       "utm": [list(u) for u in shown.utm], "at": shown.at, "expires": shown.expires}


def decode(kind: str, value: str) -> dict[str, Any]:
    try:
        env = codec.decode(base64.b64decode(value), expect=kind)
    except PersonalizerError as exc:
        return {"error": type(exc).__name__}
    return {"data": env.data, "gen": env.generation}


async def splice(chunks: list[str]) -> str:
    """The page cut into ``chunks``, spliced with every known placeholder filled by ``<X slot>``."""

    async def source():  # type: ignore[no-untyped-def]
        for c in chunks:
            yield base64.b64decode(c)

    out: list[bytes] = []

    async def write(data: bytes) -> None:
        out.append(data)

    async def fill(markers):  # type: ignore[no-untyped-def]
        return [None if m.slot is None else b"<X " + m.slot.encode() + b">" for m in markers]

    await inject.splice(source(), write, fill)
    return base64.b64encode(b"".join(out)).decode()


async def splice_seconds(chunks: list[str]) -> float:
    """The splicer's own time over the page (its chunks decoded first), for make bench."""
    import time

    data = [base64.b64decode(c) for c in chunks]

    async def source():  # type: ignore[no-untyped-def]
        for c in data:
            yield c

    async def write(_: bytes) -> None:
        return None

    async def fill(markers):  # type: ignore[no-untyped-def]
        return [None for _ in markers]

    start = time.perf_counter()
    await inject.splice(source(), write, fill)
    return time.perf_counter() - start


def choose_seconds(rules: list[dict[str, Any]], n: int) -> float:
    """Banner choice over ``rules`` (a banner record's), ``n`` times, for make bench: a consenting visitor with a
    profile and a request's full context (country, device, landing parameters, local time), matching none of the
    targeted campaigns, so every one is tried."""
    import time

    from personalizer import codec
    from personalizer.banners import choose
    from personalizer.records import BannerSet, Context, Inventory, Profile, Settings

    banner_set = BannerSet.parse(codec.decode(codec.encode("banners", {"rules": rules}), expect="banners"))
    profile = Profile("c1", ("likes-tents",), (), (), frozenset(), (), 0, "silver", ("Tents",), ())
    context = Context(1_800_000_000, "FR", "FR-IDF", False, (("utm_campaign", "spring"),), "Europe/Paris",
                      lambda zone, now: (2, 600))
    inventory, settings = Inventory(frozenset(), {}), Settings()
    start = time.perf_counter()
    for _ in range(n):
        choose(banner_set, profile, "likes-tents", consented=True, inventory=inventory, settings=settings,
               now=1_800_000_000, bucket_key="c1", context=context)
    return time.perf_counter() - start
