"""The origin's event log: every beacon event the edge accepted, stored once, in SQLite (WAL).

It lives in its own file (``events.sqlite``) beside the profile store, so a build that swaps the store in
(``ProfileStore.replace_all``) never loses an event that came in meanwhile. Ingest is idempotent: an event
is keyed by who sent it and its client-made id, so a batch the queue delivers twice is stored once, and
one person cannot shadow another's events by reusing an id.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

from .base import IngestCounts, ReadOnlyLog, after_query, changed_query, event_dict, events_query, ingest_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS beacon_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- commit order (one writer at a time): refresh's watermark
    who TEXT NOT NULL,          -- customer | visitor | anonymous (consent given, identity disabled)
    person TEXT NOT NULL,       -- the signed id; '' when anonymous
    id TEXT NOT NULL,           -- the client-made event id
    type TEXT NOT NULL,
    ts REAL NOT NULL,           -- the page's clock, clamped by the edge to its own
    received INTEGER NOT NULL,  -- the edge's clock
    robot INTEGER NOT NULL,     -- 1: a known bot or a prefetch; never counted as an exposure
    flags TEXT NOT NULL,        -- JSON list: bot, prefetch
    data TEXT NOT NULL,         -- the event's JSON, every field of the contract
    UNIQUE (who, person, id)
);
CREATE INDEX IF NOT EXISTS beacon_events_by_person ON beacon_events (person, ts);
CREATE TABLE IF NOT EXISTS watermarks (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);  -- refresh's, per target
"""
COLUMNS = "who, person, id, type, ts, received, robot, flags, data"
# What SQLite says when the file or its directory cannot be written (a read-only file system or copy).
READ_ONLY = re.compile(r"readonly|read-only|unable to open database file")


class EventLog:
    """WAL mode, one connection per thread, kept open: concurrent ingest writers and readers do not block
    each other, and no call pays for opening the file and checkpointing it on close (measured: half the
    ingest time when each call opened its own).

    In a data directory that cannot be written (a read-only copy shipped for ``/v1/resolve`` alone), the log is
    read-only: reads see the file if there is one (else nothing), and ``ingest`` raises ``ReadOnlyLog``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self.read_only = False
        try:
            self._create()
        except sqlite3.OperationalError as exc:
            if READ_ONLY.search(str(exc)) is None:
                raise
            self.read_only = True

    def _create(self) -> None:
        with closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            columns = [r[1] for r in db.execute("PRAGMA table_info(beacon_events)")]
            if columns and "seq" not in columns:  # a log from before refresh: same rows, now with their order
                db.execute("ALTER TABLE beacon_events RENAME TO beacon_events_v0")
                db.execute("DROP INDEX IF EXISTS beacon_events_by_person")
                db.executescript(SCHEMA)
                db.execute(f"INSERT INTO beacon_events ({COLUMNS}) SELECT {COLUMNS} FROM beacon_events_v0 "
                           "ORDER BY received, ts")
                db.execute("DROP TABLE beacon_events_v0")
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None and self.read_only:
            # Nothing written here, ever: an absent file reads as an empty log.
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True) if self.path.exists() \
                else sqlite3.connect(":memory:")
            if not self.path.exists():
                db.executescript(SCHEMA)
            self._local.db = db
        if db is None:
            db = sqlite3.connect(self.path, timeout=30)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a process crash, fsync per checkpoint
            db.execute("PRAGMA secure_delete=ON")    # an erased person's rows are overwritten, not just unlinked
            self._local.db = db
        return db

    def ingest(self, beacons: Iterable[Any], erased: Callable[[set[str]], set[str]]) -> IngestCounts:
        """Check every beacon and event again, then append the new ones in one transaction.

        ``erased(ids)``: which of these ids are tombstoned; their events are refused, never stored.
        ``ReadOnlyLog`` when this log cannot be written (nothing is stored: the caller answers "try again").
        """
        if self.read_only:
            raise ReadOnlyLog(f"the event log {self.path} is read-only here")
        rows, counts = ingest_rows(beacons, erased)
        with self._connect() as db:
            before = db.total_changes
            db.executemany(f"INSERT OR IGNORE INTO beacon_events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           rows)
            stored = db.total_changes - before
        return replace(counts, stored=stored, duplicates=len(rows) - stored)

    def erase(self, person: str) -> int:
        """Remove everything sent under ``person`` (as a customer or a visitor); returns the count."""
        with self._connect() as db:
            return db.execute("DELETE FROM beacon_events WHERE person = ? AND who != 'anonymous'",
                              (person,)).rowcount

    def events(self, person: str | None = None, who: str | None = None) -> list[dict[str, Any]]:
        """Stored events (of one person, or all) in arrival order, each with its envelope fields."""
        query, args = events_query(person, who, "?")
        with self._connect() as db:
            rows = db.execute(query, args).fetchall()
        return [event_dict(*row) for row in rows]

    def changed_since(self, seq: int) -> tuple[list[tuple[str, str]], int]:
        """(who, person) with events stored after ``seq`` that can change a profile (views, carts, purchases;
        robots' aside), and the newest seq."""
        with self._connect() as db:
            top = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM beacon_events").fetchone()[0])
            people = db.execute(changed_query("?"), (seq, top)).fetchall()
        return [(str(w), str(p)) for w, p in people], top

    def after(self, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``limit`` events stored after ``seq``, in seq order, each with its seq."""
        with self._connect() as db:
            rows = db.execute(after_query("?"), (seq, limit)).fetchall()
        return [(int(row[0]), event_dict(*row[1:])) for row in rows]

    def count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM beacon_events").fetchone()[0])

    def watermark(self, name: str) -> int:
        """The last seq ``name`` (a refresh of one target) has dealt with; 0 when none."""
        with self._connect() as db:
            row = db.execute("SELECT seq FROM watermarks WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_watermark(self, name: str, seq: int) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO watermarks VALUES (?, ?)", (name, seq))
