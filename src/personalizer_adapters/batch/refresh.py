"""`personalizer refresh`: the profiles of people with new events, recomputed and pushed, in near real time.

What a person did since the build (their beacon events in the event log, newer than the build's data) is
merged with their history in the profile store and run through the batch's own ``profile_payload``, so a
refreshed profile is the profile the next build would make from the same events. Records are encoded with
the build's clock, so a person whose events changed nothing gives the same bytes and nothing is pushed;
the push is the batch push in its partial form (diff against what the target holds, journal, progress,
rate limits), under the target's lock, and refused if the target has moved to a generation this origin
data does not know: a newer build's profiles are never overwritten by an older refresh.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from personalizer import keys
from personalizer_adapters.kv.plan import Build, TargetState
from personalizer_adapters.kv.push import OK, PARTIAL, Paths, Target, push, target_lock
from personalizer_adapters.origin.artifacts import ModelSource
from personalizer_adapters.origin.history import person_profile
from personalizer_adapters.store import open_stores


@dataclass(frozen=True)
class Refreshed:
    people: int      # with new events since the last refresh
    computed: int    # of them, with a profile (erased people and unknown items aside)
    pushed: int      # records written (the others had not changed)
    seq: int         # the event log's watermark now
    seconds: float


class Refresher:
    """Refresh against one target; the watermark (per target) lives in the store, so a refresh may run on any
    host that reaches it (``database``: the PostgreSQL store; else the SQLite files in ``data``)."""

    def __init__(self, data: Path | None, state_dir: Path, target_name: str, out: TextIO = sys.stderr,
                 database: str | None = None) -> None:
        self.state_dir, self.out = state_dir, out
        self.paths = Paths.of(state_dir, target_name)
        self.mark = f"refresh:{target_name}"
        if data is None and not database:
            raise ValueError("name the origin data directory, or a database that holds the model artifacts")
        stores = open_stores(data or Path("."), database)
        self.stores, self.store, self.log = stores, stores.profiles, stores.log
        self.source = ModelSource(data, self.store)  # the directory's artifacts, else the store's
        self.model = self.source.load()
        old = self.paths.state.parent / "refresh.json"  # where a release before the store kept it
        if old.exists() and self.log.watermark(self.mark) == 0:
            self.log.set_watermark(self.mark, int(json.loads(old.read_text())["seq"]))

    def watermark(self) -> int:
        return self.log.watermark(self.mark)

    def _save(self, seq: int) -> None:
        self.log.set_watermark(self.mark, seq)

    def reload_if_rebuilt(self) -> bool:
        """Load the model again when a build has replaced it (its generation changed)."""
        current = self.source.generation()
        if current in (None, self.model.generation):
            return False
        self.model = self.source.load()
        print(f"refresh: origin data is now generation {current}", file=self.out)
        return True

    def once(self, make_target: Callable[[], Target]) -> tuple[int, Refreshed]:
        t0 = time.perf_counter()
        since = self.watermark()
        people, top = self.log.changed_since(since)
        erased = self.store.erased({p for _, p in people})
        records: dict[str, bytes] = {}
        index = self.model.index
        for who, person in people:
            if person in erased:
                continue
            record = person_profile(self.model, self.stores.person_history(who, person, index), person)
            if record is not None:
                records[keys.profile(person) if who == "customer" else keys.visitor(person)] = record
        pushed, status = 0, OK
        if records:
            with target_lock(self.paths):
                state = TargetState.load(self.paths.state)
                active = state.generations[-1] if state.generations else None
                if active is not None and active != self.model.generation:
                    print(f"refresh: the target's active generation is {active}, this origin data is "
                          f"{self.model.generation}; nothing pushed (update the origin data to the pushed build)",
                          file=self.out)
                    return PARTIAL, Refreshed(len(people), len(records), 0, since, time.perf_counter() - t0)
                before = dict(state.hashes)
                status = push(Build(self.model.generation, records), make_target(), self.state_dir, out=self.out,
                              partial=True, locked=True)
                after = TargetState.load(self.paths.state).hashes
                pushed = sum(1 for k in records if after.get(k) != before.get(k))
        if status == OK:
            self._save(top)
        return status, Refreshed(len(people), len(records), pushed, top if status == OK else since,
                                 time.perf_counter() - t0)


def follow(refresher: Refresher, make_target: Callable[[], Target], interval_s: float, out: TextIO) -> int:
    """Refresh every ``interval_s`` until SIGINT/SIGTERM; the batch in flight always finishes first."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        print("refresh: stopping after the batch in flight", file=out)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping:
            refresher.reload_if_rebuilt()
            status, r = refresher.once(make_target)
            if r.people:
                print(f"refresh: {r.people} people with new events, {r.computed} profiles, {r.pushed} pushed "
                      f"in {r.seconds:.2f}s (events up to #{r.seq})", file=out, flush=True)
            deadline = time.monotonic() + interval_s
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.1, interval_s))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return OK
