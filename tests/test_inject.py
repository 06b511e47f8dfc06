"""Edge-side injection, sans-IO (CPython): placeholders found wherever chunks are cut, filled together."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence

import pytest

from personalizer import InMemoryKV, Personalizer
from personalizer.inject import LOOKAHEAD, MAX_FALSE_STARTS, MAX_PLACEHOLDERS, Marker, Splicer, splice
from personalizer_adapters.batch.build import Built
from tests.conftest import CONFIG, FixedClock, uid_cookie

PAGE = (b"<!doctype html><html><head><title>Shop</title></head><body><h1>Hello</h1>"
        b'<pz-slot name="hero"><p>Spring sale</p></pz-slot>'
        b"<main>text &lt;pz-slot&gt; in text is not a placeholder</main>"
        b'<PZ-SLOT  name="home" >fallback</pz-slot >'
        b'<!-- pz-slot name="item" item="p0003" -->'
        b'<pz-slot name="nope">kept</pz-slot>'
        b"</body></html>")


def parts_of(chunks: list[bytes]) -> list[bytes | Marker]:
    s = Splicer()
    out: list[bytes | Marker] = []
    for c in chunks:
        out += s.feed(c)
    out += s.close()
    return out


def joined(parts: list[bytes | Marker]) -> tuple[bytes, list[tuple[str | None, str | None]]]:
    text = b"".join(p if isinstance(p, bytes) else b"{" + p.raw + b"}" for p in parts)
    return text, [(p.slot, p.item) for p in parts if isinstance(p, Marker)]


def test_every_cut_finds_the_same_placeholders() -> None:
    """The page cut at every byte (and into single bytes) gives the same text and the same placeholders."""
    whole, markers = joined(parts_of([PAGE]))
    assert markers == [("hero", None), ("home", None), ("item", "p0003"), (None, None)]
    assert whole.replace(b"{", b"").replace(b"}", b"") == PAGE
    for cut in range(1, len(PAGE)):
        assert joined(parts_of([PAGE[:cut], PAGE[cut:]])) == (whole, markers), cut
    assert joined(parts_of([bytes([b]) for b in PAGE])) == (whole, markers)


def test_text_before_a_placeholder_is_not_held() -> None:
    """What precedes the first placeholder comes out of the first feed; only a possible start is held."""
    s = Splicer()
    head = b"<html><head><title>x</title></head><body>"
    assert s.feed(head) == [head]
    s = Splicer()
    out = s.feed(b"<p>a</p><pz-sl")
    assert out == [b"<p>a</p>"]
    assert s.feed(b'ot name="home"></pz-slot><p>b</p>') == [Marker(b'<pz-slot name="home"></pz-slot>', "home"),
                                                            b"<p>b</p>"]


def test_unclosed_or_huge_placeholder_is_text() -> None:
    """A start never closed within the bound is plain text, and nothing is lost or held forever."""
    page = b'<pz-slot name="home">' + b"x" * 20000 + b"</pz-slot><p>end</p>"
    parts = parts_of([page[i:i + 1000] for i in range(0, len(page), 1000)])
    assert all(isinstance(p, bytes) for p in parts) and b"".join(parts) == page  # type: ignore[arg-type]
    assert b"".join(parts_of([b"<p>a</p><pz-slot name="]))  == b"<p>a</p><pz-slot name="  # type: ignore[arg-type]


@pytest.mark.parametrize("raw,expect", [
    (b'<pz-slot name="item"></pz-slot>', (None, None)),               # item slot needs an item
    (b'<pz-slot name="item" item="bad id"></pz-slot>', (None, None)),
    (b'<pz-slot name="cart" item="p1"></pz-slot>', ("cart", "p1")),
    (b"<!--pz-slot name=home-->", (None, None)),                     # quotes required
    (b'<!--pz-slot name="recent"-->', ("recent", None)),
])
def test_marker_attributes(raw: bytes, expect: tuple[str | None, str | None]) -> None:
    (m,) = [p for p in parts_of([raw]) if isinstance(p, Marker)]
    assert (m.slot, m.item) == expect and m.raw == raw


async def _source(chunks: list[bytes], log: list[str]) -> AsyncIterator[bytes]:
    for c in chunks:
        log.append(f"read {len(c)}")
        yield c


def run_splice(chunks: list[bytes], fill_result=None, lookahead: int = LOOKAHEAD, fail: bool = False):
    log: list[str] = []
    out: list[bytes] = []
    calls: list[list[str | None]] = []

    async def write(b: bytes) -> None:
        log.append(f"write {b[:12]!r}")
        out.append(b)

    async def fill(markers: Sequence[Marker]) -> list[bytes | None]:
        calls.append([m.slot for m in markers])
        log.append("fill")
        return [None if (fail or m.slot is None) else f"[{m.slot}]".encode() for m in markers]

    n = asyncio.run(splice(_source(chunks, log), write, fill, lookahead))
    return b"".join(out), calls, log, n


def test_splice_fills_the_page_in_one_decision() -> None:
    body, calls, log, n = run_splice([PAGE[:60], PAGE[60:200], PAGE[200:]])
    assert calls == [["hero", "home", "item", None]] and n == 3
    assert body == (b"<!doctype html><html><head><title>Shop</title></head><body><h1>Hello</h1>[hero]"
                    b"<main>text &lt;pz-slot&gt; in text is not a placeholder</main>[home][item]"
                    b'<pz-slot name="nope">kept</pz-slot></body></html>')
    # the head was written before the first fill, before the rest was even read
    assert log.index("write b'<!doctype ht'") < log.index("read 140") < log.index("fill")


def test_splice_reads_ahead_a_bounded_amount() -> None:
    """Placeholders beyond the look-ahead are a second decision; the body is never held whole."""
    filler = b"<p>" + b"x" * 500 + b"</p>"
    page = b'<pz-slot name="hero"></pz-slot>' + filler * 4 + b'<pz-slot name="home"></pz-slot>' + filler * 4
    chunks = [page[i:i + 256] for i in range(0, len(page), 256)]
    body, calls, log, _ = run_splice(chunks, lookahead=1024)
    assert calls == [["hero"], ["home"]]
    assert body == page.replace(b'<pz-slot name="hero"></pz-slot>', b"[hero]").replace(
        b'<pz-slot name="home"></pz-slot>', b"[home]")
    first_fill = log.index("fill")
    assert sum(1 for x in log[:first_fill] if x.startswith("read")) < len(chunks)


def test_failed_fill_leaves_the_page_as_sent() -> None:
    body, _, _, n = run_splice([PAGE[:100], PAGE[100:]], fail=True)
    assert body == PAGE and n == 0


def test_core_fragments_one_page_decision(built: Built) -> None:
    """The core fills placeholders like /v1/page?format=html, wrapped for pz.js; a failure is None."""
    core = Personalizer(CONFIG, InMemoryKV(built.records), FixedClock(), lambda: "vtestvisitor")
    markers = [Marker(b"a", "hero"), Marker(b"b", "home"), Marker(b"c"), Marker(b"d", "home")]
    page = core.injection({"cookie": uid_cookie("c00001")})
    assert page.set_cookies == () and page.visitor.user_id == "c00001"
    fills = asyncio.run(page.fill(markers))
    ref = asyncio.run(core.handle("GET", "/v1/page", "slots=hero,home&format=html", {"cookie": uid_cookie("c00001")}))
    hero, home = fills[0], fills[1]
    assert hero is not None and home is not None and fills[2] is None and fills[3] == home
    assert hero.startswith(b'<div data-pz-slot="hero" data-pz-filled="">')
    inner = hero.split(b">", 1)[1].rsplit(b"</div>", 1)[0] + home.split(b">", 1)[1].rsplit(b"</div>", 1)[0]
    assert ref.body.split(b">", 1)[1].rsplit(b"</div>", 1)[0] == inner
    newcomer = core.injection({})
    assert newcomer.set_cookies and newcomer.set_cookies[0][1].startswith("pz_vid=")
    denied = core.injection({"cookie": uid_cookie("c00001") + "; pz_consent=denied"})
    assert denied.set_cookies == () and not denied.visitor.consented

    broken = dataclasses.replace(page, core=core)
    core.decide = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))  # type: ignore[method-assign]
    assert asyncio.run(broken.fill(markers)) == [None] * 4


HOSTILE_PAGES = {
    "unclosed": b"<pz-slot " * 2_000,
    "unclosed-named": b'<p>x</p><pz-slot name="home">' * 2_000,
    "nested": b'<pz-slot name="home">' * 1_000 + b"</pz-slot>" * 1_000,
    "attribute-stuffed": (b'<pz-slot name="home" ' + b'a="b" ' * 200 + b">x</pz-slot>") * 300,
    "comments": b"<!-- pz-slot name=" * 2_000,
    "megabytes": b"<pz-slot" * 230_000,  # 1.8 MB
}


@pytest.mark.parametrize("page", list(HOSTILE_PAGES.values()), ids=list(HOSTILE_PAGES))
@pytest.mark.parametrize("size", [65_536, 4_096, 7])
def test_hostile_markup_passes_through_unchanged_within_a_bound(page: bytes, size: int) -> None:
    """Whatever the markup, every byte comes out once, in order; past the bound on the work per page the rest
    passes through untouched (a bounded number of starts is ever tried)."""
    chunks = [page[i:i + size] for i in range(0, len(page), size)] if size > 7 else [page[:70_000]]
    s = Splicer()
    out: list[bytes | Marker] = []
    for c in chunks:
        out += s.feed(c)
    out += s.close()
    assert b"".join(p if isinstance(p, bytes) else p.raw for p in out) == b"".join(chunks)
    assert sum(isinstance(p, Marker) for p in out) <= MAX_PLACEHOLDERS
    if len(b"".join(chunks)) > 100_000:
        assert s.passthrough


def test_the_bound_leaves_later_placeholders_as_sent() -> None:
    """Up to MAX_PLACEHOLDERS are found; the ones after are text, exactly as the origin sent them."""
    one = b'<pz-slot name="home">f</pz-slot>'
    parts = parts_of([one * (MAX_PLACEHOLDERS + 5)])
    assert sum(isinstance(p, Marker) for p in parts) == MAX_PLACEHOLDERS
    assert b"".join(p for p in parts if isinstance(p, bytes)) == one * 5
    false_starts = b"<pz-slot>" * (MAX_FALSE_STARTS + 1) + b"x" * 9_000
    parts = parts_of([false_starts + one])
    assert not any(isinstance(p, Marker) for p in parts)


def test_a_stalled_stream_is_not_held_back() -> None:
    """A page that stops after a placeholder (a streamed shell, a stalled origin): what arrived is filled and
    written after the short wait, while the source is still open."""
    written: list[bytes] = []
    wrote_rest = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        yield b'<p>head</p><pz-slot name="home">f</pz-slot><p>then</p>'
        await asyncio.Event().wait()  # never sends more
        yield b""

    async def write(data: bytes) -> None:
        written.append(data)
        if b"then" in data:
            wrote_rest.set()

    async def fill(markers: Sequence[Marker]) -> list[bytes | None]:
        return [b"<HOME>" for _ in markers]

    async def run() -> None:
        task = asyncio.ensure_future(splice(source(), write, fill, wait_s=0.01))
        await asyncio.wait_for(wrote_rest.wait(), 30)
        assert not task.done()
        task.cancel()

    asyncio.run(run())
    assert b"".join(written) == b"<p>head</p><HOME><p>then</p>"


def test_page_headers_drop_every_caching_directive_and_keep_no_store() -> None:
    from personalizer.inject import page_headers

    shop = [("Content-Type", "text/html"), ("CDN-Cache-Control", "max-age=60"), ("Surrogate-Control", "max-age=9"),
            ("Cloudflare-CDN-Cache-Control", "max-age=9"), ("X-Accel-Expires", "9"), ("Pragma", "x"),
            ("Cache-Control", "public, max-age=600"), ("Vary", "Accept"), ("X-Content-Type-Options", "sniff"),
            ("X-Shop", "1")]
    assert page_headers(shop, []) == [("Content-Type", "text/html"), ("X-Shop", "1"),
                                      ("cache-control", "private, no-cache"), ("vary", "Accept, Cookie, Sec-GPC"),
                                      ("x-content-type-options", "nosniff")]
    no_store = [("cache-control", "private, No-Store")]
    assert ("cache-control", "no-store") in page_headers(no_store, [])
    minted = page_headers([], [("set-cookie", "pz_vid=x")])
    assert ("cache-control", "no-store") in minted and minted[-1] == ("set-cookie", "pz_vid=x")


def test_forward_headers_replace_what_the_client_claims() -> None:
    from personalizer.inject import forward_headers

    sent = [("Cookie", "a=b"), ("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6"), ("Host", "x"),
            ("X-Real-IP", "6.6.6.6"), ("X-Forwarded-Host", "evil"), ("Connection", "keep-alive")]
    assert forward_headers(sent, "2001:db8::1", "shop.example", "https") == [
        ("Cookie", "a=b"), ("x-forwarded-host", "shop.example"), ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "2001:db8::1"), ("forwarded", 'for="[2001:db8::1]";host="shop.example";proto=https')]
    assert ("x-forwarded-for", "6.6.6.6") not in forward_headers(sent, None, "shop.example", "https")


def test_injected_pages_target_campaigns_by_the_pages_own_landing_parameters(built: Built) -> None:
    """Edge-side injection reads utm_* from the page's own URL and the request's facts (cf-ipcountry from the
    worker), as /v1/page does from its query."""
    from personalizer import codec, keys

    rules = codec.decode(built.records[keys.banners(built.generation)], expect="banners").data["rules"]
    aimed = {"id": "xmas-link", "kind": "generic", "priority": 20, "match": "", "target": {"utm_campaign": ["xmas"]},
             "variants": [{"id": "x", "weight": 1, "title": "From the newsletter", "body": "b", "cta": "c",
                           "url": "/x", "image": "/x.jpg"}]}
    records = {**built.records, keys.banners(built.generation): codec.encode(
        "banners", {"rules": [*rules, aimed]}, generation=built.generation)}
    core = Personalizer(CONFIG, InMemoryKV(records), FixedClock(), lambda: "vnew")
    denied = {"cookie": "pz_consent=denied"}

    def hero(query: str) -> bytes:
        page = core.injection(denied, query)
        (html,) = asyncio.run(page.fill([Marker(b"", "hero")]))
        assert html is not None
        return html

    assert b'data-banner="xmas-link"' in hero("utm_campaign=Xmas&utm_source=mail")
    assert b'data-banner="generic"' in hero("utm_campaign=summer")
    assert b'data-banner="generic"' in hero("%%%&&=")  # a page's query it cannot read targets nothing
