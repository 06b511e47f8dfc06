"""End to end: HTTP on loopback -> Node front -> real Pyodide + real Workers SDK -> Miniflare KV.

The runtime serves the seed plus a few deliberately broken or hostile profiles. Each answer is also
computed by the core under CPython over the same records, and the bodies must match.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pytest

from personalizer import InMemoryKV, Personalizer, codec, keys
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.seed import bulk_json
from tests.conftest import CONFIG, OLD_KEY, TEST_KEY, FixedClock, uid_cookie
from tests.runtime.harness import edge_runtime, local_kv_get, wrangler_kv_get

pytestmark = pytest.mark.edge
HOSTILE = '<script>alert("pz")</script> & "Co"'


def overrides(built: Built) -> dict[str, bytes]:
    """c00002: no personal cards (segment tier); c00003: garbage; c00004: schema v2; c00005: hostile title."""
    out = {}
    p2 = codec.decode(built.records[keys.profile("c00002")], expect="profile").data
    out[keys.profile("c00002")] = codec.encode("profile", {**p2, "cards": []})
    out[keys.profile("c00003")] = b"\xc1\x00 definitely not msgpack"
    p4 = codec.decode(built.records[keys.profile("c00004")], expect="profile").data
    out[keys.profile("c00004")] = msgpack.packb({"v": 2, "kind": "profile", "gen": None, "at": 0, "until": None,
                                                 "data": p4})
    p5 = codec.decode(built.records[keys.profile("c00005")], expect="profile").data
    evil = [p5["cards"][0][0], HOSTILE, "javascript:alert(1)", *p5["cards"][0][3:]]
    out[keys.profile("c00005")] = codec.encode("profile", {**p5, "cards": [evil, *p5["cards"][1:]]})
    return out


@pytest.fixture(scope="module")
def records(built: Built) -> dict[str, bytes]:
    return {**built.records, **overrides(built)}


@pytest.fixture(scope="module")
def edge(records: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    state = tmp_path_factory.mktemp("edge")
    (state / "kv.json").write_text(bulk_json(records))
    with edge_runtime(state / "state", seed=state / "kv.json",
                      variables={"PZ_SIGNING_KEYS": f"{TEST_KEY},{OLD_KEY}"}) as (url, logs), \
            httpx.Client(base_url=url, timeout=30) as client:
        client.persist = state / "state"  # type: ignore[attr-defined]
        client.logs = logs  # type: ignore[attr-defined]
        yield client


def cpython(records: dict[str, bytes], path: str, query: str, cookie: str | None = None) -> bytes:
    core = Personalizer(CONFIG, InMemoryKV(records), FixedClock(), lambda: "vparity")
    return asyncio.run(core.handle("GET", path, query, {"cookie": cookie} if cookie else {})).body


def get(edge: httpx.Client, path: str, cookie: str | None = None, **headers: str) -> httpx.Response:
    if cookie:
        headers["cookie"] = cookie
    return edge.get(path, headers=headers)


# -- every endpoint, both formats, the same bytes as CPython ----------------------------------------------
@pytest.mark.parametrize("path,query", [
    pytest.param("/v1/recommendations", "slot=home&limit=8", id="home"),
    pytest.param("/v1/recommendations", "slot=item&item=p00010", id="item"),
    pytest.param("/v1/recommendations", "slot=cart", id="cart"),
    pytest.param("/v1/recommendations", "slot=recent&limit=5", id="recent"),
    pytest.param("/v1/banner", "slot=hero", id="banner"),
    pytest.param("/v1/page", "slots=hero,home,recent,cart", id="page"),
    pytest.param("/v1/page", "slots=hero,item,home&item=p00077&limit=6", id="page-item"),
])
@pytest.mark.parametrize("fmt", ["json", "html"])
def test_edge_matches_cpython_for_a_signed_customer(edge: httpx.Client, records: dict[str, bytes], path: str,
                                                    query: str, fmt: str) -> None:
    """Pyodide and CPython give the same fragment; the customer gets tier user."""
    query = f"{query}&format={fmt}"
    r = get(edge, f"{path}?{query}", uid_cookie("c00001"))
    assert r.status_code == 200
    assert r.content == cpython(records, path, query, uid_cookie("c00001"))
    assert r.headers["content-type"].startswith("application/json" if fmt == "json" else "text/html")
    assert r.headers["cache-control"].startswith("private, max-age=") and r.headers["vary"] == "Cookie, Sec-GPC"
    assert {e.split(";")[0] for e in r.headers["server-timing"].split(", ")} == {"kv", "origin", "render", "total"}
    if path != "/v1/page" and "item" not in query:
        assert r.headers["x-pz-tier"] == "user"


def test_edge_healthz_and_head(edge: httpx.Client) -> None:
    """healthz answers without KV; HEAD has headers and no body."""
    r = edge.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    h = edge.head("/v1/page?slots=hero,home", headers={"cookie": uid_cookie("c00001")})
    assert h.status_code == 200 and h.content == b"" and h.headers["x-pz-tier"] == "hero=user,home=user"



def test_edge_null_body_statuses_and_the_snippet(edge: httpx.Client) -> None:
    """Through the worker's Response: a preflight is 204 and an unchanged pz.js 304, both with no body at all;
    the snippet's bytes and its ETag arrive as the core wrote them."""
    from personalizer import assets

    pre = edge.options("/v1/page", headers={"origin": "https://shop.example", "access-control-request-method": "GET"})
    assert pre.status_code == 204 and pre.content == b"" and pre.headers["allow"] == "GET, HEAD, OPTIONS"
    js = edge.get("/v1/pz.js")
    assert js.status_code == 200 and js.content == assets.SCRIPT and js.headers["etag"]
    again = edge.get("/v1/pz.js", headers={"if-none-match": js.headers["etag"]})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == js.headers["etag"]

# -- the ladder -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("user,query,tier", [
    pytest.param("c00001", "slot=home", "user", id="user"),
    pytest.param("c00002", "slot=home", "segment", id="segment"),
    pytest.param(None, "slot=home", "popular", id="popular"),
    pytest.param(None, "slot=item&item=p00010", "item", id="item"),
    pytest.param("c00003", "slot=home", "popular", id="corrupt-profile"),
    pytest.param("c00004", "slot=home", "popular", id="wrong-schema-profile"),
    pytest.param("c99999", "slot=home", "popular", id="no-profile"),
])
def test_edge_tiers(edge: httpx.Client, user: str | None, query: str, tier: str) -> None:
    """Each tier answers when the better ones are unavailable; bad records degrade, never 5xx."""
    r = get(edge, f"/v1/recommendations?{query}", uid_cookie(user) if user else None)
    assert r.status_code == 200 and r.json()["tier"] == tier == r.headers["x-pz-tier"]
    assert len(r.json()["items"]) == 12


def test_edge_logs_bad_records(edge: httpx.Client) -> None:
    """A corrupt value is logged with its key."""
    get(edge, "/v1/recommendations?slot=home", uid_cookie("c00003"))
    assert any("bad record key=pz1:p:c00003" in line for line in edge.logs)  # type: ignore[attr-defined]


def banner_for(records: dict[str, bytes], user: str) -> str:
    body = json.loads(cpython(records, "/v1/banner", "slot=hero", uid_cookie(user)))
    return str(body["banner"]["id"])


def test_edge_serves_every_banner_rule(edge: httpx.Client, records: dict[str, bytes], built: Built) -> None:
    """cart reminder, price drop, loyalty, returning category, segment: seeded shoppers who earn each one."""
    users = [k.split(":")[-1] for k in sorted(built.records) if k.startswith("pz1:p:")][:1500]
    found: dict[str, str] = {}
    for user in users:
        rule = banner_for(records, user)
        kind = rule.split("-")[0]
        found.setdefault(kind, user)
    assert {"cart", "price", "loyalty", "back", "seg"} <= set(found)
    for kind, user in found.items():
        r = get(edge, "/v1/banner?slot=hero", uid_cookie(user))
        assert r.status_code == 200 and r.json()["banner"]["id"].startswith(kind)
        assert r.content == cpython(records, "/v1/banner", "slot=hero", uid_cookie(user))
    new = edge.get("/v1/banner?slot=hero").json()
    assert new["banner"]["id"] == "intro-offer" and new["tier"] == "popular"


def test_edge_variant_is_sticky_per_visitor(edge: httpx.Client) -> None:
    """A visitor keeps their A/B variant across requests (the minted pz_vid carries it)."""
    first = edge.get("/v1/banner?slot=hero")
    cookie = first.headers["set-cookie"].split(";")[0]
    again = [get(edge, "/v1/banner?slot=hero", cookie).json()["banner"]["variant"] for _ in range(3)]
    assert again == [first.json()["banner"]["variant"]] * 3


# -- identity and consent ---------------------------------------------------------------------------------
def test_edge_forged_or_expired_identity_is_anonymous(edge: httpx.Client) -> None:
    """c00001's id with a forged or expired signature gets the anonymous answer and a fresh pz_vid."""
    anonymous = edge.get("/v1/page?slots=home,recent").content
    mine = get(edge, "/v1/page?slots=home,recent", uid_cookie("c00001")).content
    assert mine != anonymous
    for cookie in (uid_cookie("c00001", key="attacker-key-0123456789abcdef"),
                   uid_cookie("c00001", issued_at=1_500_000_000), "pz_uid=c00001"):
        r = get(edge, "/v1/page?slots=home,recent", cookie)
        assert r.status_code == 200 and r.content == anonymous
        assert r.headers["set-cookie"].startswith("pz_vid=v1.") and "HttpOnly" in r.headers["set-cookie"]
        assert r.headers["cache-control"] == "private, no-store"


def test_edge_rotated_key_still_verifies(edge: httpx.Client) -> None:
    """A token signed by the second (older) key is still the customer."""
    r = get(edge, "/v1/recommendations?slot=home", uid_cookie("c00001", key=OLD_KEY))
    assert r.json()["tier"] == "user"


@pytest.mark.parametrize("cookie_extra,headers", [
    pytest.param("; pz_consent=denied", {}, id="consent-cookie"),
    pytest.param("", {"sec-gpc": "1"}, id="sec-gpc"),
])
def test_edge_denied_consent(edge: httpx.Client, cookie_extra: str, headers: dict[str, str]) -> None:
    """Denied: non-personalized tiers only and no cookie, even for a signed-in customer."""
    r = get(edge, "/v1/page?slots=hero,home,recent", uid_cookie("c00001") + cookie_extra, **headers)
    assert r.status_code == 200 and "set-cookie" not in r.headers
    assert {f["tier"] for f in r.json()["fragments"].values()} == {"popular"}
    r = get(edge, "/v1/banner?slot=hero", "pz_consent=denied")
    assert "set-cookie" not in r.headers and r.json()["banner"]["variant"] == "season"


# -- bad input, hostile data ----------------------------------------------------------------------------
@pytest.mark.parametrize("method,url,status,code", [
    pytest.param("GET", "/nope", 404, "not_found", id="unknown-path"),
    pytest.param("DELETE", "/v1/page?slots=hero", 405, "method_not_allowed", id="wrong-method"),
    pytest.param("POST", "/v1/events", 415, "unsupported_media_type", id="events-no-type"),
    pytest.param("GET", "/v1/recommendations?slot=garage", 400, "bad_slot", id="unknown-slot"),
    pytest.param("GET", "/v1/recommendations?slot=home&limit=100", 400, "bad_limit", id="limit"),
    pytest.param("GET", "/v1/recommendations?slot=item&item=a%20b", 400, "bad_item", id="bad-item"),
    pytest.param("GET", "/v1/recommendations?slot=item", 400, "missing_item", id="no-item"),
    pytest.param("GET", "/v1/page?slots=hero&x=%ff%fe" + "&y=1" * 40, 400, "bad_query", id="malformed-query"),
    pytest.param("GET", "/v1/page?slots=hero&pad=" + "z" * 4000, 414, "query_too_long", id="oversized-query"),
])
def test_edge_bad_input_is_a_json_4xx(edge: httpx.Client, method: str, url: str, status: int, code: str) -> None:
    """Off-contract requests get the JSON error shape with a 4xx, never a 5xx."""
    r = edge.request(method, url)
    assert r.status_code == status and r.json()["error"]["code"] == code
    assert r.headers["cache-control"] == "no-store"
    if status == 405:
        assert r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("cookie", [
    pytest.param("pz_uid=" + "A" * 7000, id="oversized-token"),
    pytest.param("x=" + "y" * 9000, id="oversized-header"),
    pytest.param("pz_uid=v1.c00001.notanumber.sig; ;;=;pz_consent", id="malformed"),
    pytest.param("pz_uid=v1.c00001.1.%00%ff", id="binary-junk"),
])
def test_edge_bad_cookies_are_anonymous(edge: httpx.Client, cookie: str) -> None:
    """Oversized or malformed cookies: an anonymous 200, not an error."""
    r = get(edge, "/v1/recommendations?slot=home", cookie)
    assert r.status_code == 200 and r.json()["tier"] == "popular"


def test_edge_escapes_catalog_strings_in_html(edge: httpx.Client) -> None:
    """A product title with <script> and a javascript: URL reach the page inert."""
    r = get(edge, "/v1/recommendations?slot=home&format=html", uid_cookie("c00005"))
    assert r.status_code == 200 and r.headers["x-pz-tier"] == "user"
    assert "<script>" not in r.text and "&lt;script&gt;alert(&quot;pz&quot;)&lt;/script&gt; &amp;" in r.text
    assert "javascript:" not in r.text
    j = get(edge, "/v1/recommendations?slot=home", uid_cookie("c00005"))
    assert j.json()["items"][0]["title"] == HOSTILE and b"<script>" not in j.content


# -- local KV is the one wrangler reads ----------------------------------------------------------------------
def test_seeded_values_read_back_byte_identical_with_wrangler(edge: httpx.Client, records: dict[str, bytes]) -> None:
    """`wrangler kv key get --local` returns exactly the seeded bytes (binary-safe seeding), and the tests'
    direct reader of Miniflare's store (local_kv_get) agrees with it, an absent key included."""
    for key in (keys.MANIFEST, keys.profile("c00001"), keys.profile("c00003")):
        assert wrangler_kv_get(edge.persist, key) == records[key], key  # type: ignore[attr-defined]
        assert local_kv_get(edge.persist, key) == records[key], key  # type: ignore[attr-defined]
    absent = keys.profile("c99999")
    assert absent not in records
    assert wrangler_kv_get(edge.persist, absent) is None and local_kv_get(edge.persist, absent) is None  # type: ignore[attr-defined]


# -- degraded runtimes ----------------------------------------------------------------------------------
def test_edge_kv_outage_from_the_first_request_shows_nothing_of_any_shop(built: Built, tmp_path: Path) -> None:
    """Every KV read failing in the runtime from its first request (the isolate has never read the shop's default
    tier): 200s with no banner and empty carousels, no section at all, so the page keeps its own content."""
    with edge_runtime(tmp_path / "state", fault="kv",
                      variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, logs), httpx.Client(base_url=url) as c:
        r = c.get("/v1/page?slots=hero,home,recent&format=html", headers={"cookie": uid_cookie("c00001")})
        assert r.status_code == 200 and r.headers["x-pz-tier"] == "hero=none,home=default,recent=default"
        assert "<section" not in r.text and "pz-item" not in r.text
        assert any("kv read failed" in line for line in logs)


def test_edge_corrupt_shared_records_degrade(built: Built, tmp_path: Path) -> None:
    """Popular garbage and banners of schema v2: carousels and banner come from the shop's default tier; with no
    manifest at all, the default tier alone answers."""
    gen = built.generation
    banners = codec.decode(built.records[keys.banners(gen)], expect="banners")
    default = codec.decode(built.records[keys.DEFAULT], expect="default").data
    broken = {keys.MANIFEST: built.records[keys.MANIFEST], keys.DEFAULT: built.records[keys.DEFAULT],
              keys.popular(gen): b"\x00\x01garbage",
              keys.banners(gen): msgpack.packb({"v": 2, "kind": "banners", "gen": gen, "at": 0, "until": None,
                                                "data": banners.data})}
    seed = tmp_path / "kv.json"
    seed.write_text(bulk_json(broken))
    with edge_runtime(tmp_path / "state", seed=seed, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _), \
            httpx.Client(base_url=url) as c:
        r = c.get("/v1/page?slots=hero,home")
        assert r.status_code == 200 and r.headers["x-pz-tier"] == "hero=default,home=default"
        assert r.json()["generation"] == gen
        assert r.json()["fragments"]["hero"]["banner"]["id"] == default["banner"]["id"]
        assert [i["id"] for i in r.json()["fragments"]["home"]["items"]] == [c[0] for c in default["cards"][:12]]
    del broken[keys.MANIFEST]
    seed.write_text(bulk_json(broken))
    with edge_runtime(tmp_path / "bare", seed=seed, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _), \
            httpx.Client(base_url=url) as c:
        r = c.get("/v1/page?slots=hero,home&format=html")
        assert r.status_code == 200 and r.headers["x-pz-tier"] == "hero=default,home=default"
        assert r.text.count('class="pz-item"') == 12 and default["banner"]["variants"][0]["title"] in r.text


@pytest.mark.parametrize("target", ["*", "http://127.0.0.1/v1/page", "//evil.example/x",
                                    "/v1/recommendations?slot=home&limit=%C2%B2"])
def test_odd_request_targets_are_4xx_without_internals(edge: httpx.Client, target: str) -> None:
    """A raw request line with an odd target is a 4xx JSON error with nosniff, never a 500 or a traceback."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(str(edge.base_url))
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():  # de-chunk: size line, data, CRLF, ... 0
        data, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if not size:
                break
            data, rest = data + rest[:size], rest[size + 2:]
        body = data
    status = int(head.split()[1])
    assert 400 <= status < 500, raw[:300]
    assert b"x-content-type-options: nosniff" in head.lower()
    assert b"Traceback" not in body and b"Error" not in body
    assert json.loads(body)["error"]["code"]
