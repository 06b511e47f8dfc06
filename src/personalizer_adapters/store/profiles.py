"""The embedded profile store (SQLite): shoppers, their events, the generation's shared records, tombstones."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from pathlib import Path

from .base import Rows, SnapshotEvent, full_event, history_rows

TABLES = """
CREATE TABLE IF NOT EXISTS shoppers (id TEXT PRIMARY KEY, loyalty TEXT);
CREATE TABLE IF NOT EXISTS events (shopper TEXT NOT NULL, product TEXT NOT NULL, kind INTEGER NOT NULL,
                                   ts INTEGER NOT NULL, qty INTEGER NOT NULL DEFAULT 1,
                                   basket INTEGER NOT NULL DEFAULT -1);  -- a line's quantity, its order's key
CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (id TEXT PRIMARY KEY, erased_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);  -- the snapshot's generation
CREATE TABLE IF NOT EXISTS artifacts (name TEXT PRIMARY KEY, value BLOB NOT NULL);  -- its model artifacts
"""
INDEXES = "CREATE INDEX IF NOT EXISTS events_by_shopper ON events (shopper);"
SCHEMA = TABLES + INDEXES


class ProfileStore:
    """One connection per call: cheap for SQLite, and safe from any thread the ASGI server uses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(events)")}
            for column, kind in (("qty", "INTEGER NOT NULL DEFAULT 1"), ("basket", "INTEGER NOT NULL DEFAULT -1")):
                if column not in columns:  # a file written by a release before quantities and orders
                    db.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def replace_all(self, shoppers: Iterable[tuple[str, str]], events: Iterable[SnapshotEvent],
                    records: Iterable[tuple[str, bytes]], generation: str | None = None,
                    artifacts: Mapping[str, bytes] | None = None) -> None:
        """Load a full snapshot (the seed, or a build) and swap it in atomically, tombstones carried over.

        The snapshot is written to a new file that nothing reads yet, so it needs no rollback journal, and
        its index is built once after the rows are in (20M events: minutes faster than row by row).
        """
        new = self.path.with_name(self.path.name + ".new")
        new.unlink(missing_ok=True)
        erased = self.tombstones()
        with closing(sqlite3.connect(new)) as db:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.executescript(TABLES)
            with db:
                db.executemany("INSERT INTO tombstones VALUES (?, strftime('%s', 'now'))", ((p,) for p in erased))
                db.executemany("INSERT INTO shoppers VALUES (?, ?)", shoppers)
                db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", map(full_event, events))
                db.executemany("INSERT INTO records VALUES (?, ?)", records)
                db.executemany("INSERT INTO artifacts VALUES (?, ?)", sorted((artifacts or {}).items()))
                if generation is not None:
                    db.execute("INSERT INTO meta VALUES ('generation', ?)", (generation,))
                # nothing of an erased person, whatever the snapshot holds
                db.execute("DELETE FROM shoppers WHERE id IN (SELECT id FROM tombstones)")
                db.execute("DELETE FROM events WHERE shopper IN (SELECT id FROM tombstones)")
                db.execute(INDEXES)
        with new.open("rb") as f:
            os.fsync(f.fileno())
        late = self.tombstones() - erased  # an erase that landed in the old file meanwhile
        os.replace(new, self.path)
        self.add_tombstones(late)

    def shopper(self, shopper: str) -> tuple[str | None] | None:
        """``(loyalty,)`` for a known shopper (``None`` tier: the build's rules derive it), ``None`` if unknown."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT loyalty FROM shoppers WHERE id = ? AND id NOT IN (SELECT id FROM tombstones)",
                             (shopper,)).fetchone()
        return None if row is None else (None if row[0] is None else str(row[0]),)

    def events(self, shopper: str, index: dict[str, int]) -> Rows:
        """(product indices, kinds, timestamps, quantities, order keys) of the shopper's events on products still
        in the catalog."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT product, kind, ts, qty, basket FROM events WHERE shopper = ?",
                              (shopper,)).fetchall()
        return history_rows(rows, index)

    def erase(self, shopper: str) -> int:
        """Tombstone first, then the rows, in one transaction; returns the number of events removed."""
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR IGNORE INTO tombstones VALUES (?, strftime('%s', 'now'))", (shopper,))
            db.execute("DELETE FROM shoppers WHERE id = ?", (shopper,))
            return db.execute("DELETE FROM events WHERE shopper = ?", (shopper,)).rowcount

    def add_tombstones(self, people: frozenset[str] | set[str]) -> None:
        """Record erasures made elsewhere (the durable list) and drop those people's rows."""
        if not people:
            return
        with closing(self._connect()) as db, db:
            for person in sorted(people):
                db.execute("INSERT OR IGNORE INTO tombstones VALUES (?, strftime('%s', 'now'))", (person,))
                db.execute("DELETE FROM shoppers WHERE id = ?", (person,))
                db.execute("DELETE FROM events WHERE shopper = ?", (person,))

    def tombstones(self) -> set[str]:
        with closing(self._connect()) as db:
            return {str(r[0]) for r in db.execute("SELECT id FROM tombstones")}

    def erased(self, people: set[str]) -> set[str]:
        """Which of ``people`` are tombstoned."""
        if not people:
            return set()
        with closing(self._connect()) as db:
            marks = ",".join("?" * len(people))
            return {str(r[0]) for r in db.execute(f"SELECT id FROM tombstones WHERE id IN ({marks})",
                                                  sorted(people))}

    def put_record(self, key: str, value: bytes) -> None:
        """Replace one shared record (a campaigns push: the banner record of the active generation)."""
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO records (key, value) VALUES (?, ?)", (key, value))

    def record(self, key: str) -> bytes | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT value FROM records WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def history(self) -> tuple[list[tuple[str, str | None]], Iterator[tuple[str, str, int, int, int, int]]]:
        """The snapshot's shoppers, and its events as they are read (a build's inputs)."""
        with closing(self._connect()) as db:
            shoppers = [(str(i), None if t is None else str(t))
                        for i, t in db.execute("SELECT id, loyalty FROM shoppers")]

        def events() -> Iterator[tuple[str, str, int, int, int, int]]:
            with closing(self._connect()) as db:
                yield from db.execute("SELECT shopper, product, kind, ts, qty, basket FROM events ORDER BY ts")
        return shoppers, events()

    def generation(self) -> str | None:
        """The generation of the snapshot the store holds (``None``: one written without it)."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return None if row is None else str(row[0])

    def artifacts(self) -> dict[str, bytes]:
        """The snapshot's model artifacts (``Model.files``), empty when it was written without them."""
        with closing(self._connect()) as db:
            return {str(n): bytes(v) for n, v in db.execute("SELECT name, value FROM artifacts")}
