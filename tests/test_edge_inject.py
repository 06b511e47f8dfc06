"""End to end: edge-side injection (PAGES_ORIGIN) in the offline runtime, against a shop origin on loopback.

The shop's page is sent in two parts with a pause the test controls, so the test sees the page's head reach
the client while the origin has not sent the rest: the worker streams, fragments after the head.
"""

from __future__ import annotations

import asyncio
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
BODY = (b'<pz-slot name="hero"><p>Fallback hero</p></pz-slot><section>'
        b'<!--pz-slot name="home"--></section><pz-slot name="unknown">kept</pz-slot></body></html>')


class Shop:
    """A shop origin: /page streams HEAD, waits for ``release``, then BODY; other paths are not HTML."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[dict[str, str]] = []

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
                      variables={"PZ_SIGNING_KEYS": TEST_KEY, "PAGES_ORIGIN": shop[1]}) as (url, logs), \
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
