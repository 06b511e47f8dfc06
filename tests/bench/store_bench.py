"""The store's engines side by side (issue 26): SQLite (embedded) against PostgreSQL (a real server, started
here as the tests start it), on the demo seed (`make seed`).

- ingest in batches of 100 events: in process, and over HTTP with 1 and 4 origin processes (PostgreSQL: every
  process shares the database; SQLite: one process, the file's single writer);
- `refresh` of 10,000 people with new events (to an in-memory target);
- the miss path's profile computation (`Origin.resolve` of a customer's profile), p50 and p99.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from personalizer import keys  # noqa: E402
from personalizer.events import clean_event, message  # noqa: E402
from personalizer_adapters.origin.app import SECRET_HEADER, Origin  # noqa: E402
from personalizer_adapters.store import open_stores, postgres  # noqa: E402
from tests.runtime.postgres import postgres_server  # noqa: E402
from tests.test_edge_events import free_port  # noqa: E402

SECRET = "bench-store-secret-0123456789"
N = 300  # batches of 100 events per client


def batch(tag: str, b: int, now: int) -> list[dict[str, Any]]:
    return [message(f"bench{(b * 10 + i) % 5000:05d}", None, [], [clean_event(
        {"id": f"{tag}-{b}-{i}-{j}", "type": "view", "ts": now - 1, "item": f"p{j:05d}"}, now)
        for j in range(10)], now) for i in range(10)]


def copy_snapshot(sqlite_store: Path, url: str) -> None:
    """The seed's profile store (shoppers, history, shared records, tombstones) into the database."""
    with closing(sqlite3.connect(sqlite_store)) as db:
        shoppers = db.execute("SELECT id, loyalty FROM shoppers").fetchall()
        events = db.execute("SELECT shopper, product, kind, ts FROM events").fetchall()
        records = db.execute("SELECT key, value FROM records").fetchall()
        tombstones = {r[0] for r in db.execute("SELECT id FROM tombstones")}
    profiles = open_stores(sqlite_store.parent, url).profiles
    profiles.add_tombstones(tombstones)
    profiles.replace_all(shoppers, events, records)


@contextmanager
def origins(data: Path, url: str, count: int) -> Iterator[list[str]]:
    procs, urls = [], []
    try:
        for _ in range(count):
            port = free_port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "personalizer_adapters.cli", "origin", "--port", str(port), "--data",
                 str(data), "--database", url, "--dev-vars", "/nonexistent"], cwd=ROOT,
                env={**os.environ, "ORIGIN_SECRET": SECRET}))
            urls.append(f"http://127.0.0.1:{port}")
        for u in urls:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(u + "/healthz").raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        yield urls
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)


def over_http(urls: list[str], now: int, tag: str) -> float:
    """Events per second, one client per origin process, N batches each."""
    import json

    bodies = [[json.dumps({"beacons": batch(f"{tag}{w}", b, now)}).encode() for b in range(N)]
              for w in range(len(urls))]
    failures: list[BaseException] = []

    def post(w: int) -> None:
        try:
            with httpx.Client(base_url=urls[w], headers={SECRET_HEADER: SECRET,
                                                         "content-type": "application/json"}) as c:
                for body in bodies[w]:
                    r = c.post("/v1/ingest", content=body)
                    assert r.status_code == 200 and r.json()["stored"] == 100, r.text
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failures.append(exc)

    threads = [threading.Thread(target=post, args=(w,)) for w in range(len(urls))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return len(urls) * N * 100 / (time.perf_counter() - t0)


def refresh_seconds(data: Path, database: str | None, tmp: Path, now: int) -> float:
    from personalizer_adapters.batch.model import Model
    from personalizer_adapters.batch.refresh import Refresher
    from tests.test_refresh import MemoryTarget

    stores = open_stores(data, database)
    items = [c[0] for c in Model.load(data).cards]
    people = [(f"c{n:05d}", False) for n in range(1, 6001)] + [(f"vbench{n:05d}", True) for n in range(4000)]
    beacons = [message(None if visitor else person, person if visitor else None, [], [clean_event(
        {"id": f"r{j}", "type": "view", "ts": now - 3 + j, "item": items[(n * 31 + j * 7) % len(items)]}, now)
        for j in range(3)], now) for n, (person, visitor) in enumerate(people)]
    for i in range(0, len(beacons), 500):
        stores.log.ingest(beacons[i:i + 500], stores.profiles.erased)
    refresher = Refresher(data, tmp / f"state-{database is not None}", "memory", out=open(os.devnull, "w"),  # noqa: SIM115
                          database=database)
    kv: dict[str, bytes] = {}
    t0 = time.perf_counter()
    _, done = refresher.once(lambda: MemoryTarget(kv))
    assert done.people >= 10_000, done
    return time.perf_counter() - t0


def miss_ms(data: Path, database: str | None) -> tuple[float, float]:
    origin = Origin(data, database)
    customers = [f"c{n:05d}" for n in range(1, 6001, 6)]
    times = []
    for person in customers:
        t0 = time.perf_counter()
        assert origin.resolve(keys.profile(person)) is not None
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def main() -> None:
    now = int(time.time())
    with tempfile.TemporaryDirectory() as tmp_dir, postgres_server() as server:
        tmp = Path(tmp_dir)
        data = Path(shutil.copytree(ROOT / "kv-seed/out/origin", tmp / "origin"))
        url = server.new_database()
        postgres.upgrade(url)
        copy_snapshot(data / "store.sqlite", url)
        lite, pg = open_stores(data), open_stores(data, url)
        rows = {}
        for name, stores in (("SQLite (WAL), in process", lite), ("PostgreSQL, in process", pg)):
            batches = [batch(name[:3], b, now) for b in range(N)]
            t0 = time.perf_counter()
            for beacons in batches:
                assert stores.log.ingest(beacons, stores.profiles.erased).stored == 100
            rows[name] = N * 100 / (time.perf_counter() - t0)
        for count in (1, 4):
            with origins(data, url, count) as urls:
                rows[f"PostgreSQL, POST /v1/ingest, {count} origin process(es)"] = over_http(urls, now, f"h{count}-")
        print(f"\nstore: ingest, batches of 100 events (every event new), {N} batches per client")
        print(f"{'run':58} {'events/s':>10} {'x 20k/s':>8}")
        for name, rate in rows.items():
            print(f"{name:58} {rate:10.0f} {rate / 20_000:8.2f}")

        lite_miss, pg_miss = miss_ms(data, None), miss_ms(data, url)
        print("\nstore: the miss path's profile computation (Origin.resolve of a customer's profile), 1,000 "
              "customers")
        print(f"{'engine':58} {'p50 ms':>10} {'p99 ms':>8} {'x SQLite p50':>12}")
        for name, (p50, p99) in (("SQLite", lite_miss), ("PostgreSQL (loopback)", pg_miss)):
            print(f"{name:58} {p50:10.2f} {p99:8.2f} {p50 / lite_miss[0]:12.2f}")

        lite_s, pg_s = refresh_seconds(data, None, tmp, now), refresh_seconds(data, url, tmp, now)
        print("\nstore: refresh of 10,000 people with 3 new views each, to an in-memory target")
        print(f"{'engine':58} {'seconds':>10} {'people/s':>8} {'x SQLite':>12}")
        for name, secs in (("SQLite", lite_s), ("PostgreSQL (loopback)", pg_s)):
            print(f"{name:58} {secs:10.2f} {10_000 / secs:8.0f} {secs / lite_s:12.2f}")


if __name__ == "__main__":
    main()
