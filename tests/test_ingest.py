"""The origin's ingest: POST /v1/ingest over real HTTP, the idempotent WAL event log, erasure at ingest."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from personalizer.events import clean_event, message
from personalizer_adapters.batch.build import Built
from personalizer_adapters.origin.app import MAX_INGEST_BODY, SECRET_HEADER, create_app
from personalizer_adapters.privacy.erase import erase_person
from personalizer_adapters.privacy.tombstones import Tombstones
from personalizer_adapters.store.eventlog import EventLog
from personalizer_adapters.store.profiles import ProfileStore
from tests.runtime.harness import serve_asgi
from tests.test_events import GOOD, NOW

SECRET = "ingest-test-secret-0123456789"


class NoKV:
    """The KV side of an erase is tested in test_erasure/test_push_local; here only the event log matters."""

    name = "none"

    def put_many(self, pairs: list[tuple[str, bytes]]) -> None:
        pass

    def close(self) -> None:
        pass


def beacon(customer: str | None, events: list[dict[str, Any]], visitor: str | None = None,
           flags: list[str] | None = None) -> dict[str, Any]:
    return message(customer, visitor, flags or [], [clean_event(e, NOW) for e in events], NOW)


@pytest.fixture()
def data(built: Built, seed_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the seeded origin data: each test's event log starts empty."""
    return Path(shutil.copytree(seed_dir / "origin", tmp_path / "origin"))


@pytest.fixture()
def origin(data: Path) -> Iterator[httpx.Client]:
    with serve_asgi(create_app(data, SECRET)) as url, \
            httpx.Client(base_url=url, headers={SECRET_HEADER: SECRET}) as client:
        yield client


def test_a_batch_is_stored_with_every_field_and_once(origin: httpx.Client, data: Path) -> None:
    batch = {"beacons": [beacon("c00001", GOOD), beacon(None, GOOD[:1], visitor="vabc", flags=["bot"])]}
    first = origin.post("/v1/ingest", json=batch)
    assert first.status_code == 200
    assert first.json() == {"stored": len(GOOD) + 1, "duplicates": 0, "refused": 0, "rejected": 0,
                            "bad_beacons": 0}
    again = origin.post("/v1/ingest", json=batch)
    assert again.json()["stored"] == 0 and again.json()["duplicates"] == len(GOOD) + 1
    log = EventLog(data / "events.sqlite")
    stored = log.events("c00001")
    assert [{k: e[k] for k in e if k not in ("who", "person", "received", "robot", "flags")} for e in stored] \
        == sorted((clean_event(e, NOW) for e in GOOD), key=lambda e: (e["ts"], e["id"]))
    assert {(e["who"], e["robot"]) for e in stored} == {("customer", False)}
    (visitor,) = log.events("vabc")
    assert (visitor["who"], visitor["robot"], visitor["flags"]) == ("visitor", True, ["bot"])


def test_the_same_event_id_from_two_people_is_two_events(origin: httpx.Client, data: Path) -> None:
    origin.post("/v1/ingest", json={"beacons": [beacon("c00001", GOOD[:1]), beacon("c00002", GOOD[:1])]})
    log = EventLog(data / "events.sqlite")
    assert len(log.events("c00001")) == len(log.events("c00002")) == 1


def test_ingest_checks_again_what_the_edge_checked(origin: httpx.Client, data: Path) -> None:
    forged = beacon("c00001", GOOD[:2])
    forged["events"].append({"id": "x", "type": "view", "ts": NOW, "item": "<script>"})
    r = origin.post("/v1/ingest", json={"beacons": [forged, {"v": 9}, "junk"]})
    assert r.json() == {"stored": 2, "duplicates": 0, "refused": 0, "rejected": 1, "bad_beacons": 2}


@pytest.mark.parametrize("body, status, code", [
    (b"{nope", 400, "bad_body"),
    (b'{"beacons": {}}', 400, "bad_body"),
    (b"[" * 50_000, 400, "bad_body"),
], ids=["not-json", "not-list", "deep"])
def test_bad_ingest_bodies(origin: httpx.Client, body: bytes, status: int, code: str) -> None:
    r = origin.post("/v1/ingest", content=body)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)


def test_ingest_needs_the_secret_and_a_bounded_body(origin: httpx.Client) -> None:
    r = origin.post("/v1/ingest", json={"beacons": []}, headers={SECRET_HEADER: "wrong"})
    assert r.status_code == 401
    r = origin.post("/v1/ingest", content=b"x" * (MAX_INGEST_BODY + 1))
    assert r.status_code == 413
    chunked = (b"x" * 1024 * 1024 for _ in range(MAX_INGEST_BODY // (1024 * 1024) + 1))  # no Content-Length
    r = origin.post("/v1/ingest", content=chunked)
    assert r.status_code == 413


def test_an_erased_person_is_removed_and_refused_afterwards(origin: httpx.Client, data: Path,
                                                             tmp_path: Path) -> None:
    origin.post("/v1/ingest", json={"beacons": [beacon("c00003", GOOD), beacon("c00004", GOOD[:1])]})
    report = erase_person("c00003", NoKV(), data, tmp_path / "state",  # type: ignore[arg-type]
                          Tombstones(tmp_path / "tombstones.txt"), [])
    assert f"{len(GOOD)} beacon event(s) removed" in report
    log = EventLog(data / "events.sqlite")
    assert log.events("c00003") == [] and len(log.events("c00004")) == 1
    later = [{**e, "id": e["id"] + "-later"} for e in GOOD]
    r = origin.post("/v1/ingest", json={"beacons": [beacon("c00003", later), beacon(None, later, visitor="vz")]})
    assert r.json()["refused"] == len(GOOD) and r.json()["stored"] == len(GOOD)
    assert log.events("c00003") == []


def test_concurrent_writers_and_readers_lose_nothing(data: Path) -> None:
    """Four threads ingest overlapping batches while another reads: every distinct event exactly once."""
    log = EventLog(data / "events.sqlite")
    erased = ProfileStore(data / "store.sqlite").erased
    seeded = log.count()  # the seed's simulated exposures
    batches = [[beacon(f"c{p:05d}", [{**GOOD[0], "id": f"e{i}"} for i in range(50)]) for p in range(w, w + 20)]
               for w in range(4)]  # people overlap between writers: the same events arrive twice or more
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(batch: list[dict[str, Any]]) -> None:
        try:
            for b in batch:
                log.ingest([b], erased)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read() -> None:
        while not stop.is_set():
            log.count()

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    reader.join()
    assert errors == []
    assert log.count() - seeded == 23 * 50  # people c00000..c00022, 50 events each
    with sqlite3.connect(data / "events.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_lambda_handler_ingests_like_the_http_app(data: Path, monkeypatch: pytest.MonkeyPatch,
                                                      request: pytest.FixtureRequest) -> None:
    """A Function URL event to /v1/ingest through Mangum: stored, then (the same batch) duplicates."""
    import asyncio
    import importlib
    import json
    import sys

    from tests.test_origin import LambdaContext, function_url_event

    monkeypatch.setenv("PZ_ORIGIN_DATA", str(data))
    monkeypatch.setenv("ORIGIN_SECRET", SECRET)
    sys.modules.pop("personalizer_adapters.origin.lambda_handler", None)
    handler = importlib.import_module("personalizer_adapters.origin.lambda_handler").handler
    request.addfinalizer(lambda: (asyncio.get_event_loop_policy().get_event_loop().close(),
                                  asyncio.set_event_loop(None)))
    event = function_url_event("unused", SECRET)
    event["rawPath"] = "/v1/ingest"
    event["requestContext"]["http"]["path"] = "/v1/ingest"  # type: ignore[index]
    event["body"] = json.dumps({"beacons": [beacon("c00007", GOOD)]})
    first = handler(event, LambdaContext())
    second = handler(event, LambdaContext())
    assert first["statusCode"] == second["statusCode"] == 200
    assert json.loads(first["body"])["stored"] == json.loads(second["body"])["duplicates"] == len(GOOD)
    assert len(EventLog(data / "events.sqlite").events("c00007")) == len(GOOD)
