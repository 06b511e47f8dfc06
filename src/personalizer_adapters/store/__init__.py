"""The origin's state: the event log, the profile store (shoppers' history, the generation's shared records,
tombstones), behind one contract whatever engine keeps it.

``eventlog`` and ``profiles`` are the embedded SQLite engine: the default for ``make dev``, the tests and a
single host. ``postgres`` is the production engine (``PZ_DATABASE_URL``), shared by any number of origin
instances and batch hosts. ``base`` is the contract both keep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .base import EventStore, PersonHistory, ProfileData, StoreUnavailable, read_person

__all__ = ["DATABASE_ENV", "EventStore", "PersonHistory", "ProfileData", "StoreUnavailable", "Stores", "open_stores",
           "redacted"]

DATABASE_ENV = "PZ_DATABASE_URL"


@dataclass(frozen=True)
class Stores:
    """The event log and the profile store one process works with, and where they are (for messages)."""

    log: EventStore
    profiles: ProfileData
    where: str
    local: bool  # SQLite files in a data directory (else a database server)
    # (who, person, product index) -> what the miss path and refresh read of one person
    person_history: Callable[[str, str, dict[str, int]], PersonHistory]


def redacted(url: str) -> str:
    """A database URL fit for a log line or a message: no password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def open_stores(data_dir: Path, database: str | None = None, deadline_ms: int | None = None) -> Stores:
    """PostgreSQL when ``database`` is a ``postgresql://`` URL (nothing local is read or written but the
    model artifacts, by the caller), else the SQLite files in ``data_dir``. ``deadline_ms`` (PostgreSQL): every
    call ends within it, answered or ``StoreUnavailable`` (the miss path's reads)."""
    if database:
        from . import postgres

        if not postgres.is_url(database):
            raise ValueError(f"{DATABASE_ENV} / --database must be a postgresql:// URL, not {redacted(database)!r}")
        db = postgres.Database.of(database, deadline_ms)
        profiles = postgres.PgProfileStore(db)
        return Stores(postgres.PgEventLog(db), profiles, redacted(database), local=False,
                      person_history=profiles.person_history)
    from .eventlog import EventLog
    from .profiles import ProfileStore

    log, store = EventLog(data_dir / "events.sqlite"), ProfileStore(data_dir / "store.sqlite")
    return Stores(log, store, str(data_dir), local=True, person_history=partial(read_person, log, store))
