"""Beacons at the edge: the wire format event by event, the whole-beacon errors, consent, bots, the queue."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from personalizer import InMemoryKV, Personalizer
from personalizer.events import (
    MAX_BEACON_BYTES,
    MAX_EVENTS,
    TS_PAST_S,
    Rejected,
    accept,
    agent_flags,
    check_message,
    clean_event,
    message,
    parse_beacon,
    retry_delay_s,
)
from personalizer.ports import InMemorySink
from tests.conftest import CONFIG, FixedClock, uid_cookie

NOW = 1_800_000_000
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"

GOOD: list[dict[str, Any]] = [
    {"id": "e-view", "type": "view", "ts": NOW - 5, "item": "p00001"},
    {"id": "e-imp-hero", "type": "impression", "ts": NOW - 4, "slot": "hero", "tier": "segment", "generation": "g1",
     "banner": "b-spring", "variant": "B"},
    {"id": "e-imp-home", "type": "impression", "ts": NOW - 4, "slot": "home", "tier": "user", "generation": "g1",
     "items": ["p00002", "p00003"]},
    {"id": "e-click", "type": "click", "ts": NOW - 3, "slot": "home", "item": "p00003", "position": 1},
    {"id": "e-add", "type": "add_to_cart", "ts": NOW - 2, "item": "p00003", "quantity": 2},
    {"id": "e-remove", "type": "remove_from_cart", "ts": NOW - 2, "item": "p00003"},
    {"id": "e-buy", "type": "purchase", "ts": NOW - 1, "order": "o-1",
     "items": [{"item": "p00003", "quantity": 1, "price": "139.99"}]},
]


@pytest.mark.parametrize("event", GOOD, ids=[e["type"] + "-" + e["id"] for e in GOOD])
def test_every_type_keeps_exactly_its_fields(event: dict[str, Any]) -> None:
    extra = {**event, "email": "someone@example.com", "note": "<script>"}
    assert clean_event(extra, NOW) == {**event, "ts": float(event["ts"])}


@pytest.mark.parametrize("change, code", [
    ({"type": "like"}, "bad_type"),
    ({"id": ""}, "bad_id"),
    ({"id": "x" * 65}, "bad_id"),
    ({"id": "a b"}, "bad_id"),
    ({"ts": "yesterday"}, "bad_ts"),
    ({"ts": True}, "bad_ts"),
    ({"ts": float("nan")}, "bad_ts"),
    ({"ts": None}, "bad_ts"),
    ({"item": "<p1>"}, "bad_item"),
    ({"item": 7}, "bad_item"),
])
def test_bad_view_fields_are_rejected_with_their_code(change: dict[str, Any], code: str) -> None:
    with pytest.raises(Rejected) as err:
        clean_event({**GOOD[0], **change}, NOW)
    assert err.value.code == code


@pytest.mark.parametrize("index, change, code", [
    (1, {"slot": "sidebar"}, "bad_slot"),
    (1, {"tier": "oracle"}, "bad_tier"),
    (1, {"generation": None}, "bad_generation"),
    (1, {"variant": ""}, "bad_variant"),
    (1, {"banner": "a/b"}, "bad_banner"),
    (2, {"items": "p00002"}, "bad_items"),
    (2, {"items": ["p"] * 49}, "bad_items"),
    (3, {"position": -1}, "bad_position"),
    (3, {"position": 1.5}, "bad_position"),
    (4, {"quantity": 0}, "bad_quantity"),
    (4, {"quantity": 1000}, "bad_quantity"),
    (6, {"order": ""}, "bad_order"),
    (6, {"items": []}, "bad_items"),
    (6, {"items": [{"item": "p1", "quantity": 1, "price": 139.99}]}, "bad_price"),
    (6, {"items": [{"item": "p1", "quantity": 1, "price": "1e3"}]}, "bad_price"),
    (6, {"items": [{"item": "p1", "quantity": 1, "price": "-1.00"}]}, "bad_price"),
    (6, {"items": [{"item": "p1", "quantity": 1, "price": "١٢"}]}, "bad_price"),
    (6, {"items": ["p1"]}, "bad_items"),
])
def test_bad_fields_of_each_type_are_rejected(index: int, change: dict[str, Any], code: str) -> None:
    with pytest.raises(Rejected) as err:
        clean_event({**GOOD[index], **change}, NOW)
    assert err.value.code == code


def test_ts_is_clamped_to_the_edge_clock() -> None:
    assert clean_event({**GOOD[0], "ts": NOW + 3600}, NOW)["ts"] == NOW
    assert clean_event({**GOOD[0], "ts": 0}, NOW)["ts"] == NOW - TS_PAST_S
    assert clean_event({**GOOD[0], "ts": NOW - 10.25}, NOW)["ts"] == NOW - 10.25
    assert clean_event({**GOOD[0], "ts": 10**400}, NOW)["ts"] == NOW  # too big for a float: clamped first


def test_accept_reports_each_bad_event_and_keeps_the_rest() -> None:
    events = [GOOD[0], {"id": "x", "type": "bogus"}, "not an object", GOOD[3], {**GOOD[3], "position": 2}]
    kept, rejected = accept(events, NOW)
    assert [e["id"] for e in kept] == ["e-view", "e-click"]
    assert rejected == [{"index": 1, "code": "bad_type"}, {"index": 2, "code": "not_an_object"},
                        {"index": 4, "code": "duplicate_id"}]


@pytest.mark.parametrize("ctype, body, status, code", [
    ("application/x-www-form-urlencoded", b'{"events": []}', 415, "unsupported_media_type"),
    (None, b'{"events": []}', 415, "unsupported_media_type"),
    ("text/plain;charset=UTF-8", b"x" * (MAX_BEACON_BYTES + 1), 413, "too_large"),
    ("text/plain;charset=UTF-8", None, 413, "too_large"),
    ("application/json", b"{not json", 400, "bad_body"),
    ("application/json", b"\xff\xfe", 400, "bad_body"),
    ("application/json", b"[" * 60_000, 400, "bad_body"),
    ("application/json", b'{"events": []}', 400, "bad_body"),
    ("application/json", b'{"events": {"id": 1}}', 400, "bad_body"),
    ("application/json", b'["events"]', 400, "bad_body"),
    ("application/json", json.dumps({"events": [GOOD[0]] * (MAX_EVENTS + 1)}).encode(), 413, "too_many_events"),
], ids=["form", "no-type", "too-large", "not-read", "not-json", "not-utf8", "deep", "empty", "not-list",
        "not-object", "too-many"])
def test_unusable_beacons_are_refused_whole(ctype: str | None, body: bytes | None, status: int, code: str) -> None:
    from personalizer.errors import BadRequest
    with pytest.raises(BadRequest) as err:
        parse_beacon(ctype, body)
    assert (err.value.status, err.value.code) == (status, code)


def test_agent_flags() -> None:
    assert agent_flags(BROWSER, None) == []
    assert agent_flags("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", None) == ["bot"]
    assert agent_flags("Mozilla/5.0 HeadlessChrome/120.0", None) == ["bot"]
    assert agent_flags(None, None) == ["bot"]
    assert agent_flags(BROWSER, "prefetch;prerender") == ["prefetch"]
    assert agent_flags(BROWSER, "prefetch") == ["prefetch"]


def test_the_origin_checks_the_envelope_again() -> None:
    good = message("c00001", None, ["bot"], [clean_event(GOOD[0], NOW)], NOW)
    assert check_message(json.loads(json.dumps(good))) == good
    for bad in ({**good, "v": 2}, {**good, "customer": "a b"}, {**good, "flags": ["admin"]},
                {**good, "received": "now"}, {**good, "events": {}}, [good]):
        with pytest.raises(Rejected):
            check_message(bad)


def test_retry_delay_doubles_up_to_its_cap() -> None:
    assert [retry_delay_s(a, 5, 3600) for a in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert retry_delay_s(20, 5, 3600) == 3600
    assert retry_delay_s(10_000, 5, 3600) == 3600


# -- the core's POST /v1/events ---------------------------------------------------------------------------
class FailingSink:
    async def send(self, message: dict[str, Any]) -> None:
        raise ConnectionError("queue at 10.0.0.7 refused: internal detail")


def post(sink: Any, headers: dict[str, str], events: list[Any] | None = None, now: int = NOW) -> Any:
    core = Personalizer(CONFIG, InMemoryKV(), FixedClock(now), lambda: "vminted0001", sink=sink)
    body = json.dumps({"events": GOOD if events is None else events}).encode()
    return asyncio.run(core.handle("POST", "/v1/events", "", {"content-type": "text/plain;charset=UTF-8",
                                                               "user-agent": BROWSER, **headers}, body))


def test_a_signed_shopper_beacon_is_queued_whole() -> None:
    sink = InMemorySink()
    reply = post(sink, {"cookie": uid_cookie("c00001", issued_at=NOW)})
    assert reply.status == 202
    assert json.loads(reply.body) == {"accepted": len(GOOD), "stored": len(GOOD), "rejected": []}
    assert reply.header("cache-control") == "no-store"
    assert [v.split("=")[0] for k, v in reply.headers if k == "set-cookie"] == ["pz_s"]  # the session state only
    (msg,) = sink.messages
    assert (msg["customer"], msg["visitor"], msg["flags"], msg["received"]) == ("c00001", None, [], NOW)
    assert msg["events"] == [clean_event(e, NOW) for e in GOOD]


def test_a_new_visitor_gets_an_id_with_the_events() -> None:
    sink = InMemorySink()
    reply = post(sink, {})
    assert sink.messages[0]["visitor"] == "vminted0001" and sink.messages[0]["customer"] is None
    assert (reply.header("set-cookie") or "").startswith("pz_vid=v1.vminted0001.")


@pytest.mark.parametrize("headers", [{"cookie": "pz_consent=denied"}, {"sec-gpc": "1"},
                                     {"cookie": "pz_uid=x; " + "a=b; " * 20_000},
                                     *({"cookie": f"pz_consent={v}"} for v in ("DENIED", "Denied", "0", "false", "no",
                                                                               "", "granted2", "Granted"))],
                         ids=["cookie-denied", "gpc", "unreadable-cookies", "DENIED", "Denied", "0", "false", "no",
                              "empty", "granted2", "Granted"])
def test_consent_denied_keeps_nothing(headers: dict[str, str]) -> None:
    sink = InMemorySink()
    headers = {k: (v.replace("pz_uid=x", uid_cookie("c00001", issued_at=NOW)) if k == "cookie" else v)
               for k, v in headers.items()}
    reply = post(sink, headers)
    assert reply.status == 202
    assert json.loads(reply.body) == {"accepted": len(GOOD), "stored": 0, "rejected": []}
    assert sink.messages == [] and reply.header("set-cookie") is None


def test_bots_and_prefetches_are_marked() -> None:
    sink = InMemorySink()
    post(sink, {"user-agent": "Mozilla/5.0 (compatible; bingbot/2.0)"})
    post(sink, {"sec-purpose": "prefetch"})
    post(sink, {"purpose": "prefetch"})
    assert [m["flags"] for m in sink.messages] == [["bot"], ["prefetch"], ["prefetch"]]


def test_a_queue_failure_is_a_503_without_internals() -> None:
    reply = post(FailingSink(), {"cookie": uid_cookie("c00001", issued_at=NOW)})
    assert reply.status == 503 and reply.header("retry-after") == "5"
    assert json.loads(reply.body)["error"]["code"] == "unavailable"
    assert b"10.0.0.7" not in reply.body and b"refused" not in reply.body


def test_a_beacon_of_only_bad_events_queues_nothing() -> None:
    sink = InMemorySink()
    reply = post(sink, {}, [{"id": "a", "type": "nope"}])
    assert json.loads(reply.body) == {"accepted": 0, "stored": 0, "rejected": [{"index": 0, "code": "bad_type"}]}
    assert sink.messages == []


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
def test_events_answers_post_only(method: str) -> None:
    core = Personalizer(CONFIG, InMemoryKV(), FixedClock(NOW), lambda: "v1", sink=InMemorySink())
    reply = asyncio.run(core.handle(method, "/v1/events", "", {}))
    assert reply.status == 405 and reply.header("allow") == "POST"
