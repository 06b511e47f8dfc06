"""End to end, beacons: offline edge runtime (Pyodide + SDK + Miniflare's KV and Queues) + a real origin.

POST /v1/events -> the EVENTS queue (Miniflare) -> the worker's own queue handler -> the origin's
/v1/ingest (uvicorn on loopback) -> the event log. The origin can be stopped and started again on the same
port; the queue's retries and its dead-letter queue carry the events over the outage.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from personalizer import codec, keys
from personalizer.events import clean_event
from personalizer.records import Profile
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.seed import bulk_json
from personalizer_adapters.origin.app import create_app
from personalizer_adapters.store.eventlog import EventLog
from tests.conftest import TEST_KEY, uid_cookie
from tests.runtime.harness import edge_runtime, local_kv_get, serve_asgi
from tests.test_events import BROWSER, GOOD
from tests.test_push_local import cli

pytestmark = pytest.mark.edge
SECRET = "edge-events-secret-0123456789"
TEXT = {"content-type": "text/plain;charset=UTF-8", "user-agent": BROWSER}


class Origin:
    """The real origin app on a fixed loopback port that can be stopped and started again."""

    def __init__(self, app: Starlette, port: int) -> None:
        self.app, self.port, self.stack = app, port, ExitStack()

    def start(self) -> None:
        self.stack.enter_context(serve_asgi(self.app, self.port))

    def stop(self) -> None:
        self.stack.close()
        self.stack = ExitStack()

    @property
    def stats(self) -> Any:
        return self.app.state.stats


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def origin(built: Built, seed_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    data = Path(shutil.copytree(seed_dir / "origin", tmp_path_factory.mktemp("events") / "origin"))
    server = Origin(create_app(data, SECRET), free_port())
    server.start()
    server.log = EventLog(data / "events.sqlite")  # type: ignore[attr-defined]
    server.data = data  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def edge(built: Built, origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client,
                                                                                               list[str]]]:
    state = tmp_path_factory.mktemp("edge-events")
    # Everything but the profiles (customers are misses the origin fills), and a cart reminder after 1 s.
    records = {k: v for k, v in built.records.items() if not k.startswith("pz1:p:")}
    env = codec.decode(records[keys.MANIFEST], expect="manifest")
    data = {**env.data, "settings": {**env.data["settings"], "cart_reminder_after_s": 1}}
    records[keys.MANIFEST] = codec.encode("manifest", data, produced_at=env.produced_at)
    (state / "kv.json").write_text(bulk_json(records))
    variables = {"PZ_SIGNING_KEYS": TEST_KEY, "ORIGIN_URL": f"http://127.0.0.1:{origin.port}",
                 "ORIGIN_SECRET": SECRET, "EVENTS_RETRY_BASE_S": "1", "EVENTS_RETRY_MAX_S": "2"}
    # Two retries on the event queue, then its dead-letter queue; every consumer waits at most 0.2 s for a batch.
    with edge_runtime(state / "state", seed=state / "kv.json", variables=variables,
                      flags={"max-retries": "2", "batch-timeout": "0.2"}) as (url, logs), \
            httpx.Client(base_url=url, timeout=30) as client:
        client.persist = state / "state"  # type: ignore[attr-defined]
        yield client, logs


def events_now(prefix: str, events: list[dict[str, Any]] = GOOD) -> list[dict[str, Any]]:
    now = time.time()
    return [{**e, "id": f"{prefix}-{e['id']}", "ts": now - 5} for e in events]


def send(client: httpx.Client, events: list[Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post("/v1/events", json={"events": events}, headers={**TEXT, **(headers or {})})


def wait_for(check: Callable[[], bool], timeout_s: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def stored(origin: Origin, person: str) -> list[dict[str, Any]]:
    return origin.log.events(person)  # type: ignore[attr-defined, no-any-return]


def test_a_signed_shoppers_beacon_reaches_the_store_with_every_field_once(edge: tuple[httpx.Client, list[str]],
                                                                         origin: Origin) -> None:
    client, _ = edge
    events = events_now("once")
    r = send(client, events, {"cookie": uid_cookie("c00011")})
    assert r.status_code == 202 and r.json() == {"accepted": len(events), "stored": len(events), "rejected": []}
    wait_for(lambda: len(stored(origin, "c00011")) == len(events), what="the beacon in the store")
    rows = stored(origin, "c00011")
    received = rows[0]["received"]
    assert abs(received - time.time()) < 60
    fields = [{k: v for k, v in row.items() if k not in ("who", "person", "received", "robot", "flags")}
              for row in rows]
    assert sorted(fields, key=lambda e: e["id"]) == sorted((clean_event(e, received) for e in events),
                                                           key=lambda e: e["id"])
    assert {(row["who"], row["robot"]) for row in rows} == {("customer", False)}
    # The same beacon again: delivered and counted as duplicates, stored once.
    before = origin.stats["events_duplicates"]
    assert send(client, events, {"cookie": uid_cookie("c00011")}).status_code == 202
    wait_for(lambda: origin.stats["events_duplicates"] == before + len(events), what="the second delivery")
    assert len(stored(origin, "c00011")) == len(events)


def test_a_mixed_beacon_stores_the_good_events_and_reports_the_bad(edge: tuple[httpx.Client, list[str]],
                                                                  origin: Origin) -> None:
    client, _ = edge
    good = events_now("mixed", GOOD[:2])
    r = send(client, [good[0], {"id": "bad", "type": "view", "ts": time.time()}, "junk", good[1]],
             {"cookie": uid_cookie("c00012")})
    assert r.status_code == 202
    assert r.json() == {"accepted": 2, "stored": 2,
                        "rejected": [{"index": 1, "code": "bad_item"}, {"index": 2, "code": "not_an_object"}]}
    wait_for(lambda: len(stored(origin, "c00012")) == 2, what="the good events")
    assert {row["id"] for row in stored(origin, "c00012")} == {e["id"] for e in good}


def test_an_origin_outage_loses_nothing_and_doubles_nothing(edge: tuple[httpx.Client, list[str]],
                                                             origin: Origin) -> None:
    """The origin stops; beacons keep coming; their batches fail, are retried, reach the dead-letter queue;
    the origin starts again on the same port: every accepted event is stored, exactly once."""
    client, logs = edge
    origin.stop()
    try:
        people = [f"c{n:05d}" for n in range(20, 30)]
        for person in people:
            r = send(client, events_now("outage", GOOD[:5]), {"cookie": uid_cookie(person)})
            assert r.status_code == 202 and r.json()["stored"] == 5
        # Wait until the dead-letter queue has been tried too (main queue: 3 attempts, then the DLQ).
        wait_for(lambda: any("queue=pz-events-dlq" in line for line in logs), what="a dead-letter delivery")
    finally:
        origin.start()
    wait_for(lambda: sum(len(stored(origin, p)) for p in people) == 50, what="every event after the outage")
    time.sleep(2.5)  # a late redelivery would show up here (retries wait at most 2 s, batches 0.2 s)
    for person in people:
        rows = stored(origin, person)
        assert sorted(row["id"] for row in rows) == sorted(e["id"] for e in events_now("outage", GOOD[:5]))


def test_consent_denied_and_gpc_keep_nothing(edge: tuple[httpx.Client, list[str]], origin: Origin) -> None:
    client, _ = edge
    denied = send(client, events_now("denied"), {"cookie": uid_cookie("c00031") + "; pz_consent=denied"})
    gpc = send(client, events_now("gpc"), {"cookie": uid_cookie("c00032"), "sec-gpc": "1"})
    for r in (denied, gpc):
        assert r.status_code == 202 and r.json()["stored"] == 0 and "set-cookie" not in r.headers
    # A consenting shopper's beacon sent after them arrives: by then the two would have too.
    send(client, events_now("marker", GOOD[:1]), {"cookie": uid_cookie("c00033")})
    wait_for(lambda: len(stored(origin, "c00033")) == 1, what="the marker beacon")
    time.sleep(2)
    assert stored(origin, "c00031") == [] and stored(origin, "c00032") == []


def test_bots_and_prefetches_are_stored_as_robots(edge: tuple[httpx.Client, list[str]], origin: Origin) -> None:
    client, _ = edge
    send(client, events_now("bot", GOOD[1:2]), {"cookie": uid_cookie("c00034"),
                                               "user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"})
    send(client, events_now("prefetch", GOOD[1:2]), {"cookie": uid_cookie("c00035"), "sec-purpose": "prefetch"})
    send(client, events_now("human", GOOD[1:2]), {"cookie": uid_cookie("c00036")})
    wait_for(lambda: all(stored(origin, p) for p in ("c00034", "c00035", "c00036")), what="three impressions")
    assert [(r["robot"], r["flags"]) for p in ("c00034", "c00035", "c00036") for r in stored(origin, p)] == \
        [(True, ["bot"]), (True, ["prefetch"]), (False, [])]


def _chunks(n: int) -> Iterator[bytes]:
    yield b'{"events": ['
    for _ in range(n):
        yield b'{"id": "x", "type": "view", "ts": 1, "item": "p1"},' * 100
    yield b"]}"


@pytest.mark.parametrize("kwargs, status, code", [
    ({"content": b'{"events": []}', "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415,
     "unsupported_media_type"),
    ({"content": b"x" * 70_000, "headers": TEXT}, 413, "too_large"),
    ({"content": _chunks(20), "headers": TEXT}, 413, "too_large"),  # streamed, no Content-Length
    ({"content": b"{nope", "headers": TEXT}, 400, "bad_body"),
    ({"json": {"events": [GOOD[0]] * 51}, "headers": TEXT}, 413, "too_many_events"),
], ids=["media-type", "too-large", "too-large-streamed", "not-json", "too-many"])
def test_bad_beacons_get_their_4xx_and_the_json_error_shape(edge: tuple[httpx.Client, list[str]],
                                                          kwargs: dict[str, Any], status: int, code: str) -> None:
    client, _ = edge
    r = client.post("/v1/events", **kwargs)
    assert r.status_code == status and r.json()["error"]["code"] == code
    assert r.headers["content-type"].startswith("application/json") and r.headers["cache-control"] == "no-store"


def test_events_is_post_only(edge: tuple[httpx.Client, list[str]]) -> None:
    client, _ = edge
    r = client.get("/v1/events")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["error"]["code"]


def test_the_next_page_knows_what_was_just_done(edge: tuple[httpx.Client, list[str]], built: Built,
                                                origin: Origin, tmp_path: Path) -> None:
    """A view beacon: the next `recent` starts with it, at once (no refresh). An add to cart: the banner becomes
    the cart reminder once its delay (1 s in this module) has passed. The state rides in the signed pz_s cookie.
    After `personalizer refresh`, the same holds from KV alone, without the cookie."""
    client, _ = edge
    profiles = {k[len("pz1:p:"):]: Profile.parse(codec.decode(v, expect="profile"))
                for k, v in built.records.items() if k.startswith("pz1:p:c0004")}
    user, prof = next((u, p) for u, p in sorted(profiles.items()) if not p.cart)
    uid = uid_cookie(user)
    gen = codec.decode(built.records[keys.MANIFEST], expect="manifest").data["generation"]
    prefix = keys.item(gen, "x")[:-1]
    items = sorted(k[len(prefix):] for k in built.records if k.startswith(prefix))
    viewed, carted = [i for i in items if i not in prof.bought][7:9]
    # The profile as it stands, filled by the origin and written back to KV before any beacon: the origin adds
    # the event log's newer events to what it answers, so a miss after the beacon could already hold the cart.
    assert client.get("/v1/banner?slot=hero", headers={"cookie": uid}).json()["banner"]["id"] != "cart-reminder"

    def written_back() -> bool:
        if local_kv_get(client.persist, keys.profile(user)) is not None:  # type: ignore[attr-defined]
            return True
        # Under load the origin may have answered past the request's deadline (no write-back then): ask again.
        client.get("/v1/banner?slot=hero", headers={"cookie": uid})
        return False

    wait_for(written_back, what="the profile written back to KV")
    sent = client.post("/v1/events", json={"events": events_now("live", [
        {"id": "v", "type": "view", "item": viewed},
        {"id": "a", "type": "add_to_cart", "item": carted, "quantity": 1}])}, headers={**TEXT, "cookie": uid})
    state = next(v.split(";")[0] for v in sent.headers.get_list("set-cookie") if v.startswith("pz_s="))
    assert sent.status_code == 202
    both = {"cookie": f"{uid}; {state}"}
    recent = client.get("/v1/recommendations?slot=recent", headers=both).json()
    assert recent["tier"] == "user" and recent["items"][0]["id"] == viewed
    time.sleep(1.5)
    hero = client.get("/v1/banner?slot=hero", headers=both).json()
    assert hero["banner"]["id"] == "cart-reminder"
    assert client.get("/v1/banner?slot=hero", headers={"cookie": uid}).json()["banner"]["id"] \
        != "cart-reminder"  # without the state: the profile alone has no cart
    # The queue has carried the beacon to the origin; refresh recomputes the profile and pushes it to KV.
    wait_for(lambda: len(stored(origin, user)) == 2, what="the beacon in the event log")
    refreshed = cli("refresh", "--target", "local", "--persist", str(client.persist),  # type: ignore[attr-defined]
                    "--data", str(origin.data), "--state-dir", str(tmp_path / "state"))  # type: ignore[attr-defined]
    assert refreshed.returncode == 0, refreshed.stderr
    assert " pushed in " in refreshed.stderr  # every person with new events in this module's log
    recent = client.get("/v1/recommendations?slot=recent", headers={"cookie": uid}).json()
    assert recent["tier"] == "user" and recent["items"][0]["id"] == viewed
    hero = client.get("/v1/banner?slot=hero", headers={"cookie": uid}).json()
    assert hero["banner"]["id"] == "cart-reminder"  # the cart is in the profile now, added more than 2 s ago
