"""The production store: PostgreSQL through psycopg 3 and its connection pool (``PZ_DATABASE_URL``).

The same contract as the SQLite engine (``base``), so the origin, ``refresh``, ``report`` and ``erase`` run
unchanged on it, from any number of hosts at once. The URL is libpq's: host, port, TLS (``sslmode``,
``sslrootcert``), application name and options come from it, so RDS/Aurora behind RDS Proxy, Neon or Supabase
need nothing else. Every statement has a deadline (``statement_timeout``, and a wait for a pooled connection);
a server that cannot be reached or does not answer in time raises ``StoreUnavailable``.

The schema is versioned (``pz_meta``) and changed only by ``upgrade`` (``personalizer db upgrade``), never at
request time: an engine opened on a database of another version refuses to work with it.

Appends to the event log take a transaction-scoped advisory lock, so the log's ``seq`` is in commit order across
concurrent writers, as SQLite's single writer gives it: ``refresh``'s watermark never skips an event committed
late with a smaller number.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any

import psycopg
import psycopg_pool

from .base import (
    IngestCounts,
    PersonHistory,
    Rows,
    SnapshotEvent,
    StoreUnavailable,
    after_query,
    changed_query,
    check_batch,
    event_dict,
    events_query,
    full_event,
    history_rows,
    no_rows,
)

SCHEMA_VERSION = 3
MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE pz_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE beacon_events (
    seq BIGSERIAL PRIMARY KEY,  -- commit order (appends serialised): refresh's watermark
    who TEXT NOT NULL, person TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL, received BIGINT NOT NULL, robot SMALLINT NOT NULL, flags TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (who, person, id)
);
CREATE INDEX beacon_events_by_person ON beacon_events (person, ts);
CREATE TABLE shoppers (id TEXT PRIMARY KEY, loyalty TEXT);
CREATE TABLE events (shopper TEXT NOT NULL, product TEXT NOT NULL, kind SMALLINT NOT NULL, ts BIGINT NOT NULL);
CREATE INDEX events_by_shopper ON events (shopper);
CREATE TABLE records (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE tombstones (id TEXT PRIMARY KEY, erased_at BIGINT NOT NULL);
CREATE TABLE watermarks (name TEXT PRIMARY KEY, seq BIGINT NOT NULL);
""",
    # The generation's model artifacts (model.json, model.npz), written with its snapshot: an origin may load
    # them from here instead of its package.
    2: "CREATE TABLE artifacts (name TEXT PRIMARY KEY, value BYTEA NOT NULL);",
    # A purchase line's quantity and its order's key (base.order_key; -1: not known).
    3: "ALTER TABLE events ADD COLUMN qty INTEGER NOT NULL DEFAULT 1, ADD COLUMN basket BIGINT NOT NULL DEFAULT -1;",
}
APPEND_LOCK = 0x707A_6576  # "pzev": the event log's append lock (pg_advisory_xact_lock)
STATEMENT_TIMEOUT_MS = 5000  # a statement's deadline (ingest of a batch, a snapshot's COPY is exempt)
WAIT_MS = 1000  # the longest wait for a pooled connection: a server that is down fails the call within it
CONNECT_TIMEOUT_S = 2  # libpq's smallest
NOW = "EXTRACT(EPOCH FROM now())::BIGINT"
# A batch appended in one statement (autocommit: its own transaction, one round trip): the append lock first
# (joined to every row, so taken before the first row takes its seq, held to the commit), the rows as arrays
# (sent in binary, %b), each with the ids of its message's senders ('' for none) so that a sender tombstoned in
# the database is left out; returns how many rows were new and which senders are tombstoned.
APPEND = b"""
WITH lock AS MATERIALIZED (SELECT pg_advisory_xact_lock(%s)),
batch AS (SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::float8[], %b::int8[],
                               %b::int2[], %b::text[], %b::text[], %b::text[], %b::text[])
          AS b (who, person, id, type, ts, received, robot, flags, data, sender, other)),
gone AS MATERIALIZED (SELECT id FROM tombstones WHERE id IN (SELECT sender FROM batch UNION SELECT other FROM batch)),
ins AS (INSERT INTO beacon_events (who, person, id, type, ts, received, robot, flags, data)
        SELECT who, person, id, type, ts, received, robot, flags, data FROM batch, lock
         WHERE sender NOT IN (SELECT id FROM gone) AND other NOT IN (SELECT id FROM gone)
        ON CONFLICT (who, person, id) DO NOTHING RETURNING 1)
SELECT (SELECT count(*) FROM ins), ARRAY(SELECT id FROM gone)
"""
# One person's history (base.read_person) in one statement, each row tagged with the read it belongs to:
# 0 the shopper (loyalty), 1 their snapshot's events (quantity and order key as text, in the columns that
# carry flags and data for 2), 2 their beacon events (event_dict's columns).
PERSON_QUERY = b"""
SELECT 0, loyalty, NULL, NULL::bigint, NULL::bigint, NULL, NULL FROM shoppers
 WHERE %(customer)s AND id = %(person)s AND id NOT IN (SELECT id FROM tombstones)
UNION ALL
SELECT 1, product, NULL, kind::bigint, ts, qty::text, basket::text FROM events
 WHERE %(customer)s AND shopper = %(person)s
UNION ALL
SELECT 2, who, person, received, robot::bigint, flags, data FROM beacon_events
 WHERE person = %(person)s AND who = %(who)s
"""


def is_url(value: str | None) -> bool:
    return bool(value) and str(value).startswith(("postgresql://", "postgres://"))


def schema_version(db: psycopg.Connection[Any]) -> int:
    """The database's schema version; 0 when it holds none of ours."""
    if db.execute("SELECT to_regclass('pz_meta')").fetchone() == (None,):
        return 0
    row = db.execute("SELECT value FROM pz_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def upgrade(url: str) -> tuple[int, int]:
    """Apply every migration the database lacks, each in its own transaction; (version before, after)."""
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, options="-c synchronous_commit=on") as db:
        with db.transaction():  # one upgrader at a time
            db.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK + 1,))
            before = schema_version(db)
        if before > SCHEMA_VERSION:
            raise RuntimeError(f"the database's schema is version {before}, newer than this release's "
                               f"{SCHEMA_VERSION}: upgrade personalizer instead")
        for version in range(before + 1, SCHEMA_VERSION + 1):
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK + 1,))
                if schema_version(db) >= version:
                    continue
                db.execute(MIGRATIONS[version].encode())
                db.execute("INSERT INTO pz_meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE "
                           "SET value = EXCLUDED.value", (str(version),))
        return before, SCHEMA_VERSION


# When each pooled connection last finished a call: one used a moment ago is handed out without a liveness
# round trip (a miss path's three reads would pay three); one idle longer is checked first.
_USED: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = weakref.WeakKeyDictionary()
CHECK_AFTER_IDLE_S = 2.0


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    if time.monotonic() - _USED.get(conn, 0.0) > CHECK_AFTER_IDLE_S:
        psycopg_pool.ConnectionPool.check_connection(conn)


class Database:
    """One pool per process and URL, shared by the event log and the profile store over it."""

    _pools: dict[str, Database] = {}
    _lock = threading.Lock()

    def __init__(self, url: str, *, timeout_ms: int = STATEMENT_TIMEOUT_MS, wait_ms: int = WAIT_MS,
                 max_size: int = 8, min_size: int = 0) -> None:
        self.url, self.timeout_ms, self.wait_ms = url, timeout_ms, wait_ms
        self.max_size, self.min_size = max_size, min_size
        self.pool = self._pool()
        self._checked = False

    def _pool(self) -> psycopg_pool.ConnectionPool[Any]:
        return psycopg_pool.ConnectionPool(
            self.url, min_size=self.min_size, max_size=self.max_size, timeout=self.wait_ms / 1000, open=True,
            check=_check_if_idle,  # a connection the server dropped is replaced
            # prepare_threshold None: no server-side prepared statements, which a transaction-mode pooler in
            # front of the server (PgBouncer, RDS Proxy, Supabase's and Neon's poolers) may not carry over.
            # autocommit: a single statement is its own transaction (no BEGIN and COMMIT round trips); blocks of
            # several statements that must commit together ask for one (``connection(atomic=True)``).
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "personalizer", "prepare_threshold": None,
                    "autocommit": True,
                    # synchronous_commit on whatever the server's default: an ingest's 200 means the events
                    # survive a crash of the server, so the queue may forget them.
                    "options": f"-c statement_timeout={int(self.timeout_ms)} -c synchronous_commit=on"})

    def _reset(self) -> None:
        """A fresh pool after a failure: the old one's reconnection attempts back off (up to minutes), so a
        server back from a restart would otherwise wait for them; closed in the background."""
        old, self.pool = self.pool, self._pool()
        threading.Thread(target=old.close, kwargs={"timeout": 1.0}, daemon=True).start()

    @classmethod
    def of(cls, url: str, deadline_ms: int | None = None) -> Database:
        """The process's pool for ``url``; with ``deadline_ms``, a pool of its own whose statements and waits
        for a connection end within it (the origin's miss path: the edge gives up after its own budget)."""
        key = f"{deadline_ms}:{url}"
        with cls._lock:
            if key not in cls._pools:
                cls._pools[key] = (cls(url) if deadline_ms is None else
                                   # one connection kept open: a miss does not wait for a connection to be made
                                   cls(url, timeout_ms=deadline_ms, wait_ms=deadline_ms, min_size=1))
            return cls._pools[key]

    @contextmanager
    def connection(self, atomic: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, its statements in one transaction committed when the block ends (``atomic``),
        else each statement its own (one round trip for a block of one); ``StoreUnavailable`` when the server
        cannot be reached, drops the connection, or a statement passes its deadline."""
        try:
            with self.pool.connection() as db:
                if not self._checked:
                    version = schema_version(db)
                    if version != SCHEMA_VERSION:
                        raise RuntimeError(f"the database's schema is version {version}, this release needs "
                                           f"{SCHEMA_VERSION}: run `personalizer db upgrade`")
                    self._checked = True
                with db.transaction() if atomic else nullcontext():
                    yield db
                _USED[db] = time.monotonic()
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
            # A statement past its deadline: the server is up. A closed pool: another call replaced it already.
            if not isinstance(exc, psycopg.errors.QueryCanceled | psycopg_pool.PoolClosed):
                self._reset()
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc

    def close(self) -> None:
        self.pool.close()


class PgEventLog:
    """The event log in PostgreSQL: idempotent appends, one transaction per batch."""

    read_only = False

    def __init__(self, db: Database) -> None:
        self.db = db

    def ingest(self, beacons: Iterable[Any], erased: Callable[[set[str]], set[str]]) -> IngestCounts:
        checked = check_batch(beacons)  # the CPU part first, outside the statement and its lock
        if not checked.messages:
            return checked.counts
        # The tombstones of this very database (the origin's case) are read by the append itself; any other
        # ``erased`` is asked first.
        here = getattr(erased, "__self__", None)
        gone = set() if isinstance(here, PgProfileStore) and here.db.url == self.db.url else erased(checked.senders())
        rows, senders, counts = checked.kept(gone)
        if not rows:
            return counts
        columns = [list(c) for c in zip(*rows, strict=True)]
        columns += [[s[0] if s else "" for s in senders], [s[1] if len(s) > 1 else "" for s in senders]]
        with self.db.connection(atomic=False) as db:  # one statement, one round trip, its own transaction
            stored, erased_now = db.execute(APPEND, [APPEND_LOCK, *columns]).fetchone()  # type: ignore[misc]
        if erased_now:  # tombstoned in the database: the statement left their rows out, as these counts do
            rows, counts = checked.rows(gone | set(erased_now))
        return replace(counts, stored=stored, duplicates=len(rows) - stored)

    def erase(self, person: str) -> int:
        with self.db.connection(atomic=False) as db:
            return db.execute("DELETE FROM beacon_events WHERE person = %s AND who != 'anonymous'",
                              (person,)).rowcount

    def events(self, person: str | None = None, who: str | None = None) -> list[dict[str, Any]]:
        query, args = events_query(person, who, "%s")
        with self.db.connection(atomic=False) as db:
            rows = db.execute(query.encode(), args).fetchall()
        return [event_dict(*row) for row in rows]

    def changed_since(self, seq: int) -> tuple[list[tuple[str, str]], int]:
        with self.db.connection(atomic=False) as db:
            top = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM beacon_events").fetchone()[0])  # type: ignore[index]
            people = db.execute(changed_query("%s").encode(), (seq, top)).fetchall()
        return [(str(w), str(p)) for w, p in people], top

    def after(self, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        with self.db.connection(atomic=False) as db:
            rows = db.execute(after_query("%s").encode(), (seq, limit)).fetchall()
        return [(int(row[0]), event_dict(*row[1:])) for row in rows]

    def count(self) -> int:
        with self.db.connection(atomic=False) as db:
            return int(db.execute("SELECT COUNT(*) FROM beacon_events").fetchone()[0])  # type: ignore[index]

    def watermark(self, name: str) -> int:
        with self.db.connection(atomic=False) as db:
            row = db.execute("SELECT seq FROM watermarks WHERE name = %s", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_watermark(self, name: str, seq: int) -> None:
        with self.db.connection(atomic=False) as db:
            db.execute("INSERT INTO watermarks VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq",
                       (name, seq))


class PgProfileStore:
    """Shoppers' history, the generation's shared records and the tombstones, in PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def replace_all(self, shoppers: Iterable[tuple[str, str]], events: Iterable[SnapshotEvent],
                    records: Iterable[tuple[str, bytes]], generation: str | None = None,
                    artifacts: Mapping[str, bytes] | None = None) -> None:
        """A full snapshot (a build) swapped in in one transaction: readers see the old one until it commits;
        tombstoned people's rows are left out, whenever their erasure landed."""
        with self.db.connection() as db, db.cursor() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")  # a build's millions of rows take their time
            cur.execute("TRUNCATE shoppers, events, records, artifacts")
            if artifacts:
                cur.executemany("INSERT INTO artifacts VALUES (%s, %s)", sorted(artifacts.items()))
            with cur.copy("COPY shoppers (id, loyalty) FROM STDIN") as copy:
                for shopper in shoppers:
                    copy.write_row(shopper)
            with cur.copy("COPY events (shopper, product, kind, ts, qty, basket) FROM STDIN") as copy:
                for event in events:
                    copy.write_row(full_event(event))
            with cur.copy("COPY records (key, value) FROM STDIN") as copy:
                for key, value in records:
                    copy.write_row((key, bytes(value)))
            cur.execute("DELETE FROM shoppers WHERE id IN (SELECT id FROM tombstones)")
            cur.execute("DELETE FROM events WHERE shopper IN (SELECT id FROM tombstones)")
            cur.execute("DELETE FROM pz_meta WHERE key IN ('generation', 'snapshot_at')")
            if generation is not None:
                cur.execute(f"INSERT INTO pz_meta VALUES ('generation', %s), ('snapshot_at', {NOW}::text)",
                            (generation,))

    def shopper(self, shopper: str) -> tuple[str | None] | None:
        with self.db.connection(atomic=False) as db:
            row = db.execute("SELECT loyalty FROM shoppers WHERE id = %s AND id NOT IN (SELECT id FROM tombstones)",
                             (shopper,)).fetchone()
        return None if row is None else (None if row[0] is None else str(row[0]),)

    def events(self, shopper: str, index: dict[str, int]) -> Rows:
        with self.db.connection(atomic=False) as db:
            rows = db.execute("SELECT product, kind, ts, qty, basket FROM events WHERE shopper = %s",
                              (shopper,)).fetchall()
        return history_rows(rows, index)

    def person_history(self, who: str, person: str, index: dict[str, int]) -> PersonHistory:
        """``base.read_person`` in one statement (one round trip, one pooled connection): the miss path's read."""
        with self.db.connection(atomic=False) as db:
            rows = db.execute(PERSON_QUERY, {"person": person, "who": who, "customer": who == "customer"}).fetchall()
        known = next(((None if r[1] is None else str(r[1]),) for r in rows if r[0] == 0), None)
        history = history_rows(((r[1], r[3], r[4], int(r[5]), int(r[6])) for r in rows if r[0] == 1), index) \
            if known else no_rows()
        return PersonHistory(known, history, [event_dict(*r[1:]) for r in rows if r[0] == 2])

    def erase(self, shopper: str) -> int:
        """Tombstone first, then the rows, in one transaction: ingest sees the tombstone the moment it
        commits; the event log's rows go with ``PgEventLog.erase``."""
        with self.db.connection() as db:
            db.execute(f"INSERT INTO tombstones VALUES (%s, {NOW}) ON CONFLICT DO NOTHING", (shopper,))
            db.execute("DELETE FROM shoppers WHERE id = %s", (shopper,))
            return db.execute("DELETE FROM events WHERE shopper = %s", (shopper,)).rowcount

    def add_tombstones(self, people: frozenset[str] | set[str]) -> None:
        if not people:
            return
        with self.db.connection() as db, db.cursor() as cur:
            ids = sorted(people)
            cur.executemany(f"INSERT INTO tombstones VALUES (%s, {NOW}) ON CONFLICT DO NOTHING", [(p,) for p in ids])
            cur.execute("DELETE FROM shoppers WHERE id = ANY(%s)", (ids,))
            cur.execute("DELETE FROM events WHERE shopper = ANY(%s)", (ids,))

    def tombstones(self) -> set[str]:
        with self.db.connection(atomic=False) as db:
            return {str(r[0]) for r in db.execute("SELECT id FROM tombstones")}

    def erased(self, people: set[str]) -> set[str]:
        if not people:
            return set()
        with self.db.connection(atomic=False) as db:
            return {str(r[0]) for r in db.execute("SELECT id FROM tombstones WHERE id = ANY(%s)", (sorted(people),))}

    def put_record(self, key: str, value: bytes) -> None:
        with self.db.connection(atomic=False) as db:
            db.execute("INSERT INTO records VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                       (key, value))

    def record(self, key: str) -> bytes | None:
        with self.db.connection(atomic=False) as db:
            row = db.execute("SELECT value FROM records WHERE key = %s", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def history(self) -> tuple[list[tuple[str, str | None]], Iterator[tuple[str, str, int, int, int, int]]]:
        with self.db.connection(atomic=False) as db:
            shoppers = [(str(i), None if t is None else str(t))
                        for i, t in db.execute("SELECT id, loyalty FROM shoppers")]

        def events() -> Iterator[tuple[str, str, int, int, int, int]]:
            with self.db.connection() as db, db.cursor(name="history") as cur:  # server-side: streamed
                cur.execute("SELECT shopper, product, kind, ts, qty, basket FROM events ORDER BY ts")
                yield from cur
        return shoppers, events()

    def generation(self) -> str | None:
        with self.db.connection(atomic=False) as db:
            row = db.execute("SELECT value FROM pz_meta WHERE key = 'generation'").fetchone()
        return None if row is None else str(row[0])

    def artifacts(self) -> dict[str, bytes]:
        with self.db.connection(atomic=False) as db:
            return {str(n): bytes(v) for n, v in db.execute("SELECT name, value FROM artifacts")}
