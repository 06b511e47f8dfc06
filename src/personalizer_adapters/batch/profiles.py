"""The build's profile stage: every shopper's profile record, computed on every core.

A profile depends only on the shopper's own events and the model, so shoppers are cut into chunks computed
by ``parallel.fork_map``; results come back in shopper order, so the records are the same bytes whatever the
number of workers (a test holds that).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from personalizer import codec
from personalizer_adapters.engine.parallel import fork_map

from .model import Model, again_lists, order_keys, personal_lists, profile_payload, quantities
from .seedgen import Shop

CHUNK = 2_000           # shoppers per task: big enough to amortise the pickling, small enough to show progress
PARALLEL_MIN = 100_000  # below this many shoppers, one process


@dataclass(frozen=True)
class ProfileJob:
    shop: Shop
    model: Model
    per_shopper: list[npt.NDArray[Any]]      # each shopper's events
    previous: dict[str, tuple[str, bytes]]   # shopper -> (events digest, profile record) of the last build
    pushed: int                              # shoppers below this index get a KV record
    now: int


@dataclass(frozen=True)
class Outcome:
    digest: str | None     # the digest of the shopper's events (None: no events)
    segments: list[str]
    record: bytes | None   # the encoded profile, for a pushed shopper
    reused: bool           # the record is the previous build's, byte for byte
    empty: bool            # computed, and the personal list came out empty
    trimmed: bool = False  # over codec.MAX_PROFILE_BYTES: lists shortened until it fit (or record None)


def fit_profile(payload: dict[str, Any], now: int) -> tuple[bytes | None, bool]:
    """The encoded profile within ``codec.MAX_PROFILE_BYTES`` (which the edge refuses to decode beyond):
    ``(record, trimmed)``. An oversized one has its lists halved until it fits; ``None`` if it never does."""
    record = codec.encode("profile", payload, generation=None, produced_at=now)
    if len(record) <= codec.MAX_PROFILE_BYTES:
        return record, False
    lists = ("cards", "recent", "bought", "watched", "categories")
    while any(payload[name] for name in lists):
        payload = {**payload, **{name: payload[name][:len(payload[name]) // 2] for name in lists}}
        record = codec.encode("profile", payload, generation=None, produced_at=now)
        if len(record) <= codec.MAX_PROFILE_BYTES:
            return record, True
    return None, True


def events_digest(events: npt.NDArray[Any], loyalty: str | None, products: list[dict[str, Any]]) -> str:
    """What a profile is computed from; equal digests, equal profiles (so the previous record is reused)."""
    ids = "\x1f".join(products[i]["id"] for i in events["product"].tolist())
    extra = quantities(events).tobytes() + order_keys(events).tobytes() if len(events.dtype.names or ()) > 4 else b""
    return hashlib.sha256(events["kind"].tobytes() + events["ts"].tobytes() + ids.encode() + extra
                          + str(loyalty).encode()).hexdigest()[:24]


def _together(model: Model, todo: list[npt.NDArray[Any]]) -> list[tuple[npt.NDArray[Any], npt.NDArray[np.int64],
                                                                           list[list[Any]]]]:
    """The category affinity, personal list and "buy it again" entries of each of these people (their events,
    any order), computed together (``personal_lists``, ``again_lists``)."""
    if not todo:
        return []
    names = todo[0].dtype.names or ()
    ts, products, kinds = (np.concatenate([e[field] for e in todo]) for field in ("ts", "product", "kind"))
    owner = np.repeat(np.arange(len(todo)), [len(e) for e in todo])
    order = np.lexsort((ts, owner))  # by person, in time order (stable: profile_payload's order)
    owner, ts, products, kinds = owner[order], ts[order], products[order], kinds[order]
    qty, keys = ((np.concatenate([e[field] for e in todo])[order] if field in names else None)
                 for field in ("qty", "order"))
    affinity, lists = personal_lists(model, owner, products, kinds, len(todo))
    again = again_lists(model, owner, products, kinds, ts, qty, keys, len(todo))
    return list(zip(affinity, lists, again, strict=True))


def _run(job: ProfileJob, lo: int, hi: int) -> list[Outcome]:
    out: list[Outcome | None] = []
    todo: list[tuple[int, str]] = []  # (shopper, digest) of the profiles to compute
    for s in range(lo, hi):
        events, shopper = job.per_shopper[s], job.shop.shoppers[s]
        if not len(events):
            out.append(Outcome(None, [], None, False, False))
            continue
        digest = events_digest(events, shopper.get("loyalty"), job.shop.products)
        before = job.previous.get(shopper["id"])
        if before is not None and before[0] == digest and s < job.pushed:
            segments = codec.decode(before[1], expect="profile").data["segments"]
            out.append(Outcome(digest, segments, before[1], True, False))
            continue
        out.append(None)
        todo.append((s, digest))
    ranked = _together(job.model, [job.per_shopper[s] for s, _ in todo])
    for (s, digest), lists in zip(todo, ranked, strict=True):
        events, shopper = job.per_shopper[s], job.shop.shoppers[s]
        prof = profile_payload(job.model, shopper["id"], shopper.get("loyalty"), events["product"], events["kind"],
                               events["ts"], quantities(events), order_keys(events), ranked=lists)
        record, trimmed = fit_profile(prof, job.now) if s < job.pushed else (None, False)
        out[s - lo] = Outcome(digest, prof["segments"], record, False, not prof["cards"], trimmed)
    return [o for o in out if o is not None]


def _chunk(job: ProfileJob, bounds: tuple[int, int]) -> list[Outcome]:
    return _run(job, *bounds)


def profile_outcomes(job: ProfileJob, workers: int | None = None,
                     parallel_min: int = PARALLEL_MIN) -> Iterator[tuple[int, list[Outcome]]]:
    """``(first shopper, outcomes)`` per chunk, in shopper order."""
    S = len(job.per_shopper)
    chunks = [(lo, min(S, lo + CHUNK)) for lo in range(0, S, CHUNK)]
    results = fork_map(_chunk, job, chunks, workers=workers, parallel=parallel_min <= S)
    yield from zip((lo for lo, _ in chunks), results, strict=True)
