"""The store's contract: what the origin, ``refresh``, ``report`` and ``erase`` ask of the event log and the
profile store, whichever engine keeps them (``eventlog``/``profiles``: SQLite; ``postgres``: PostgreSQL).
One suite of tests (tests/test_store.py) holds every engine to it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from personalizer.digits import ascii_digits
from personalizer.events import Rejected, accept, check_message

# One stored beacon event: who, person, id, type, ts, received, robot, flags (JSON), data (JSON).
Row = tuple[str, str, str, str, float, int, int, str, str]
# A shopper's snapshot history: product indices, kinds, timestamps, quantities, order keys.
Rows = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64],
             npt.NDArray[np.int64]]
# One snapshot event: shopper, product, kind, ts, quantity, order key (a 4-tuple: quantity 1, no order).
SnapshotEvent = tuple[str, str, int, int] | tuple[str, str, int, int, int, int]
NO_ORDER = -1


def full_event(e: SnapshotEvent) -> tuple[str, str, int, int, int, int]:
    """A snapshot event with its quantity and order key (1 and none when it has neither)."""
    return e if len(e) == 6 else (*e, 1, NO_ORDER)


@dataclass(frozen=True, slots=True)
class IngestCounts:
    stored: int = 0      # new events written
    duplicates: int = 0  # already stored (a retried batch)
    refused: int = 0     # events of an erased person
    rejected: int = 0    # events off contract (the edge checks first; this is the second check)
    bad_beacons: int = 0  # envelopes off contract

    def as_json(self) -> dict[str, int]:
        return {"stored": self.stored, "duplicates": self.duplicates, "refused": self.refused,
                "rejected": self.rejected, "bad_beacons": self.bad_beacons}


class ReadOnlyLog(RuntimeError):
    """The log cannot be written here (a read-only data directory): nothing was stored."""


class StoreUnavailable(RuntimeError):
    """The store could not be reached or did not answer in time: nothing was stored or read. Ingest answers
    503 with Retry-After (the queue delivers again), the miss path fails fast."""


@dataclass(frozen=True, slots=True)
class CheckedBatch:
    """A batch of beacons checked again, before the tombstones are consulted: each message's senders and rows."""

    messages: list[tuple[tuple[str, ...], list[Row]]]
    counts: IngestCounts  # rejected and bad_beacons

    def senders(self) -> set[str]:
        return {p for senders, _ in self.messages for p in senders}

    def rows(self, gone: set[str]) -> tuple[list[Row], IngestCounts]:
        """The rows to append, every message of a ``gone`` (tombstoned) sender left out and counted refused."""
        rows, _, counts = self.kept(gone)
        return rows, counts

    def kept(self, gone: set[str]) -> tuple[list[Row], list[tuple[str, ...]], IngestCounts]:
        """``rows`` with each kept row's senders beside it (an engine that checks tombstones itself)."""
        rows: list[Row] = []
        senders: list[tuple[str, ...]] = []
        refused = 0
        for sent_by, kept in self.messages:
            if gone.intersection(sent_by):
                refused += len(kept)
            else:
                rows.extend(kept)
                senders.extend([sent_by] * len(kept))
        return rows, senders, replace(self.counts, refused=refused)


def check_batch(beacons: Iterable[Any]) -> CheckedBatch:
    """Every beacon and event checked again (the edge checks first; this is the second check): the CPU part of
    an append, done before any lock or transaction is taken."""
    messages: list[tuple[tuple[str, ...], list[Row]]] = []
    rejected = bad = 0
    for raw in beacons:
        try:
            m = check_message(raw)
        except Rejected:
            bad += 1
            continue
        kept, out = accept(m["events"], m["received"])
        rejected += len(out)
        who, person = (("customer", m["customer"]) if m["customer"] else
                       ("visitor", m["visitor"]) if m["visitor"] else ("anonymous", ""))
        robot = int(bool(m["flags"]))
        flags = json.dumps(m["flags"])
        senders = tuple(p for p in (m["customer"], m["visitor"]) if p)
        messages.append((senders, [(who, person, e["id"], e["type"], e["ts"], m["received"], robot, flags,
                                    json.dumps(e, separators=(",", ":"))) for e in kept]))
    return CheckedBatch(messages, IngestCounts(rejected=rejected, bad_beacons=bad))


def ingest_rows(beacons: Iterable[Any], erased: Callable[[set[str]], set[str]]) -> tuple[list[Row], IngestCounts]:
    """The rows to append and the counts of what was not kept (``stored`` and ``duplicates`` are the engine's to
    fill). ``erased(ids)``: which of these ids are tombstoned."""
    checked = check_batch(beacons)
    return checked.rows(erased(checked.senders()))


def events_query(person: str | None, who: str | None, mark: str) -> tuple[str, list[str]]:
    """The event log's read of stored events (of one person, one kind of sender, or all) in arrival order, with
    the engine's parameter ``mark`` (``?`` or ``%s``), and its arguments; rows for ``event_dict``."""
    where = [f"{column} = {mark}" for column, value in (("person", person), ("who", who)) if value is not None]
    args = [value for value in (person, who) if value is not None]
    return ("SELECT who, person, received, robot, flags, data FROM beacon_events"
            + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY received, ts, id"), args


def changed_query(mark: str) -> str:
    """Who has events stored in a range of seq (two parameters ``mark``) that can change a profile: views, cart
    changes, purchases; robots and anonymous senders aside."""
    return (f"SELECT DISTINCT who, person FROM beacon_events WHERE seq > {mark} AND seq <= {mark} AND robot = 0 "
            "AND who != 'anonymous' AND type IN ('view', 'add_to_cart', 'remove_from_cart', 'purchase') "
            "ORDER BY who, person")


def after_query(mark: str) -> str:
    """The events stored after a seq, in seq order, at most a number of them (two parameters ``mark``): rows of
    ``seq`` and ``event_dict``'s columns (``personalizer export-events``)."""
    return (f"SELECT seq, who, person, received, robot, flags, data FROM beacon_events WHERE seq > {mark} "
            f"ORDER BY seq LIMIT {mark}")


def event_dict(who: str, person: str, received: int, robot: Any, flags: str, data: str) -> dict[str, Any]:
    """A stored event as the readers see it: the event's fields with its envelope's."""
    return {**json.loads(data), "who": who, "person": person, "received": int(received), "robot": bool(robot),
            "flags": json.loads(flags)}


def history_rows(rows: Iterable[tuple[str, int, int, int, int]], index: dict[str, int]) -> Rows:
    """A shopper's stored (product, kind, ts, quantity, order key) rows as arrays of product indices, products
    no longer sold left out."""
    kept = [(index[p], k, t, q, o) for p, k, t, q, o in rows if p in index]
    arr = np.array(kept, dtype=np.int64).reshape(-1, 5)
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4]


def no_rows() -> Rows:
    empty = np.zeros(0, dtype=np.int64)
    return empty, empty, empty, empty, empty


@dataclass(frozen=True)
class PersonHistory:
    """What the miss path and ``refresh`` read of one person: ``(loyalty,)`` when the store knows them as a
    shopper (``None`` otherwise, or when erased), their snapshot history, and their beacon events."""

    known: tuple[str | None] | None
    rows: Rows
    events: list[dict[str, Any]]


class EventStore(Protocol):
    """``ingest(beacons, erased)``: ``erased(ids)`` says which senders are tombstoned; an engine that keeps the
    tombstones itself (PostgreSQL) also refuses those it holds, read in the append's own transaction."""

    read_only: bool

    def ingest(self, beacons: Iterable[Any], erased: Callable[[set[str]], set[str]]) -> IngestCounts: ...
    def erase(self, person: str) -> int: ...
    def events(self, person: str | None = None, who: str | None = None) -> list[dict[str, Any]]: ...
    def changed_since(self, seq: int) -> tuple[list[tuple[str, str]], int]: ...
    def after(self, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]: ...
    def count(self) -> int: ...
    def watermark(self, name: str) -> int: ...
    def set_watermark(self, name: str, seq: int) -> None: ...


class ProfileData(Protocol):
    def replace_all(self, shoppers: Iterable[tuple[str, str]], events: Iterable[SnapshotEvent],
                    records: Iterable[tuple[str, bytes]], generation: str | None = None,
                    artifacts: Mapping[str, bytes] | None = None) -> None: ...
    def generation(self) -> str | None: ...
    def artifacts(self) -> dict[str, bytes]: ...
    def shopper(self, shopper: str) -> tuple[str | None] | None: ...
    def events(self, shopper: str, index: dict[str, int]) -> Rows: ...
    def erase(self, shopper: str) -> int: ...
    def add_tombstones(self, people: frozenset[str] | set[str]) -> None: ...
    def tombstones(self) -> set[str]: ...
    def erased(self, people: set[str]) -> set[str]: ...
    def put_record(self, key: str, value: bytes) -> None: ...
    def record(self, key: str) -> bytes | None: ...
    def history(self) -> tuple[list[tuple[str, str | None]], Iterator[tuple[str, str, int, int, int, int]]]: ...


def read_person(log: EventStore, profiles: ProfileData, who: str, person: str, index: dict[str, int]) -> PersonHistory:
    """One person's history read from the two parts of the store, one call each (an engine that can read all at
    once in one round trip does so instead: ``postgres.PgProfileStore.person_history``)."""
    known = profiles.shopper(person) if who == "customer" else None
    rows = profiles.events(person, index) if known is not None else no_rows()
    return PersonHistory(known, rows, log.events(person, who))


KINDS = ("view", "add_to_cart", "purchase")  # the history's kind numbers (the batch's EVENT_KINDS)
STORE_ORDER = "pzk:"  # an order key written into a build's inputs as it is (``order_key`` reads it back)


def order_key(order: str) -> int:
    """A stable number for an order id (the same in the build, the store and a beacon), ``NO_ORDER`` for none:
    baskets compare orders for equality only. ``pzk:<number>`` is a key the store wrote (``write_build_inputs``)."""
    if not order:
        return NO_ORDER
    written = order[len(STORE_ORDER):]
    if order.startswith(STORE_ORDER) and ascii_digits(written):
        return int(written)
    return int.from_bytes(hashlib.blake2b(order.encode(), digest_size=7).digest(), "big")


def write_build_inputs(log: EventStore, profiles: ProfileData, directory: Path) -> tuple[Path, Path]:
    """The store's data as a build's inputs (``events.csv``, ``shoppers.csv`` in ``directory``): the last
    snapshot's history and every customer's beacon events newer than it (views, cart adds, purchased lines;
    robots aside), so a build from the store, then another, counts no beacon twice. Visitors' events stay out:
    a build's profiles are customers' (``pz1:p:``), and a visitor id must never name one; ``refresh`` keeps
    visitors' profiles."""
    import csv

    directory.mkdir(parents=True, exist_ok=True)
    shoppers, events = profiles.history()
    events_csv, shoppers_csv = directory / "events.csv", directory / "shoppers.csv"
    known = {s for s, _ in shoppers}
    with events_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["shopper", "product", "kind", "ts", "quantity", "order"])
        after = 0  # the snapshot's newest event: beacons up to it are in the snapshot already (as on a miss)
        for shopper, product, kind, ts, qty, key in events:
            w.writerow((shopper, product, KINDS[kind], ts, qty, "" if key == NO_ORDER else f"{STORE_ORDER}{key}"))
            after = max(after, ts)
        for e in log.events(who="customer"):
            if e["robot"] or e["ts"] <= after:
                continue
            known.add(e["person"])
            if e["type"] in ("view", "add_to_cart"):
                w.writerow([e["person"], e["item"], e["type"], int(e["ts"]), 1, ""])
            elif e["type"] == "purchase":  # the beacon's order id, as the build reads an export's
                w.writerows([e["person"], line["item"], "purchase", int(e["ts"]), line.get("quantity", 1),
                             e.get("order", "")] for line in e["items"])
    with shoppers_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "loyalty"])
        loyalty = dict(shoppers)
        w.writerows((s, loyalty.get(s) or "") for s in sorted(known))
    return events_csv, shoppers_csv
