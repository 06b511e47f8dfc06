"""The store's contract (personalizer_adapters.store.base), one suite for every engine: SQLite (embedded) and
PostgreSQL (a real server, tests/runtime/postgres.py), each test on a store of its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from personalizer.events import clean_event, message
from personalizer_adapters.store import postgres
from personalizer_adapters.store.base import EventStore, PersonHistory, ProfileData, StoreUnavailable, read_person
from personalizer_adapters.store.eventlog import EventLog
from personalizer_adapters.store.profiles import ProfileStore
from tests.runtime.postgres import Server, postgres_server
from tests.test_events import GOOD, NOW


@dataclass
class Store:
    engine: str
    log: EventStore
    profiles: ProfileData
    url: str = ""

    def person_history(self, who: str, person: str, index: dict[str, int]) -> PersonHistory:
        """As ``open_stores`` wires it: PostgreSQL's one-statement read, else the three reads."""
        if isinstance(self.profiles, postgres.PgProfileStore):
            return self.profiles.person_history(who, person, index)
        return read_person(self.log, self.profiles, who, person, index)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with postgres_server() as s:
        yield s


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store("sqlite", EventLog(tmp_path / "events.sqlite"), ProfileStore(tmp_path / "store.sqlite"))
    server: Server = request.getfixturevalue("server")
    url = server.new_database()
    assert postgres.upgrade(url) == (0, postgres.SCHEMA_VERSION)
    db = postgres.Database(url)
    request.addfinalizer(db.close)
    return Store("postgres", postgres.PgEventLog(db), postgres.PgProfileStore(db), url)


@contextmanager
def upgraded(server: Server, **options: Any) -> Iterator[tuple[str, postgres.Database]]:
    """A fresh database at this release's schema and a pool on it (``options``: its deadlines), closed after."""
    url = server.new_database()
    postgres.upgrade(url)
    db = postgres.Database(url, **options)
    try:
        yield url, db
    finally:
        db.close()


def beacon(customer: str | None, events: list[dict[str, Any]], visitor: str | None = None,
           flags: list[str] | None = None) -> dict[str, Any]:
    return message(customer, visitor, flags or [], [clean_event(e, NOW) for e in events], NOW)


def nobody(ids: set[str]) -> set[str]:
    return set()


def test_ingest_is_idempotent_and_keeps_every_field(store: Store) -> None:
    batch = [beacon("c1", GOOD), beacon(None, GOOD[:1], visitor="v1", flags=["bot"])]
    first = store.log.ingest(batch, nobody)
    again = store.log.ingest(batch, nobody)
    assert (first.stored, first.duplicates) == (len(GOOD) + 1, 0)
    assert (again.stored, again.duplicates) == (0, len(GOOD) + 1)
    assert store.log.count() == len(GOOD) + 1
    mine = store.log.events("c1", "customer")
    assert [e["id"] for e in mine] == [e["id"] for e in sorted(GOOD, key=lambda e: (e["ts"], e["id"]))]
    purchase = next(e for e in mine if e["type"] == "purchase")
    assert purchase["items"] == [{"item": "p00003", "quantity": 1, "price": "139.99"}]
    assert purchase["received"] == NOW and purchase["robot"] is False and purchase["flags"] == []
    bot = store.log.events("v1", "visitor")
    assert bot[0]["robot"] is True and bot[0]["flags"] == ["bot"]


def test_one_person_cannot_shadow_anothers_event_ids(store: Store) -> None:
    counts = store.log.ingest([beacon("c1", GOOD[:1]), beacon("c2", GOOD[:1])], nobody)
    assert counts.stored == 2 and len(store.log.events("c2")) == 1


def test_bad_beacons_and_events_are_counted_not_stored(store: Store) -> None:
    odd = message("c1", None, [], [clean_event(GOOD[0], NOW), {"id": "x", "type": "nope", "ts": NOW}], NOW)
    counts = store.log.ingest([{"v": 99}, odd], nobody)
    assert (counts.bad_beacons, counts.stored, counts.rejected) == (1, 1, 1)
    assert store.log.count() == 1


def test_tombstoned_people_are_refused_at_ingest(store: Store) -> None:
    store.profiles.add_tombstones({"c9"})
    counts = store.log.ingest([beacon("c9", GOOD), beacon(None, GOOD[:2], visitor="c9"), beacon("c1", GOOD[:1])],
                              store.profiles.erased)
    assert (counts.refused, counts.stored) == (len(GOOD) + 2, 1)
    assert store.log.events("c9") == []
    both = beacon("c2", GOOD[:2], visitor="c9")  # signed in on a device whose visitor id was erased: refused
    again = store.log.ingest([beacon("c9", GOOD), both, beacon("c1", GOOD[:1])], store.profiles.erased)
    assert (again.refused, again.stored, again.duplicates) == (len(GOOD) + 2, 0, 1)
    assert store.log.events("c2") == []


def test_concurrent_writers_store_each_event_once_and_the_watermark_misses_none(store: Store) -> None:
    """Four writers, each batch delivered twice: every event stored once; reading changes as they land, in
    steps, finds every person exactly as a single read at the end does."""
    people = [f"c{i:03d}" for i in range(80)]
    errors: list[BaseException] = []
    seen: set[tuple[str, str]] = set()
    done = threading.Event()

    def write(part: list[str]) -> None:
        try:
            for person in part + part:  # every batch twice, as a retrying queue would
                store.log.ingest([beacon(person, GOOD[:3])], nobody)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def follow() -> None:
        watermark = 0
        while True:
            finished = done.is_set()
            changed, watermark = store.log.changed_since(watermark)
            seen.update(changed)
            if finished:
                return

    reader = threading.Thread(target=follow)
    reader.start()
    writers = [threading.Thread(target=write, args=(people[i::4],)) for i in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()
    assert not errors, errors
    assert store.log.count() == len(people) * 3
    assert seen == {("customer", p) for p in people}
    assert store.log.changed_since(store.log.changed_since(0)[1])[0] == []


def test_changes_leave_out_robots_anonymous_and_non_profile_events(store: Store) -> None:
    store.log.ingest([beacon("c1", GOOD[1:2]), beacon(None, GOOD[:1], visitor="v1", flags=["bot"]),
                      beacon(None, GOOD[:1]), beacon("c2", GOOD[:1])], nobody)
    changed, top = store.log.changed_since(0)
    assert changed == [("customer", "c2")] and top > 0
    assert store.log.changed_since(top) == ([], top)


def test_a_snapshot_swaps_in_with_history_records_and_tombstones(store: Store) -> None:
    store.profiles.add_tombstones({"gone"})
    store.profiles.replace_all([("s1", "gold"), ("s2", None), ("gone", "silver")],  # type: ignore[list-item]
                               [("s1", "p1", 0, 10), ("s1", "p2", 2, 20), ("s2", "p3", 0, 5), ("gone", "p1", 2, 1)],
                               [("pz1:g:g1:popular", b"\x00\x01popular"), ("pz1:g:g1:banners", b"banners")])
    assert store.profiles.shopper("s1") == ("gold",) and store.profiles.shopper("s2") == (None,)
    assert store.profiles.shopper("gone") is None and store.profiles.shopper("nobody") is None
    products, kinds, ts, qty, keys = store.profiles.events("s1", {"p1": 0, "p2": 1})
    assert sorted(zip(products.tolist(), kinds.tolist(), ts.tolist(), strict=True)) == [(0, 0, 10), (1, 2, 20)]
    assert qty.tolist() == [1, 1] and keys.tolist() == [-1, -1]  # a snapshot without quantities or orders
    assert store.profiles.events("s1", {"p2": 7})[0].tolist() == [7]  # products no longer sold are left out
    assert store.profiles.events("gone", {"p1": 0})[0].tolist() == []
    assert store.profiles.record("pz1:g:g1:popular") == b"\x00\x01popular"
    store.profiles.put_record("pz1:g:g1:banners", b"new")
    assert store.profiles.record("pz1:g:g1:banners") == b"new" and store.profiles.record("pz1:x") is None
    assert store.profiles.generation() is None  # a snapshot written without its generation
    assert store.profiles.artifacts() == {}  # nor its model's artifacts
    artifacts = {"model.json": b'{"generation": "g2"}', "model.npz": bytes(range(256)) * 4}
    store.profiles.replace_all([("s3", None)], [], [], "g2", artifacts)  # type: ignore[list-item]
    assert store.profiles.shopper("s1") is None and store.profiles.tombstones() == {"gone"}
    assert store.profiles.generation() == "g2" and store.profiles.artifacts() == artifacts
    assert store.profiles.record("pz1:g:g1:popular") is None
    store.profiles.replace_all([], [], [], "g3", {"model.json": b"{}"})
    assert store.profiles.artifacts() == {"model.json": b"{}"}  # the new snapshot's, none of the old's


def test_erase_tombstones_first_and_removes_the_person(store: Store) -> None:
    store.profiles.replace_all([("s1", "gold"), ("s2", None)], [("s1", "p1", 0, 10), ("s2", "p1", 0, 11)],  # type: ignore[list-item]
                               [])
    store.log.ingest([beacon("s1", GOOD), beacon(None, GOOD[:2], visitor="s1"), beacon("s2", GOOD[:1])], nobody)
    assert store.profiles.erase("s1") == 1
    assert store.log.erase("s1") == len(GOOD) + 2
    assert store.profiles.erased({"s1", "s2"}) == {"s1"} and store.profiles.shopper("s1") is None
    assert store.log.events("s1") == [] and len(store.log.events("s2")) == 1
    assert store.log.ingest([beacon("s1", GOOD[:1])], store.profiles.erased).refused == 1
    assert store.profiles.erase("s1") == 0  # idempotent


def test_the_miss_paths_history_reads_either_engine(store: Store) -> None:
    """What the miss path and refresh read of one person (``Stores.person_history``): the shopper, their
    snapshot's history and their own beacon events, nobody else's; a visitor has no snapshot; an erased shopper
    is unknown."""
    from personalizer_adapters.origin.history import merge_log

    index = {"p1": 0, "p2": 1}
    store.profiles.replace_all([("s1", "gold"), ("s2", None), ("s3", None)],  # type: ignore[list-item]
                               [("s1", "p1", 2, 10, 3, 77), ("s1", "gone", 0, 11), ("s2", "p2", 2, 12)], [])
    cart = {"id": "b", "type": "add_to_cart", "ts": NOW - 1, "item": "p2", "quantity": 1}
    store.log.ingest([beacon("s1", [cart]), beacon("s2", GOOD[:1]), beacon(None, [cart], visitor="s1")], nobody)
    s1 = store.person_history("customer", "s1", index)
    assert s1.known == ("gold",) and [r.tolist() for r in s1.rows] == [[0], [2], [10], [3], [77]]  # "gone": not sold
    assert [(e["id"], e["who"], e["person"]) for e in s1.events] == [("b", "customer", "s1")]
    rows = merge_log(s1.rows, s1.events, index, after=100)
    assert [r.tolist() for r in rows] == [[0, 1], [2, 1], [10, NOW - 1], [3, 1], [77, -1]]
    visitor = store.person_history("visitor", "s1", index)
    assert visitor.known is None and visitor.rows[0].size == 0 and [e["who"] for e in visitor.events] == ["visitor"]
    assert store.person_history("customer", "s3", index).known == (None,)  # known, tier from the rules
    nobody_at_all = store.person_history("customer", "s9", index)
    assert nobody_at_all.known is None and nobody_at_all.rows[0].size == 0 and nobody_at_all.events == []
    store.profiles.erase("s2")
    erased = store.person_history("customer", "s2", index)
    assert erased.known is None and erased.rows[0].size == 0


# -- PostgreSQL only: the schema's versions ---------------------------------------------------------------
def test_upgrade_is_idempotent_and_an_unupgraded_database_is_refused(server: Server) -> None:
    url = server.new_database()
    db = postgres.Database(url)
    try:
        with pytest.raises(RuntimeError, match="personalizer db upgrade"):
            postgres.PgEventLog(db).count()
        assert postgres.upgrade(url) == (0, postgres.SCHEMA_VERSION)
        assert postgres.upgrade(url) == (postgres.SCHEMA_VERSION, postgres.SCHEMA_VERSION)
        assert postgres.PgEventLog(db).count() == 0
    finally:
        db.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE pz_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="newer than this release"):
        postgres.upgrade(url)


def test_upgrade_from_the_first_schema_keeps_the_data(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database made by the first release (schema 1, events in it) upgraded by this one: the new migrations
    only, the events kept; an engine of this release refuses it until then."""
    url = server.new_database()
    monkeypatch.setattr(postgres, "SCHEMA_VERSION", 1)
    assert postgres.upgrade(url) == (0, 1)
    first = postgres.Database(url)
    try:
        assert postgres.PgEventLog(first).ingest([beacon("s1", GOOD)], nobody).stored == len(GOOD)
    finally:
        first.close()
    monkeypatch.undo()
    db = postgres.Database(url)
    try:
        with pytest.raises(RuntimeError, match="version 1, this release needs"):
            postgres.PgEventLog(db).count()
        assert postgres.upgrade(url) == (1, postgres.SCHEMA_VERSION)
        assert postgres.PgEventLog(db).count() == len(GOOD)
        assert postgres.PgProfileStore(db).artifacts() == {}
    finally:
        db.close()


def test_a_server_that_is_down_is_unavailable_not_an_error_page(server: Server) -> None:
    with upgraded(server, timeout_ms=500) as (_, db):
        log = postgres.PgEventLog(db)
        assert log.ingest([beacon("c1", GOOD[:1])], nobody).stored == 1
        server.stop()
        try:
            with pytest.raises(StoreUnavailable):
                log.ingest([beacon("c1", GOOD[1:2])], nobody)
        finally:
            server.start()
        # the pool's broken connections are replaced: the next call works, nothing was half-stored
        assert log.ingest([beacon("c1", GOOD[1:2])], nobody).stored == 1 and log.count() == 2


def test_a_statement_past_its_deadline_is_unavailable(server: Server) -> None:
    with upgraded(server, timeout_ms=300) as (_, db):
        with pytest.raises(StoreUnavailable), db.connection() as conn:
            conn.execute("SELECT pg_sleep(2)")
        assert postgres.PgEventLog(db).count() == 0


def test_refresh_watermarks_are_kept_per_target(store: Store) -> None:
    assert store.log.watermark("refresh:local") == 0
    store.log.set_watermark("refresh:local", 41)
    store.log.set_watermark("refresh:local", 42)
    store.log.set_watermark("refresh:cloudflare", 7)
    assert (store.log.watermark("refresh:local"), store.log.watermark("refresh:cloudflare")) == (42, 7)


def test_a_connection_the_server_dropped_is_replaced(server: Server) -> None:
    """Every backend of the pool killed (a failover, an idle timeout at a proxy). Idle for a while: the pool
    checks it before handing it out, and the call works. Killed right after use (not checked, to spare the
    round trip): that one call is unavailable (a 503: nothing stored, the queue delivers again), the next works."""
    import time

    with upgraded(server) as (url, db):
        log = postgres.PgEventLog(db)

        def kill() -> None:
            with psycopg.connect(server.url(), autocommit=True) as admin:
                killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                       "WHERE datname = %s AND pid != pg_backend_pid()", (url.rsplit("/", 1)[1],))
                assert killed.fetchone()[0] >= 1  # type: ignore[index]

        assert log.ingest([beacon("c1", GOOD[:1])], nobody).stored == 1
        kill()
        time.sleep(postgres.CHECK_AFTER_IDLE_S + 0.2)
        assert log.ingest([beacon("c1", GOOD[1:2])], nobody).stored == 1
        kill()
        with pytest.raises(StoreUnavailable):
            log.ingest([beacon("c1", GOOD[2:3])], nobody)
        assert log.ingest([beacon("c1", GOOD[2:3])], nobody).stored == 1 and log.count() == 3


def test_a_server_restarted_mid_batch_keeps_every_event_once(server: Server) -> None:
    """Batches of 1,000 events appended in a loop while the server is killed (immediate shutdown: transactions
    in flight are lost) and started again; the writer retries whatever was not acknowledged, as the queue
    does. Every event is stored once: nothing half-written, nothing doubled, nothing lost."""
    import signal
    import time

    with upgraded(server) as (_, db):
        log = postgres.PgEventLog(db)
        batches = [[beacon(f"c{b:03d}", [{"id": f"e{k}-{i}", "type": "view", "ts": NOW - 1, "item": f"p{i:05d}"}
                                         for i in range(10)]) for k in range(10)] for b in range(200)]
        acknowledged = failures = 0
        restarted = threading.Event()

        def restart() -> None:
            time.sleep(0.3)
            server.process.send_signal(signal.SIGQUIT)  # immediate: no clean shutdown, in-flight work is lost
            server.process.wait(30)
            server.start()
            restarted.set()

        chaos = threading.Thread(target=restart)
        chaos.start()
        time.sleep(0.25)  # the writer starts just before the crash
        for b in batches:
            while True:
                try:
                    acknowledged += log.ingest(b, nobody).stored
                    break
                except StoreUnavailable:
                    failures += 1
                    time.sleep(0.2)
        chaos.join()
        assert restarted.is_set()
        assert failures >= 1, "the crash happened after the last batch: nothing was tested"
        assert acknowledged == 200 * 100  # a batch is stored whole or not at all, and retried until it is
        assert log.count() == 200 * 100


def test_a_build_from_the_store_keeps_quantities_and_orders(store: Store, tmp_path: Path) -> None:
    """build --events store: the snapshot's quantities and order keys, and a beacon purchase's, read back by
    the build as they were (the snapshot's keys as they are, the beacon's order id keyed as an export's)."""
    from personalizer_adapters.batch.inputs import Catalog, Report, read_events
    from personalizer_adapters.store.base import order_key, write_build_inputs

    store.profiles.replace_all([("s1", None)], [("s1", "p1", 2, 10, 3, 4242), ("s1", "p2", 0, 11)], [])
    bought = {"id": "buy", "type": "purchase", "ts": NOW - 5, "order": "web-17",
              "items": [{"item": "p2", "quantity": 4, "price": "2.00"}]}
    store.log.ingest([beacon("s1", [bought])], nobody)
    events, shoppers = write_build_inputs(store.log, store.profiles, tmp_path / "in")
    ids, ev = read_events(events, Catalog({"p1": 0, "p2": 1}), Report(strict=True))
    rows = sorted(zip(ev["product"].tolist(), ev["kind"].tolist(), ev["qty"].tolist(), ev["order"].tolist(),
                      strict=True))
    assert ids == ["s1"] and rows == [(0, 2, 3, 4242), (1, 0, 1, -1), (1, 2, 4, order_key("web-17"))]


def test_events_after_a_seq_come_in_seq_order_bounded(store: Store) -> None:
    """What export-events reads: the events after a seq, in order, at most so many, each with its seq."""
    store.log.ingest([beacon("s1", GOOD), beacon("s2", GOOD[:2])], nobody)
    everything = store.log.after(0, 1000)
    seqs = [seq for seq, _ in everything]
    assert len(everything) == len(GOOD) + 2 and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert store.log.after(seqs[2], 3) == everything[3:6]
    assert store.log.after(seqs[-1], 10) == []
    assert {e["person"] for _, e in everything} == {"s1", "s2"}
