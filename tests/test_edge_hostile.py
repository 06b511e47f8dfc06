"""Hostile input through the live edge runtime (real Pyodide, real SDK, Miniflare KV): it answers, then answers again.

Pyodide's stack overflows where CPython raises a RecursionError, and that overflow is fatal to the whole runtime:
every request in flight dies with it. These are the issue's cases (a deep beacon, a deep record in KV), sent as an
attacker would, each followed by a request that must still be answered.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import msgpack
import pytest

from personalizer import codec, keys
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.seed import bulk_json
from tests.conftest import TEST_KEY, uid_cookie
from tests.runtime.harness import edge_runtime

pytestmark = pytest.mark.edge

DEEP = {"5000": "[" * 5_000 + "]" * 5_000, "100000": "[" * 100_000 + "]" * 100_000, "64KiB-of-[": "[" * 65_536}


def deep_envelope(kind: str, *, gen: str | None, packed: str | None = None, msgpack_depth: int = 0) -> bytes:
    """A v1 envelope of ``kind`` whose payload nests deep: packed JSON text, or raw msgpack arrays."""
    head = msgpack.packb({"v": 1, "kind": kind, "gen": gen, "at": 0, "until": None, "data": 0})
    data = msgpack.packb({"packed": packed}) if packed is not None else b"\x91" * msgpack_depth + b"\xc0"
    return head[:-1] + data


@pytest.fixture(scope="module")
def edge(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The seed, with deep records: c00006's profile (packed JSON 9,000 deep, as in the issue), c00007's (msgpack
    100,000 deep), item p00010's neighbours, the popular list, the banner set and the inventory."""
    gen = codec.decode(built.records[keys.MANIFEST], expect="manifest").data["generation"]
    # The shared records and one healthy customer only: a small KV state seeds in a fraction of a second.
    records = {k: v for k, v in built.records.items()
               if not (k.startswith("pz1:p:") or k.startswith("pz1:v:") or ":item:" in k)}
    records[keys.profile("c00001")] = built.records[keys.profile("c00001")]
    records[keys.profile("c00006")] = deep_envelope("profile", gen=None, packed="[" * 9_000 + "]" * 9_000)
    records[keys.profile("c00007")] = deep_envelope("profile", gen=None, msgpack_depth=100_000)
    records[keys.item(gen, "p00010")] = deep_envelope("item", gen=gen, packed="[" * 65_536)
    records[keys.popular(gen)] = deep_envelope("popular", gen=gen, packed="{\"a\":" * 20_000)
    records[keys.banners(gen)] = deep_envelope("banners", gen=gen, msgpack_depth=50_000)
    records[keys.INVENTORY] = deep_envelope("inventory", gen=gen, msgpack_depth=50_000)
    state = tmp_path_factory.mktemp("edge-hostile")
    (state / "kv.json").write_text(bulk_json(records))
    variables = {"PZ_SIGNING_KEYS": TEST_KEY}
    with edge_runtime(state / "state", seed=state / "kv.json", variables=variables) as (url, logs), \
            httpx.Client(base_url=url, timeout=30) as client:
        client.logs = logs  # type: ignore[attr-defined]
        yield client


def still_answering(edge: httpx.Client) -> None:
    assert edge.get("/healthz").status_code == 200
    r = edge.get("/v1/recommendations?slot=home", headers={"cookie": uid_cookie("c00001")})
    assert r.status_code == 200 and r.json()["tier"] == "user"


@pytest.mark.parametrize("deep", list(DEEP.values()), ids=list(DEEP))
@pytest.mark.parametrize("shape", ["{DEEP}", '{{"events": {DEEP}}}', '{{"events": [{{"id": "e1", "type": "view", '
                                   '"item": {DEEP}}}]}}'], ids=["bare", "events", "in-an-event"])
def test_a_deep_beacon_is_a_4xx_and_the_edge_lives_on(edge: httpx.Client, deep: str, shape: str) -> None:
    r = edge.post("/v1/events", content=shape.format(DEEP=deep).encode(),
                  headers={"content-type": "text/plain;charset=UTF-8"})
    assert r.status_code in (400, 413) and r.json()["error"]["code"] in ("bad_body", "too_large")
    still_answering(edge)


@pytest.mark.parametrize("user,path,key,tier", [
    pytest.param("c00006", "/v1/recommendations?slot=home", "pz1:p:c00006", "default", id="profile-packed-json"),
    pytest.param("c00007", "/v1/recommendations?slot=home", "pz1:p:c00007", "default", id="profile-msgpack"),
    pytest.param(None, "/v1/recommendations?slot=item&item=p00010", ":item:p00010", "default", id="item"),
    pytest.param(None, "/v1/recommendations?slot=home", ":popular", "default", id="popular"),
    pytest.param("c00001", "/v1/banner?slot=hero", ":banners", "default", id="banners"),
])
def test_a_deep_record_costs_its_tier_not_the_edge(edge: httpx.Client, user: str | None, path: str, key: str,
                                                    tier: str) -> None:
    """Each deep record is a bad record (logged with its key): the request is answered from the tiers below it
    (here the default: the popular list is deep too), and the runtime answers on."""
    for _ in range(2):
        r = edge.get(path, headers={"cookie": uid_cookie(user)} if user else {})
        assert r.status_code == 200 and r.headers["x-pz-tier"] == tier
        still_answering(edge)
    assert any("bad record key=" in line and key in line for line in edge.logs)  # type: ignore[attr-defined]


def test_the_deepest_allowed_beacon_is_parsed_at_the_edge(edge: httpx.Client) -> None:
    """512 levels (jsontext.MAX_DEPTH) are parsed inside the live runtime: the event is judged, not the body."""
    body = '{"events": ' + "[" * 511 + "]" * 511 + "}"
    r = edge.post("/v1/events", content=body.encode(), headers={"content-type": "text/plain;charset=UTF-8"})
    assert r.status_code < 500 and "bad_body" not in r.text
    still_answering(edge)


@pytest.mark.parametrize("method", ["PROPFIND", "MKCOL", "PATCH", "DELETE", "PUT", "TRACE", "BREW"])
@pytest.mark.parametrize("path", ["/v1/page", "/v1/events", "/v1/pz.js", "/healthz", "/elsewhere"])
def test_any_method_on_any_path_is_a_4xx_with_allow_never_a_5xx(edge: httpx.Client, method: str, path: str) -> None:
    r = edge.request(method, path)
    if method == "BREW":  # no HTTP parser knows it: the front refuses the request line, as Cloudflare's does
        assert r.status_code == 400
    else:
        assert r.status_code in (404, 405, 501), r.text
    if r.status_code == 405:
        assert r.headers["allow"] and r.json()["error"]["code"] == "method_not_allowed"
    still_answering(edge)
