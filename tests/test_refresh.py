"""refresh: the profiles of people with new events, recomputed with the batch's code, pushed only if changed."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from personalizer import codec, keys
from personalizer.events import clean_event, message
from personalizer.records import Profile
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.model import CART, PURCHASE, VIEW, Model
from personalizer_adapters.batch.refresh import Refresher
from personalizer_adapters.kv.plan import Build, TargetState, digest
from personalizer_adapters.kv.push import OK, PARTIAL, Paths, push
from personalizer_adapters.origin.app import Origin
from personalizer_adapters.origin.history import merge_log
from personalizer_adapters.store.base import order_key
from personalizer_adapters.store.eventlog import EventLog
from personalizer_adapters.store.profiles import ProfileStore


class MemoryTarget:
    """A KV target that keeps what it is sent (the push's own contract is tested against local KV and the
    Cloudflare API elsewhere)."""

    name = "memory"

    def __init__(self, kv: dict[str, bytes]) -> None:
        self.kv, self.requests, self.puts = kv, 0, []

    def put_many(self, pairs: Sequence[tuple[str, bytes]]) -> None:
        self.requests += 1
        self.puts.extend(k for k, _ in pairs)
        self.kv.update(pairs)

    def put_one(self, key: str, value: bytes) -> None:
        self.put_many([(key, value)])

    def delete_many(self, keys: Sequence[str]) -> None:
        self.requests += 1
        for k in keys:
            self.kv.pop(k, None)

    def get_one(self, key: str) -> bytes | None:
        return self.kv.get(key)

    def list_keys(self, prefix: str) -> Iterator[tuple[str, str | None]]:
        yield from ((k, digest(v)) for k, v in sorted(self.kv.items()) if k.startswith(prefix))

    def close(self) -> None:
        pass


@pytest.fixture()
def setup(built: Built, seed_dir: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, bytes], Model]:
    """A private copy of the origin data, and a target that holds the seed's build, pushed."""
    data = Path(shutil.copytree(seed_dir / "origin", tmp_path / "origin"))
    log = EventLog(data / "events.sqlite")  # the seed's simulated visitors (carts, purchases): refreshed already
    for name in ("memory", "local"):
        log.set_watermark(f"refresh:{name}", log.changed_since(0)[1])
    kv: dict[str, bytes] = {}
    assert push(Build(built.generation, dict(built.records)), MemoryTarget(kv), tmp_path / "state") == OK
    return data, tmp_path / "state", kv, Model.load(data)


def beacon(who: str, events: list[dict[str, Any]], visitor: bool = False) -> dict[str, Any]:
    now = int(time.time())
    clean = [clean_event(e, now) for e in events]
    return message(None if visitor else who, who if visitor else None, [], clean, now)


def items(model: Model, n: int, avoid: frozenset[str] = frozenset()) -> list[str]:
    return [c[0] for c in model.cards if c[0] not in avoid][5:5 + n]


def profile(kv: dict[str, bytes], key: str) -> Profile:
    return Profile.parse(codec.decode(kv[key], expect="profile"))


def test_refresh_pushes_exactly_the_changed_profiles_and_then_nothing(setup: Any) -> None:
    data, state, kv, model = setup
    before = profile(kv, keys.profile("c00001"))
    a, b = items(model, 2, before.bought | {c.id for c in before.recent[:1]})
    now = time.time()
    log, store = EventLog(data / "events.sqlite"), ProfileStore(data / "store.sqlite")
    log.ingest([beacon("c00001", [{"id": "1", "type": "view", "ts": now - 2, "item": a},
                                  {"id": "2", "type": "view", "ts": now - 1, "item": b}]),
                beacon("vnew0001", [{"id": "1", "type": "view", "ts": now, "item": a}], visitor=True),
                # an item the catalog does not have changes nothing: computed, identical, not pushed
                beacon("c00002", [{"id": "1", "type": "view", "ts": now, "item": "not-in-catalog"}])],
               store.erased)
    target = MemoryTarget(kv)
    status, r = Refresher(data, state, "memory").once(lambda: target)
    assert status == OK and (r.people, r.computed, r.pushed) == (3, 3, 2)
    assert sorted(target.puts) == sorted([keys.profile("c00001"), keys.visitor("vnew0001")])
    after = profile(kv, keys.profile("c00001"))
    assert [c.id for c in after.recent[:2]] == [b, a] and after.recent != before.recent
    assert [c.id for c in profile(kv, keys.visitor("vnew0001")).recent] == [a]
    again = MemoryTarget(kv)
    status, r = Refresher(data, state, "memory").once(lambda: again)
    assert status == OK and r.people == 0 and again.puts == []
    # New events for one person: only that person again.
    log.ingest([beacon("c00001", [{"id": "3", "type": "add_to_cart", "ts": now, "item": a, "quantity": 1}])],
               store.erased)
    third = MemoryTarget(kv)
    status, r = Refresher(data, state, "memory").once(lambda: third)
    assert (r.people, r.pushed) == (1, 1) and third.puts == [keys.profile("c00001")]
    assert [c.id for c in profile(kv, keys.profile("c00001")).cart] == [a]


def test_a_refresh_never_overwrites_a_newer_generation(setup: Any) -> None:
    data, state, kv, model = setup
    paths = Paths.of(state, "memory")
    st = TargetState.load(paths.state)
    st.generations.append("g9999999999-newer")
    st.save(paths.state)
    EventLog(data / "events.sqlite").ingest(
        [beacon("c00001", [{"id": "1", "type": "view", "ts": time.time(), "item": items(model, 1)[0]}])],
        ProfileStore(data / "store.sqlite").erased)
    target = MemoryTarget(kv)
    refresher = Refresher(data, state, "memory")
    before = refresher.watermark()
    status, r = refresher.once(lambda: target)
    assert status == PARTIAL and target.puts == [] and refresher.watermark() == before  # the events wait


def test_erased_people_are_not_refreshed(setup: Any) -> None:
    data, state, kv, model = setup
    log, store = EventLog(data / "events.sqlite"), ProfileStore(data / "store.sqlite")
    log.ingest([beacon("c00005", [{"id": "1", "type": "view", "ts": time.time(), "item": items(model, 1)[0]}])],
               store.erased)
    store.erase("c00005")
    target = MemoryTarget(kv)
    status, r = Refresher(data, state, "memory").once(lambda: target)
    assert status == OK and r.people == 1 and r.computed == 0 and target.puts == []


def test_merge_log_takes_back_removed_adds_and_counts_each_purchase_line() -> None:
    index = {"a": 0, "b": 1, "c": 2}
    empty = np.zeros(0, dtype=np.int64)
    store = (np.array([2]), np.array([CART]), np.array([50]), np.array([1]), np.array([-1]))
    log = [{"type": "add_to_cart", "item": "a", "ts": 101.0}, {"type": "view", "item": "b", "ts": 102.0},
           {"type": "remove_from_cart", "item": "a", "ts": 103.0}, {"type": "view", "item": "zz", "ts": 104.0},
           {"type": "purchase", "ts": 105.0, "order": "o-7", "items": [{"item": "b", "quantity": 3}, {"item": "c"}]},
           {"type": "view", "item": "c", "ts": 99.0}]  # older than the build's data: already in the store
    products, kinds, ts, qty, keys = merge_log(store, log, index, after=100.0)
    assert list(zip(products.tolist(), kinds.tolist(), ts.tolist(), qty.tolist(), strict=True)) == [
        (2, CART, 50, 1), (1, VIEW, 102, 1), (1, PURCHASE, 105, 3), (2, PURCHASE, 105, 1)]
    assert keys.tolist() == [-1, -1, order_key("o-7"), order_key("o-7")]  # the order, as the build keys it
    assert merge_log((empty,) * 5, [], index, 0)[0].size == 0


def test_the_origin_computes_a_miss_with_the_event_log_too(setup: Any) -> None:
    data, _, _, model = setup
    (item,) = items(model, 1)
    EventLog(data / "events.sqlite").ingest(
        [beacon("c77777", [{"id": "1", "type": "view", "ts": time.time(), "item": item}])],
        ProfileStore(data / "store.sqlite").erased)
    origin = Origin(data)
    assert origin.resolve(keys.profile("c88888")) is None  # unknown everywhere
    raw = origin.resolve(keys.profile("c77777"))  # not in the store, but it has events
    assert raw is not None and [c.id for c in Profile.parse(codec.decode(raw, expect="profile")).recent] == [item]


def test_follow_stops_cleanly_on_ctrl_c(setup: Any, tmp_path: Path) -> None:
    """`refresh --follow` runs until SIGINT, then finishes the batch in flight and exits 0."""
    import os
    import signal
    import subprocess
    import sys

    from tests.runtime.harness import ROOT

    data, _, _, model = setup
    EventLog(data / "events.sqlite").ingest(
        [beacon("c00009", [{"id": "1", "type": "view", "ts": time.time(), "item": items(model, 1)[0]}])],
        ProfileStore(data / "store.sqlite").erased)
    proc = subprocess.Popen([sys.executable, "-m", "personalizer_adapters.cli", "refresh", "--follow", "--interval",
                             "0.5", "--target", "local", "--persist", str(tmp_path / "kv"), "--data", str(data),
                             "--state-dir", str(tmp_path / "follow-state")], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "CLOUDFLARE_API_TOKEN": ""})
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # the first round pushes c00009's profile, then it waits
        lines.append(line)
        if line.startswith("refresh: 1 people"):
            break
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "1 pushed" in "".join(lines) and "stopping after the batch in flight" in rest
