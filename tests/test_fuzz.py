"""Fuzzing (Hypothesis): whatever arrives, never a 5xx, never a traceback, never consent made from junk.

Bounded to run in seconds in `make test`; `make fuzz` runs many more examples (PZ_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from personalizer import Config, InMemoryKV, Personalizer, codec
from personalizer.events import clean_event
from personalizer.ports import InMemorySink
from personalizer.request import parse_cookies
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.inputs import InputError, load_shop
from personalizer_adapters.origin.app import SECRET_HEADER, create_app
from tests.conftest import CONFIG, FixedClock, uid_cookie
from tests.runtime import probe
from tests.runtime.harness import PyodideProbe, pyodide_probe

EXAMPLES = int(os.environ.get("PZ_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = "fuzz-origin-secret-0123456789"

# Text that looks like what arrives at the edge: some ASCII structure, some anything.
junk = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)
tokens = st.sampled_from(["pz_consent=denied", "pz_consent=granted", "pz_uid=", "pz_vid=v1.x.1.y", "a=b", ";",
                          "=", '"', " ", "pz_consent", "%", "\t", "²", "١", "\x00", "pz_uid=v1.c00001.1.sig"])
cookie_headers = st.lists(st.one_of(tokens, junk), max_size=30).map("".join)
paths = st.one_of(st.sampled_from(["/v1/page", "/v1/recommendations", "/v1/banner", "/healthz", "/v1/events",
                                   "/", "*", "//x", "/v1/page/"]), junk)
queries = st.lists(st.one_of(st.sampled_from(["slot=home", "slots=hero,home,recent", "limit=", "limit=%C2%B2",
                                              "item=p00001", "format=html", "&", "=", "%", "slot=item", "limit=48"]),
                             junk), max_size=8).map("&".join)
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS", "get", "", "GET "])


class Seed:
    """The seed's records, with a short repr: Hypothesis prints every argument of a failing example."""

    def __init__(self, records: dict[str, bytes]) -> None:
        self.records = records

    def __repr__(self) -> str:
        return f"<seed: {len(self.records)} records>"


@pytest.fixture(scope="module")
def seed(built: Built) -> Seed:
    return Seed(built.records)


def _core(seed: Seed, config: Config = CONFIG) -> Personalizer:
    return Personalizer(config, InMemoryKV(seed.records), FixedClock(), lambda: "vfuzzvisitor")


def _denies(cookie: str, gpc: str | None) -> bool:
    """A refusal is clearly present: a well-formed pz_consent=denied cookie, or a Sec-GPC 1 member."""
    return any(part.strip() == "pz_consent=denied" for part in cookie.split(";")) or (
        gpc is not None and any(v.strip() == "1" for v in gpc.split(",")))


@FUZZ
@given(method=methods, path=paths, query=queries, cookie=cookie_headers,
       gpc=st.one_of(st.none(), st.sampled_from(["1", "1, 1", "0", "", "1,0", " 1"]), junk))
def test_the_edge_never_fails_and_never_reads_consent_into_junk(seed: Seed, method: str, path: str, query: str,
                                                                cookie: str, gpc: str | None) -> None:
    """Any request line, cookies and Sec-GPC: < 500, no traceback; a refusal present is always honoured."""
    core = _core(seed)
    signed = f"{cookie}; {uid_cookie('c00001')}"
    headers = {"cookie": signed} | ({"sec-gpc": gpc} if gpc is not None else {})
    reply = asyncio.run(core.handle(method, path, query, headers))
    assert reply.status < 500
    assert b"Traceback" not in reply.body and b"Error:" not in reply.body
    assert reply.header("x-content-type-options") == "nosniff"
    if _denies(signed, gpc):
        kv: InMemoryKV = core.kv  # type: ignore[assignment]
        assert reply.header("set-cookie") is None
        assert not any(k.startswith(("pz1:p:", "pz1:v:")) for k in kv.reads)


@FUZZ
@given(cookie=cookie_headers)
def test_denied_by_default_stays_denied_whatever_the_cookies(seed: Seed, cookie: str) -> None:
    """With CONSENT_DEFAULT=denied, only a clean pz_consent=granted (and no denial) may personalize."""
    core = _core(seed, Config(signing_keys=CONFIG.signing_keys, consent_default="denied"))
    reply = asyncio.run(core.handle("GET", "/v1/recommendations", "slot=home", {"cookie": cookie}))
    parsed = parse_cookies(cookie)
    if parsed is None or parsed.get("pz_consent") != "granted":
        assert reply.header("set-cookie") is None


@pytest.fixture(scope="module")
def origin_app(built: Built, seed_dir: Path) -> Starlette:
    return create_app(seed_dir / "origin", SECRET)


@FUZZ
@given(body=st.one_of(st.binary(max_size=600), junk.map(str.encode),
                      st.recursive(st.one_of(st.none(), st.integers(), junk), lambda c: st.lists(c, max_size=3)
                                   | st.dictionaries(junk, c, max_size=3), max_leaves=20).map(
                          lambda v: repr({"key": v}).replace("'", '"').encode())),
       content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_the_origin_answers_any_body_with_a_4xx_at_worst(origin_app: Starlette, body: bytes,
                                                         content_type: str) -> None:
    """Bodies of any shape and size: 200/400/404/413 with the JSON error shape, never a 5xx."""
    app = origin_app

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://origin") as client:
            return await client.post("/v1/resolve", content=body,
                                     headers={SECRET_HEADER: SECRET, "content-type": content_type})

    r = asyncio.run(post())
    assert r.status_code in (200, 400, 404, 413)
    if r.status_code != 200:
        assert set(r.json()["error"]) == {"code", "message"}


@FUZZ
@given(catalog=st.lists(st.one_of(junk, st.sampled_from(["p1,tents,T,1.00,/p/p1,https://i/1.jpg",
                                                         "p2,a b,T,1²,/p,/i,٣", '"p3,"x",1', "p4,,,,,,"])),
                        max_size=8),
       events=st.lists(st.one_of(junk, st.sampled_from(["u1,p1,view,1790000000", "u1,p1,purchase,²",
                                                        "u2,p9,view,1", ",,,", "u3,p1,like,1"])), max_size=8))
def test_bad_csv_inputs_are_reported_never_crash(tmp_path_factory: object, catalog: list[str],
                                                 events: list[str]) -> None:
    """Any catalog and events CSV content: a shop, or an InputError that says what is wrong."""
    d = tmp_path_factory.mktemp("csv")  # type: ignore[attr-defined]
    (d / "c.csv").write_text("id,category,title,price,url,image,stock\n" + "\n".join(catalog) + "\n")
    (d / "e.csv").write_text("shopper,product,kind,ts\n" + "\n".join(events) + "\n")
    try:
        shop, report = load_shop(d / "c.csv", d / "e.csv", None, strict=False, now=None)
    except InputError as exc:
        assert str(exc)
        return
    assert len(shop.events) and shop.products



# Beacons: JSON shaped like the contract with junk in every field, and bodies that are not JSON at all.
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), junk,
                    st.sampled_from(["p00001", "hero", "home", "user", "1.50", "view", "purchase", "impression"]))
fields = st.dictionaries(st.sampled_from(["id", "type", "ts", "item", "slot", "tier", "generation", "banner",
                                          "variant", "items", "position", "quantity", "order", "price", "x"]),
                         st.one_of(scalars, st.lists(st.one_of(scalars, st.dictionaries(junk, scalars, max_size=3)),
                                                     max_size=4)), max_size=8)
beacons = st.one_of(st.dictionaries(st.just("events"), st.lists(st.one_of(fields, scalars), max_size=60)),
                    st.lists(fields, max_size=3), scalars)


@FUZZ
@given(body=st.one_of(beacons.map(lambda b: json.dumps(b).encode()), st.binary(max_size=200)),
       ctype=st.sampled_from(["text/plain;charset=UTF-8", "application/json", "text/html", ""]))
def test_beacons_never_fail_and_queue_only_clean_events(body: bytes, ctype: str) -> None:
    """Any beacon: 202/400/413/415, never a 5xx; what is queued passes the contract's check again unchanged."""
    sink = InMemorySink()
    core = Personalizer(CONFIG, InMemoryKV(), FixedClock(), lambda: "vfuzzvisitor", sink=sink)
    reply = asyncio.run(core.handle("POST", "/v1/events", "", {"content-type": ctype, "user-agent": "Mozilla/5.0"},
                                    body))
    assert reply.status in (202, 400, 413, 415)
    assert b"Traceback" not in reply.body
    answer: Any = json.loads(reply.body)
    if reply.status == 202:
        queued = [e for m in sink.messages for e in m["events"]]
        assert answer["stored"] == answer["accepted"] == len(queued)
        for event in queued:
            assert clean_event(json.loads(json.dumps(event)), sink.messages[0]["received"]) == event
    else:
        assert sink.messages == [] and answer["error"]["code"]


@FUZZ
@given(text=st.one_of(junk, st.lists(st.sampled_from(["&", "<", ">", '"', "'", "&amp;", "&#x27;", "a", " ", "é"]),
                                     max_size=30).map("".join)))
def test_render_escape_is_the_standard_librarys(text: str) -> None:
    """render.escape (kept off the html module for cold start) escapes exactly as html.escape does."""
    import html

    from personalizer.render import escape

    assert escape(text) == html.escape(text)


# -- the same parsers inside Pyodide ------------------------------------------------------------------------
# Each property runs tests/runtime/probe.py in CPython and inside Pyodide (the deploy bundle's modules, as the
# edge loads them) and wants the same outcome from both. Pyodide's stack overflows where CPython raises a
# RecursionError, and that is fatal to the whole runtime: a crash only Pyodide has cannot hide here.
DEPTHS = st.sampled_from([1, 4, 510, 511, 512, 513, 4_000, 5_000, 20_000, 100_000])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _same(value: Any) -> Any:
    return json.loads(json.dumps(value))  # as the probe's answer travels (tuples become lists)


@pytest.fixture(scope="module")
def pyodide() -> Iterator[PyodideProbe]:
    with pyodide_probe() as p:
        yield p


def nested(depth: int, inner: str = "0", opener: str = "[", closer: str = "]", closed: bool = True) -> str:
    return opener * depth + inner + (closer * depth if closed else "")


WHERE = ["DEEP", '{"events": DEEP}', '{"events": [DEEP]}', '{"events": [{"id": "e1", "type": "view", "item": DEEP}]}']
deep_bodies = st.builds(lambda d, closed, where: where.replace("DEEP", nested(d, closed=closed)).encode(),
                        DEPTHS, st.booleans(), st.sampled_from(WHERE))


@FUZZ
@given(body=st.one_of(beacons.map(lambda b: json.dumps(b).encode()), st.binary(max_size=200), deep_bodies),
       ctype=st.sampled_from(["text/plain;charset=UTF-8", "application/json", ""]))
def test_pyodide_reads_beacons_as_cpython_does(pyodide: PyodideProbe, body: bytes, ctype: str) -> None:
    assert pyodide.call("beacon", ctype, _b64(body), 1_700_000_000) == _same(
        probe.beacon(ctype, _b64(body), 1_700_000_000))


@FUZZ
@given(header=st.one_of(cookie_headers, st.none()), method=methods, path=paths, query=queries)
def test_pyodide_reads_cookies_and_request_lines_as_cpython_does(pyodide: PyodideProbe, header: str | None,
                                                                  method: str, path: str, query: str) -> None:
    assert pyodide.call("cookies", header) == _same(probe.cookies(header))
    assert pyodide.call("ask", method, path, query) == _same(probe.ask(method, path, query))


def _envelope(kind: str, data: bytes) -> bytes:
    """A v1 envelope of ``kind`` whose data is the raw msgpack ``data`` (the header packed, data spliced in)."""
    head = msgpack.packb({"v": 1, "kind": kind, "gen": "g1", "at": 0, "until": None, "data": 0})
    return head[:-1] + data


documents = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), junk,
                                   st.floats(allow_nan=False, allow_infinity=False)),
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(junk, inner, max_size=4),
                         max_leaves=20)
values = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda d, k: _envelope(k, b"\x91" * d + b"\xc0"), DEPTHS, st.sampled_from(sorted(codec.KINDS))),
    st.builds(lambda d, k, closed: _envelope(k, msgpack.packb({"packed": nested(d, closed=closed)})),
              DEPTHS, st.sampled_from(sorted(codec.PACKED_KINDS)), st.booleans()),
    st.builds(lambda d, k: _envelope(k, msgpack.packb({"packed": '{"a":' * d + "1" + "}" * d})),
              DEPTHS, st.sampled_from(sorted(codec.PACKED_KINDS))),
    st.builds(lambda doc, k: codec.encode(k, {"x": doc}), documents, st.sampled_from(sorted(codec.KINDS))),
)


@FUZZ
@given(value=values, kind=st.sampled_from(sorted(codec.KINDS)))
def test_pyodide_decodes_records_as_cpython_does(pyodide: PyodideProbe, value: bytes, kind: str) -> None:
    assert pyodide.call("decode", kind, _b64(value)) == _same(probe.decode(kind, _b64(value)))


page_parts = st.lists(st.one_of(
    st.sampled_from(['<pz-slot name="home">', '<pz-slot name="hero"></pz-slot>', "</pz-slot>", "</PZ-SLOT >",
                     '<!--pz-slot name="recent"-->', "<!-- pz-slot", "-->", "<", ">", '"', "<pz-slot", "<pz-slot ",
                     '<pz-slot name="item" item="p00001">x</pz-slot>', "<p>", "\n"]),
    junk), max_size=60).map("".join)


@FUZZ
@given(page=page_parts, cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_pyodide_splices_pages_as_cpython_does_however_they_are_cut(pyodide: PyodideProbe, page: str,
                                                                    cuts: list[int]) -> None:
    data = page.encode()
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [_b64(data[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    whole = asyncio.run(probe.splice([_b64(data)]))
    assert asyncio.run(probe.splice(chunks)) == whole  # where the chunks are cut changes nothing
    assert pyodide.call("splice", chunks) == whole


HOSTILE_DEPTHS = [pytest.param(nested(5_000), id="5000"), pytest.param(nested(100_000), id="100000"),
                  pytest.param("[" * 65_536, id="64KiB-of-[")]


@pytest.mark.parametrize("deep", HOSTILE_DEPTHS)
def test_deep_beacons_and_records_are_refused_inside_pyodide(pyodide: PyodideProbe, deep: str) -> None:
    """The issue's cases, not left to chance: every one is a clean refusal inside Pyodide, which lives on."""
    for body in (deep, '{"events": ' + deep + "}", '{"events": [{"id": "e", "type": "view", "item": ' + deep + "}]}"):
        assert pyodide.call("beacon", "text/plain", _b64(body.encode()), 1)["status"] in (400, 413)  # type: ignore[index]
    for kind in sorted(codec.KINDS):
        as_msgpack = _envelope(kind, b"\x91" * len(deep) + b"\xc0")
        assert pyodide.call("decode", kind, _b64(as_msgpack)) == {"error": "DecodeError"}
        if kind in codec.PACKED_KINDS:
            as_json = _envelope(kind, msgpack.packb({"packed": deep}))
            assert pyodide.call("decode", kind, _b64(as_json)) == {"error": "DecodeError"}
    assert pyodide.call("cookies", "pz_consent=granted") == {"pz_consent": "granted"}  # still answering
