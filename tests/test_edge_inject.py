"""End to end: edge-side injection (PAGES_ORIGIN) in the offline runtime, against a shop origin on loopback.

The shop's page is sent in two parts with a pause the test controls, so the test sees the page's head reach
the client while the origin has not sent the rest: the worker streams, fragments after the head.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from personalizer import InMemoryKV, Personalizer
from personalizer.inject import Marker
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.seed import bulk_json
from tests.conftest import CONFIG, TEST_KEY, FixedClock, uid_cookie
from tests.runtime.harness import edge_runtime, serve_asgi

pytestmark = pytest.mark.edge
HEAD = b"<!doctype html><html><head><title>Fresh Market</title></head><body><h1>Welcome</h1>"
STALLED = b'<p>shell</p><pz-slot name="home">f</pz-slot><p>then</p>'
BODY = (b'<pz-slot name="hero"><p>Fallback hero</p></pz-slot><section>'
        b'<!--pz-slot name="home"--></section><pz-slot name="unknown">kept</pz-slot></body></html>')


class Shop:
    """A shop origin: /page streams HEAD, waits for ``release``, then BODY; other paths are not HTML."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[dict[str, str]] = []
        self.stall = threading.Event()         # /stall and /never wait for it
        self.disconnected = threading.Event()  # set when the worker hung up on /stall

    async def __call__(self, scope, receive, send):  # noqa: ANN001 - a plain ASGI app
        if scope["type"] != "http":
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append({"path": scope["path"], **headers})
        path = scope["path"]
        if path == "/page":
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"public, max-age=600"),
                (b"etag", b'"v1"'), (b"x-shop", b"yes")]})
            await send({"type": "http.response.body", "body": HEAD, "more_body": True})
            await asyncio.to_thread(self.release.wait, 30)
            await send({"type": "http.response.body", "body": BODY})
        elif path in ("/cdn", "/nostore"):
            extra = [(b"cdn-cache-control", b"max-age=3600"), (b"cloudflare-cdn-cache-control", b"max-age=3600"),
                     (b"surrogate-control", b"max-age=3600"), (b"x-accel-expires", b"3600"), (b"pragma", b"cache"),
                     (b"cache-control", b"public, max-age=600" if path == "/cdn" else b"no-store, private"),
                     (b"vary", b"Accept-Language")]
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html"), *extra]})
            await send({"type": "http.response.body", "body": b'<p>x</p><pz-slot name="home"></pz-slot>'})
        elif path == "/stall":  # a shell, then a stall (a page streamed in parts, or a stuck origin)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": STALLED, "more_body": True})
            await receive()  # the (empty) request body
            waiter = asyncio.ensure_future(asyncio.to_thread(self.stall.wait, 30))
            gone = asyncio.ensure_future(receive())
            await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gone.done() and gone.result()["type"] == "http.disconnect":
                self.disconnected.set()
                return
            await send({"type": "http.response.body", "body": b"<p>rest</p>"})
        elif path == "/never":  # never starts answering (until the test lets it go)
            await asyncio.to_thread(self.stall.wait, 30)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": b"late"})
        elif path == "/cut":  # the origin's body breaks off after a placeholder
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": STALLED + b"x" * 70_000, "more_body": True})
            raise RuntimeError("the shop's server fell over mid-page")
        elif path == "/headers":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": json.dumps(headers).encode()})
        elif path == "/upload":
            size, more = 0, True
            while more:
                message = await receive()
                size += len(message.get("body", b""))
                more = message.get("more_body", False)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": str(size).encode()})
        elif path == "/form":  # answers at once, without reading the request's body (as a GET-only route does)
            await send({"type": "http.response.start", "status": 405, "headers": [(b"allow", b"GET")]})
            await send({"type": "http.response.body", "body": b"Method Not Allowed"})
        elif path == "/data.json":
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"cache-control", b"public, max-age=60")]})
            await send({"type": "http.response.body", "body": b'{"note": "<pz-slot name=\\"home\\"></pz-slot>"}'})
        elif path == "/old":
            await send({"type": "http.response.start", "status": 302, "headers": [(b"location", b"/page")]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": b'<p>no such page <pz-slot name="home"></pz-slot></p>'})


@pytest.fixture(scope="module")
def shop() -> Iterator[tuple[Shop, str]]:
    app = Shop()
    with serve_asgi(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def edge(built: Built, shop: tuple[Shop, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    state = tmp_path_factory.mktemp("inject")
    (state / "kv.json").write_text(bulk_json(built.records))
    with edge_runtime(state / "state", seed=state / "kv.json",
                      variables={"PZ_SIGNING_KEYS": TEST_KEY, "PAGES_ORIGIN": shop[1],
                                 "PAGES_TIMEOUT_MS": "2000"}) as (url, logs), \
            httpx.Client(base_url=url, timeout=30) as client:
        client.logs = logs  # type: ignore[attr-defined]
        yield client


def expected(built: Built, cookie: str | None) -> dict[str, bytes]:
    core = Personalizer(CONFIG, InMemoryKV(built.records), FixedClock(), lambda: "vtestvisitor")
    page = core.injection({"cookie": cookie} if cookie else {})
    hero, home = asyncio.run(page.fill([Marker(b"", "hero"), Marker(b"", "home")]))
    assert hero is not None and home is not None
    return {"hero": hero, "home": home}


def test_head_streams_before_fragments_and_placeholders_are_filled(edge: httpx.Client, shop: tuple[Shop, str],
                                                                    built: Built) -> None:
    app, _ = shop
    app.release.clear()
    cookie = uid_cookie("c00001")
    with edge.stream("GET", "/page", headers={"cookie": f"{cookie}; shop_session=abc"}) as r:
        assert r.status_code == 200
        got = b""
        chunks = r.iter_raw()
        while len(got) < len(HEAD):
            got += next(chunks)
        assert got == HEAD and not app.release.is_set()  # the origin is still holding the rest
        app.release.set()
        got += b"".join(chunks)
        headers = r.headers
    want = expected(built, cookie)
    assert got == HEAD + BODY.replace(b'<pz-slot name="hero"><p>Fallback hero</p></pz-slot>', want["hero"]) \
        .replace(b'<!--pz-slot name="home"-->', want["home"])
    assert b'data-tier="user"' in want["home"]
    assert headers["cache-control"] == "private, no-cache" and "Cookie" in headers["vary"]
    assert headers["x-shop"] == "yes" and "etag" not in headers and "set-cookie" not in headers
    # the shop's own cookies reach the shop
    assert "shop_session=abc" in app.seen[-1]["cookie"]


def test_new_visitor_gets_their_cookie_with_the_page(edge: httpx.Client, shop: tuple[Shop, str]) -> None:
    shop[0].release.set()
    r = edge.get("/page")
    assert r.status_code == 200 and r.headers["set-cookie"].startswith("pz_vid=")
    assert b'data-tier="popular"' in r.content and b"Fallback hero" not in r.content


def test_denied_consent_is_not_personal_and_sets_no_cookie(edge: httpx.Client, shop: tuple[Shop, str],
                                                          built: Built) -> None:
    shop[0].release.set()
    cookie = uid_cookie("c00001") + "; pz_consent=denied"
    r = edge.get("/page", headers={"cookie": cookie})
    assert "set-cookie" not in r.headers and b'data-tier="user"' not in r.content
    assert expected(built, cookie)["home"] in r.content


def test_not_html_redirects_and_errors_pass_through(edge: httpx.Client) -> None:
    r = edge.get("/data.json")
    assert r.status_code == 200 and r.content == b'{"note": "<pz-slot name=\\"home\\"></pz-slot>"}'
    assert r.headers["cache-control"] == "public, max-age=60"
    r = edge.get("/old", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/page"
    r = edge.get("/missing")
    assert r.status_code == 404 and r.content == b'<p>no such page <pz-slot name="home"></pz-slot></p>'


def test_api_routes_still_answered_by_the_worker(edge: httpx.Client) -> None:
    r = edge.get("/v1/page", params={"slots": "home"})
    assert r.status_code == 200 and r.json()["fragments"]["home"]["tier"] == "popular"
    assert edge.get("/healthz").json() == {"status": "ok"}


def test_pages_origin_down_is_a_502_without_details(built: Built, tmp_path: Path) -> None:
    (tmp_path / "kv.json").write_text(bulk_json({}))
    with edge_runtime(tmp_path / "state", seed=tmp_path / "kv.json",
                      variables={"PZ_SIGNING_KEYS": TEST_KEY, "PAGES_ORIGIN": "http://127.0.0.1:9"}) as (url, _):
        r = httpx.get(url + "/page", timeout=30)
    assert r.status_code == 502 and r.json()["error"]["code"] == "bad_gateway"
    assert "127.0.0.1" not in r.text


def test_a_personalized_page_is_never_kept_by_a_shared_cache(edge: httpx.Client) -> None:
    """Every shared-cache directive of the shop is dropped (CDN-Cache-Control may override Cache-Control, RFC
    9213); the page is private; nosniff as on every answer of ours."""
    r = edge.get("/cdn", headers={"cookie": uid_cookie("c00001")})
    assert r.status_code == 200 and b'data-tier="user"' in r.content
    for name in ("cdn-cache-control", "cloudflare-cdn-cache-control", "surrogate-control", "x-accel-expires",
                 "pragma", "expires"):
        assert name not in r.headers, name
    assert r.headers["cache-control"] == "private, no-cache" and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["vary"] == "Accept-Language, Cookie, Sec-GPC"


def test_the_shops_no_store_is_kept_and_a_minted_cookie_is_no_store(edge: httpx.Client) -> None:
    r = edge.get("/nostore", headers={"cookie": uid_cookie("c00001")})
    assert r.headers["cache-control"] == "no-store" and "set-cookie" not in r.headers
    r = edge.get("/cdn")  # a new visitor: an id is minted with the page
    assert r.headers["set-cookie"].startswith("pz_vid=") and r.headers["cache-control"] == "no-store"


def test_a_stalled_page_has_what_arrived_filled_and_sent(edge: httpx.Client, shop: tuple[Shop, str]) -> None:
    """The shell and its placeholder reach the browser while the origin still holds the rest; the browser then
    going away aborts the upstream request (the shop sees the disconnect) instead of leaving it open."""
    app, _ = shop
    app.stall.clear()
    app.disconnected.clear()
    with httpx.Client(base_url=str(edge.base_url), timeout=30) as client, \
            client.stream("GET", "/stall", headers={"cookie": uid_cookie("c00001")}) as r:
        got = b""
        chunks = r.iter_raw()
        while b"<p>then</p>" not in got:
            got += next(chunks)
        assert got.startswith(b"<p>shell</p><div data-pz-slot=\"home\"") and not app.stall.is_set()
    assert app.disconnected.wait(30), "the upstream request was left open after the browser went away"
    app.stall.set()


def test_an_origin_that_never_answers_is_a_504_without_details(edge: httpx.Client, shop: tuple[Shop, str]) -> None:
    shop[0].stall.clear()
    r = edge.get("/never")
    shop[0].stall.set()
    assert r.status_code == 504 and r.json()["error"]["code"] == "gateway_timeout"
    assert "127.0.0.1" not in r.text and r.headers["cache-control"] == "no-store"


def test_a_cut_page_is_an_aborted_response_not_a_short_complete_one(edge: httpx.Client) -> None:
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # cut short, or reset
        edge.get("/cut")
    assert edge.get("/healthz").status_code == 200, edge.logs  # type: ignore[attr-defined]


def test_forwarded_headers_are_the_workers_own_view(edge: httpx.Client, shop: tuple[Shop, str]) -> None:
    r = edge.get("/headers", headers={"x-forwarded-for": "6.6.6.6", "x-forwarded-host": "evil.example",
                                      "forwarded": "for=6.6.6.6;host=evil.example", "x-real-ip": "6.6.6.6"})
    seen = r.json()
    host = str(edge.base_url).split("://", 1)[1].rstrip("/")
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-host"] == host
    assert seen["x-forwarded-proto"] == "http" and seen["forwarded"] == f'for=127.0.0.1;host="{host}";proto=http'
    assert "x-real-ip" not in seen and "6.6.6.6" not in json.dumps(seen)


def test_a_preview_link_through_injection_and_the_snippets_path(edge: httpx.Client, shop: tuple[Shop, str]) -> None:
    """A signed preview link on the shop's page (injection) and passed on by pz.js (/v1/page?preview=): the hero
    is the campaign it names, the answer is never stored and sets no cookie, and says it is a preview (with its
    trace for the bar); a forged link is an ordinary page."""
    import html
    import time

    from personalizer import preview

    shop[0].release.set()
    now = int(time.time())
    link = preview.sign(preview.Preview("loyalty-gold", "loyal-gold-b", expires=now + 300), now, TEST_KEY.encode())
    r = edge.get(f"/page?pz_preview={link}")
    assert r.status_code == 200 and r.headers["x-pz-preview"] == "loyalty-gold"
    assert r.headers["cache-control"] == "no-store" and "set-cookie" not in r.headers
    assert b'data-banner="loyalty-gold" data-variant="loyal-gold-b"' in r.content
    about = r.text.split('data-pz-preview="', 1)[1].split('"', 1)[0]
    assert json.loads(html.unescape(about))["trace"][0]["campaign"]
    api = edge.get(f"/v1/page?slots=hero,home&format=html&preview={link}")
    assert api.headers["x-pz-preview"] == "loyalty-gold" and api.headers["cache-control"] == "no-store"
    assert b'data-banner="loyalty-gold"' in api.content and b"data-pz-preview=" in api.content
    forged = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    for plain in (edge.get(f"/page?pz_preview={forged}"), edge.get(f"/v1/page?slots=hero&preview={forged}")):
        assert "x-pz-preview" not in plain.headers and b"loyalty-gold" not in plain.content
        assert plain.headers["set-cookie"].startswith("pz_vid=")  # an ordinary first visit


@pytest.mark.parametrize("size", [1024 * 1024 + 1, 3 * 1024 * 1024])
def test_a_large_post_streams_through_to_the_shop(edge: httpx.Client, size: int) -> None:
    """Bodies over a MiB reach the shop whole; a shop that answers before reading them (a GET-only route's 405)
    has its answer passed on, not a 502."""
    r = edge.post("/upload", content=b"a" * size, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200 and r.text == str(size)
    r = edge.post("/form", content=b"a" * size, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 405 and r.headers["allow"] == "GET"
