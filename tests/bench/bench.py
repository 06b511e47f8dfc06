"""`make bench`: the page request's own time, CPython vs Pyodide, measured side by side in one run.

Work measured: GET /v1/page?slots=hero,home,recent for signed-in seeded customers (200 of them in turn),
KV values already in memory, so only the worker's own work counts: cookie verification, decoding the
profile, the ladder, banner choice, rendering. Shared records are in the isolate cache after warm-up,
as they are in a warm production isolate.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]
N, WARMUP, USERS = 2000, 200, 200
ASLEEP_S = 0.6  # the asleep origin's answer time, past the worker's 150 ms deadline
KEY = "bench-signing-key-0123456789abcdef"


def spec_file(tmp: Path) -> Path:
    pairs = json.loads((ROOT / "kv-seed" / "out" / "kv.json").read_text())
    users = sorted(p["key"].split(":")[-1] for p in pairs if p["key"].startswith("pz1:p:"))[:USERS]
    wanted = {f"pz1:p:{u}" for u in users}
    records = {p["key"]: p["value"] for p in pairs if not p["key"].startswith("pz1:p:") or p["key"] in wanted}
    assert all(p["base64"] for p in pairs)
    path = tmp / "spec.json"
    path.write_text(json.dumps({"records": records, "users": users, "key": KEY}))
    return path


def stats(ms: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return statistics.median(ms), q[98]


def cpython(spec: Path, pure: bool) -> list[float]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    if pure:
        env["MSGPACK_PUREPYTHON"] = "1"  # msgpack's own switch to its fallback, as in the offline Pyodide
    out = subprocess.run([sys.executable, str(ROOT / "tests/bench/core_bench.py"), str(spec), str(N),
                          str(WARMUP)], check=True, capture_output=True, text=True, env=env)
    return list(json.loads(out.stdout))


def miss_path() -> None:
    """(a) KV hit, (b) miss filled by the origin, (c) miss with the origin down, (d) origin asleep past the
    deadline: end-to-end HTTP latency on the offline runtime, one run, reported as ratios to (a)."""
    import asyncio
    import socket
    import time

    import httpx

    from personalizer_adapters.batch.seed import bulk_json
    from personalizer_adapters.origin.app import create_app
    from tests.conftest import uid_cookie
    from tests.runtime.harness import edge_runtime, serve_asgi

    secret, n = "bench-origin-secret-0123456789", 300
    pairs = json.loads((ROOT / "kv-seed" / "out" / "kv.json").read_text())
    users = sorted(p["key"].split(":")[-1] for p in pairs if p["key"].startswith("pz1:p:"))[:n]

    async def asleep(scope: dict, receive: Any, send: Any) -> None:  # type: ignore[type-arg]
        """An origin that answers, but long after the worker's 150 ms deadline."""
        await asyncio.sleep(ASLEEP_S)
        await send({"type": "http.response.start", "status": 503, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def run(client: httpx.Client, who: list[str], expect: str | None = None) -> tuple[list[float], list[float],
                                                                                     set[str]]:
        wall, total, outcomes = [], [], set()
        for user in who:
            t0 = time.perf_counter()
            r = client.get("/v1/recommendations?slot=home", headers={"cookie": uid_cookie(user, key=KEY)})
            wall.append((time.perf_counter() - t0) * 1000)
            timing = dict(part.split(";dur=")[0:2] for part in r.headers["server-timing"].split(", "))
            total.append(float(timing["total"].split(";")[0]))
            outcomes.add(r.headers["server-timing"].split('desc="')[1].split('"')[0]
                         if "desc=" in r.headers["server-timing"] else "kv")
            tier = "user" if expect in ("kv", "hit") else "popular"
            if r.status_code != 200 or (expect is not None and r.headers["x-pz-tier"] != tier):
                raise RuntimeError(f"{user}: {r.status_code} tier {r.headers.get('x-pz-tier')}, expected {tier}")
        if expect is not None and outcomes != {expect}:
            raise RuntimeError(f"outcomes {outcomes}, expected {expect}: the bench is not measuring that case")
        return wall, total, outcomes

    with tempfile.TemporaryDirectory() as tmp_name, serve_asgi(create_app(ROOT / "kv-seed/out/origin", secret)) as up, \
            serve_asgi(asleep) as sleepy:
        tmp = Path(tmp_name)
        seed = tmp / "kv.json"
        seed.write_text(bulk_json({p["key"]: base64.b64decode(p["value"]) for p in pairs
                                   if not p["key"].startswith("pz1:p:")}))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            down = f"http://127.0.0.1:{s.getsockname()[1]}"
        common = {"PZ_SIGNING_KEYS": KEY, "ORIGIN_SECRET": secret, "ORIGIN_BREAKER_FAILURES": "1000"}
        rows: dict[str, tuple[list[float], list[float], set[str]]] = {}
        with edge_runtime(tmp / "a", seed=seed, variables={**common, "ORIGIN_URL": up}) as (url, _), \
                httpx.Client(base_url=url, timeout=30) as c:
            run(c, ["c05999"] * 20)  # warm the isolate: shared records cached, code paths compiled
            rows["(b) miss, filled by the origin"] = run(c, users, "hit")
            time.sleep(1)  # the write-backs (wait_until) land
            rows["(a) KV hit"] = run(c, users, "kv")
        with edge_runtime(tmp / "c", seed=seed, variables={**common, "ORIGIN_URL": down}) as (url, _), \
                httpx.Client(base_url=url, timeout=30) as c:
            run(c, ["c05999"] * 20)
            rows["(c) miss, origin down (connection refused)"] = run(c, users, "error")
        with edge_runtime(tmp / "d", seed=seed, variables={**common, "ORIGIN_URL": sleepy}) as (url, _), \
                httpx.Client(base_url=url, timeout=30) as c:
            run(c, ["c05999"] * 2)
            rows["(d) miss, origin asleep (150 ms deadline)"] = run(c, users[:30], "timeout")
            time.sleep(ASLEEP_S + 0.2)  # the calls the worker gave up on are answered before the origin stops
    base = statistics.median(rows["(a) KV hit"][0])
    print(f"\nmiss path, end to end over HTTP on the offline runtime ({n} customers; Miniflare's local KV proxy "
          "adds ~7 ms per KV read)")
    print(f"{'case':44} {'median ms':>10} {'p99 ms':>8} {'x (a)':>7} {'worker total ms':>16}  outcomes")
    for name in sorted(rows):
        wall, total, outcomes = rows[name]
        med, p99 = stats(wall)
        print(f"{name:44} {med:10.2f} {p99:8.2f} {med / base:7.2f} {statistics.median(total):16.2f}  "
              f"{','.join(sorted(outcomes))}")


def injection() -> None:
    """Edge-side injection: an injected page's time to first and last byte against the bare origin page and
    the same page passed through without placeholders; one run, interleaved, over HTTP on the offline runtime."""
    import gzip

    import httpx

    from personalizer import assets
    from personalizer_adapters.batch.seed import bulk_json
    from tests.conftest import uid_cookie
    from tests.runtime.harness import edge_runtime, serve_asgi

    n = 200
    head = b"<!doctype html><html><head><title>Shop</title>" + b"<style>" + b"p{margin:0}" * 150 + b"</style></head>"
    filler = b"<p>" + b"Our story, our shop, our products. " * 20 + b"</p>"
    with_slots = head + b"<body>" + filler * 5 + b'<pz-slot name="hero"><p>Spring sale</p></pz-slot>' + \
        filler * 10 + b'<pz-slot name="home"></pz-slot>' + filler * 30 + b"</body></html>"
    plain = head + b"<body>" + filler * 45 + b"</body></html>"

    async def shop(scope: dict, receive: object, send: Any) -> None:  # type: ignore[type-arg]
        body = with_slots if scope["path"] == "/page" else plain
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        await send({"type": "http.response.body", "body": body})

    pairs = json.loads((ROOT / "kv-seed" / "out" / "kv.json").read_text())
    users = sorted(p["key"].split(":")[-1] for p in pairs if p["key"].startswith("pz1:p:"))[:n]

    def get(client: httpx.Client, url: str, cookie: str) -> tuple[float, float, int]:
        t0 = time.perf_counter()
        with client.stream("GET", url, headers={"cookie": cookie}) as r:
            chunks = r.iter_raw()
            first = next(chunks)
            t1 = time.perf_counter()
            size = len(first) + sum(len(c) for c in chunks)
        return (t1 - t0) * 1000, (time.perf_counter() - t0) * 1000, size

    rows: dict[str, list[tuple[float, float, int]]] = {"bare origin page": [], "through the worker, no placeholder":
                                                        [], "through the worker, 2 placeholders filled": []}
    with tempfile.TemporaryDirectory() as tmp_name, serve_asgi(shop) as origin:
        tmp = Path(tmp_name)
        (tmp / "kv.json").write_text(bulk_json({p["key"]: base64.b64decode(p["value"]) for p in pairs}))
        with edge_runtime(tmp / "s", seed=tmp / "kv.json", variables={"PZ_SIGNING_KEYS": KEY,
                                                                      "PAGES_ORIGIN": origin}) as (url, _), \
                httpx.Client(timeout=30) as c:
            for user in users[:20]:  # warm-up: isolate cache, code paths
                get(c, url + "/page", uid_cookie(user, key=KEY))
            for user in users:
                cookie = uid_cookie(user, key=KEY)
                rows["bare origin page"].append(get(c, origin + "/page", cookie))
                rows["through the worker, no placeholder"].append(get(c, url + "/plain", cookie))
                rows["through the worker, 2 placeholders filled"].append(get(c, url + "/page", cookie))
    base_first = statistics.median(r[0] for r in rows["bare origin page"])
    base_last = statistics.median(r[1] for r in rows["bare origin page"])
    print(f"\nedge-side injection: a {len(with_slots) // 1024} KiB page, {n} signed-in customers, interleaved, "
          "over HTTP on loopback (offline runtime)")
    print(f"{'run':44} {'first byte ms':>14} {'x bare':>7} {'last byte ms':>13} {'x bare':>7} {'bytes':>8}")
    for name, got in rows.items():
        first = statistics.median(r[0] for r in got)
        last = statistics.median(r[1] for r in got)
        print(f"{name:44} {first:14.2f} {first / base_first:7.2f} {last:13.2f} {last / base_last:7.2f} "
              f"{statistics.median(r[2] for r in got):8.0f}")
    print(f"pz.js: {len(assets.SCRIPT)} bytes minified, {len(gzip.compress(assets.SCRIPT, 9))} gzipped; "
          f"pz.css: {len(assets.STYLE)} bytes, {len(gzip.compress(assets.STYLE, 9))} gzipped")


def bad_records() -> None:
    """What a bad profile record costs (CPython, in process): the first request reads it and refuses it before
    decoding; later requests within a minute do not read it at all. Against a normal profile, side by side."""
    import asyncio
    import time

    from personalizer import Config, InMemoryKV, Personalizer, codec, keys
    from tests.conftest import FixedClock, uid_cookie

    pairs = json.loads((ROOT / "kv-seed" / "out" / "kv.json").read_text())
    records = {p["key"]: base64.b64decode(p["value"]) for p in pairs}
    user, key = "c00001", keys.profile("c00001")
    normal = codec.decode(records[key], expect="profile").data
    cases = {"normal profile": records[key], "20 MiB of garbage": b"\x00" * (20 * 1024 * 1024),
             "4.4 MB valid profile (400k bought ids)": codec.encode(
                 "profile", {**normal, "bought": [f"p{n:07d}" for n in range(400_000)]})}
    print("\nbad records: GET /v1/recommendations?slot=home for one customer, 50 requests, CPython core")
    print(f"{'profile value':40} {'first ms':>9} {'then median ms':>15} {'KV reads of it':>15}")
    cookie = uid_cookie(user, key=KEY)
    for name, value in cases.items():
        kv = InMemoryKV({**records, key: value})
        core = Personalizer(Config(signing_keys=(KEY.encode(),)), kv, FixedClock(), lambda: "vbench")
        ms = []
        for _ in range(50):
            t0 = time.perf_counter()
            reply = asyncio.run(core.handle("GET", "/v1/recommendations", "slot=home", {"cookie": cookie}))
            ms.append((time.perf_counter() - t0) * 1000)
            assert reply.status == 200
        print(f"{name:40} {ms[0]:9.2f} {statistics.median(ms[1:]):15.3f} {kv.reads.count(key):15d}")


def again_slot() -> None:
    """What the "buy it again" slot adds (CPython core, in process, KV values in memory, warm cache): the page
    with and without it, side by side, for seeded customers who have something to buy again."""
    import asyncio
    import time

    from personalizer import Config, InMemoryKV, Personalizer, codec
    from tests.conftest import FixedClock, uid_cookie

    pairs = json.loads((ROOT / "kv-seed" / "out" / "kv.json").read_text())
    records = {p["key"]: base64.b64decode(p["value"]) for p in pairs}
    who = [k[len("pz1:p:"):] for k, v in sorted(records.items())
           if k.startswith("pz1:p:") and codec.decode(v, expect="profile").data["again"]][:USERS]
    core = Personalizer(Config(signing_keys=(KEY.encode(),)), InMemoryKV(records), FixedClock(), lambda: "vbench")
    jar = [{"cookie": uid_cookie(u, key=KEY)} for u in who]
    rows = {}
    for query in ("slots=hero,home,recent", "slots=hero,home,recent,again", "slot=again"):
        path = "/v1/recommendations" if query.startswith("slot=") else "/v1/page"
        ms = []
        for i in range(WARMUP + N):
            t0 = time.perf_counter()
            asyncio.run(core.handle("GET", path, query, jar[i % len(jar)]))
            if i >= WARMUP:
                ms.append((time.perf_counter() - t0) * 1000)
        rows[f"{path}?{query}"] = ms
    base = statistics.median(rows["/v1/page?slots=hero,home,recent"])
    print(f"\nbuy it again: {len(who)} customers with re-buys, CPython core (compiled msgpack), KV in memory")
    print(f"{'request':48} {'median ms':>10} {'p99 ms':>8} {'x page':>7}")
    for name, ms in rows.items():
        med, p99 = stats(ms)
        print(f"{name:48} {med:10.3f} {p99:8.3f} {med / base:7.2f}")


@contextmanager
def origin_process(data: Path, secret: str) -> Iterator[str]:
    """The origin as `personalizer origin` serves it, in a process of its own (as deployed), on a free
    loopback port; yields its URL once /healthz answers, stops it after."""
    import httpx

    from tests.test_edge_events import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dev_vars = data.parent / "origin.dev.vars"
    dev_vars.write_text(f"ORIGIN_SECRET={secret}\n")
    server = subprocess.Popen([sys.executable, "-m", "personalizer_adapters.cli", "origin", "--port", str(port),
                               "--data", str(data), "--dev-vars", str(dev_vars)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/healthz").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def ingest_throughput() -> None:
    """The origin's /v1/ingest: events per second in batches of 100 (10 beacons of 10 events), stored once."""
    import shutil
    import threading

    import httpx

    from personalizer.events import clean_event, message
    from personalizer_adapters.origin.app import SECRET_HEADER
    from personalizer_adapters.store.eventlog import EventLog
    from personalizer_adapters.store.profiles import ProfileStore

    secret = "bench-ingest-secret-0123456789"
    now = int(time.time())

    def batch(tag: str, b: int) -> dict[str, Any]:
        return {"beacons": [message(f"bench{(b * 10 + i) % 5000:05d}", None, [], [clean_event(
            {"id": f"{tag}-{b}-{i}-{j}", "type": "view", "ts": now - 1, "item": f"p{j:05d}"}, now)
            for j in range(10)], now) for i in range(10)]}

    n = 300
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(shutil.copytree(ROOT / "kv-seed/out/origin", Path(tmp) / "origin"))
        log, erased = EventLog(data / "events.sqlite"), ProfileStore(data / "store.sqlite").erased
        seeded = log.count()  # the seed's simulated exposures
        direct_batches = [batch("direct", b)["beacons"] for b in range(n)]
        t0 = time.perf_counter()
        for beacons in direct_batches:
            assert log.ingest(beacons, erased).stored == 100
        direct = n * 100 / (time.perf_counter() - t0)
        bodies = {w: [json.dumps(batch(f"http{w}", b)).encode() for b in range(n)] for w in range(5)}
        rates = {}
        failures: list[BaseException] = []
        with origin_process(data, secret) as url:  # the clients in this process
            for clients in (1, 4):
                def post(w: int) -> None:
                    try:
                        with httpx.Client(base_url=url, headers={SECRET_HEADER: secret,
                                                                 "content-type": "application/json"}) as c:
                            for body in bodies[w]:
                                r = c.post("/v1/ingest", content=body)
                                assert r.status_code == 200 and r.json()["stored"] == 100, r.text
                    except BaseException as exc:  # noqa: BLE001 - re-raised below, in the main thread
                        failures.append(exc)
                workers = [threading.Thread(target=post, args=(w + (1 if clients > 1 else 0),))
                           for w in range(clients)]
                t0 = time.perf_counter()
                for t in workers:
                    t.start()
                for t in workers:
                    t.join()
                rates[clients] = clients * n * 100 / (time.perf_counter() - t0)
                if failures:
                    raise failures[0]
        total = log.count() - seeded
        assert total == 6 * n * 100, total  # in process, 1 client, 4 clients: each event stored once
    print(f"\norigin ingest: {n} batches of 100 events per run, SQLite WAL, every event new (stored once: "
          f"{total} rows)")
    print(f"{'run':64} {'events/s':>10} {'x 20k/s':>8}")
    for name, rate in (("EventLog.ingest in process (check + insert)", direct),
                       ("POST /v1/ingest over HTTP, 1 client (uvicorn process, loopback)", rates[1]),
                       ("POST /v1/ingest over HTTP, 4 clients", rates[4])):
        print(f"{name:64} {rate:10.0f} {rate / 20000:8.2f}")


def refresh_bench() -> None:
    """`refresh` for 10,000 people with new events (6,000 customers with history, 4,000 new visitors), and
    a rerun with nothing new; the push goes to an in-memory target (the push itself is benchmarked by scale)."""
    import shutil

    from personalizer.events import clean_event, message
    from personalizer_adapters.batch.model import Model
    from personalizer_adapters.batch.refresh import Refresher
    from personalizer_adapters.store.eventlog import EventLog
    from personalizer_adapters.store.profiles import ProfileStore
    from tests.test_refresh import MemoryTarget

    now = int(time.time())
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(shutil.copytree(ROOT / "kv-seed/out/origin", Path(tmp) / "origin"))
        model = Model.load(data)
        items = [c[0] for c in model.cards]
        people = [(f"c{n:05d}", False) for n in range(1, 6001)] + [(f"vbench{n:05d}", True) for n in range(4000)]
        beacons = []
        for n, (person, visitor) in enumerate(people):
            events = [clean_event({"id": f"r{j}", "type": "view", "ts": now - 3 + j,
                                   "item": items[(n * 31 + j * 7) % len(items)]}, now) for j in range(3)]
            beacons.append(message(None if visitor else person, person if visitor else None, [], events, now))
        log = EventLog(data / "events.sqlite")
        erased = ProfileStore(data / "store.sqlite").erased
        for i in range(0, len(beacons), 500):
            log.ingest(beacons[i:i + 500], erased)
        kv: dict[str, bytes] = {}
        refresher = Refresher(data, Path(tmp) / "state", "memory", out=open(os.devnull, "w"))  # noqa: SIM115
        t0 = time.perf_counter()
        _, first = refresher.once(lambda: MemoryTarget(kv))
        took = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, second = refresher.once(lambda: MemoryTarget(kv))
        again = time.perf_counter() - t0
    print(f"\nrefresh: {len(people)} people with 3 new views each ({first.computed} profiles computed, "
          f"{first.pushed} pushed to an in-memory target)")
    print(f"{'run':58} {'seconds':>10} {'people/s':>10}")
    print(f"{'refresh, 10,000 people with new events':58} {took:10.2f} {len(people) / took:10.0f}")
    print(f"{'refresh again, nothing new':58} {again:10.3f} {'-':>10}  ({second.people} people)")


def freshness() -> None:
    """Time from a beacon accepted at the edge (its 202) to the person's new profile readable in KV (the edge
    answers `recent` from KV, without the session cookie, starting with the item just viewed): the offline
    runtime's Miniflare queue (wrangler.toml's batching), the real origin's ingest, and
    `personalizer refresh --follow` (default interval) pushing to the local KV the edge reads."""
    import shutil

    import httpx

    from personalizer import codec
    from personalizer.records import Profile
    from personalizer_adapters.kv.plan import read_bulk
    from tests.runtime.harness import edge_runtime

    secret, key = "bench-fresh-secret-0123456789", KEY
    records = dict(read_bulk(ROOT / "kv-seed/out/kv.json"))
    users = [f"c{n:05d}" for n in range(101, 131)]
    items = sorted(k.rsplit(":", 1)[1] for k in records if ":item:" in k)
    picks = {}
    for n, u in enumerate(users):
        prof = Profile.parse(codec.decode(records[f"pz1:p:{u}"], expect="profile"))
        picks[u] = next(i for i in items[n * 17:] if i not in prof.bought and i not in {c.id for c in prof.cart})
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PZ_SIGNING_KEYS": key}
    sys.path.insert(0, str(ROOT / "src"))
    from personalizer import sign

    now = int(time.time())
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(shutil.copytree(ROOT / "kv-seed/out/origin", Path(tmp) / "origin"))
        persist = Path(tmp) / "state"
        refresh = None
        try:
            with origin_process(data, secret) as origin_url, \
                    edge_runtime(persist, seed=ROOT / "kv-seed/out/kv.json", variables={
                        "PZ_SIGNING_KEYS": key, "ORIGIN_URL": origin_url, "ORIGIN_SECRET": secret}) as (url, _), \
                    httpx.Client(base_url=url, timeout=30) as client:
                refresh = subprocess.Popen([sys.executable, "-m", "personalizer_adapters.cli", "refresh", "--follow",
                                            "--target", "local", "--persist", str(persist), "--data", str(data),
                                            "--state-dir", str(Path(tmp) / "push-state")], cwd=ROOT, env=env,
                                           stderr=subprocess.DEVNULL)
                time.sleep(3)
                cookie = {u: f"pz_uid={sign('pz_uid', u, now, key.encode())}" for u in users}
                sent: dict[str, float] = {}
                for u in users:
                    view = {"id": "f1", "type": "view", "ts": time.time(), "item": picks[u]}
                    r = client.post("/v1/events", headers={"cookie": cookie[u], "user-agent": "Mozilla/5.0",
                                                           "content-type": "text/plain;charset=UTF-8"},
                                    json={"events": [view]})
                    assert r.status_code == 202 and r.json()["stored"] == 1, r.text
                    sent[u] = time.perf_counter()
                    time.sleep(0.25)
                fresh: dict[str, float] = {}
                deadline = time.monotonic() + 120
                while len(fresh) < len(users) and time.monotonic() < deadline:
                    for u in users:
                        if u in fresh:
                            continue
                        body = client.get("/v1/recommendations?slot=recent", headers={"cookie": cookie[u]}).json()
                        if body["items"] and body["items"][0]["id"] == picks[u]:
                            fresh[u] = time.perf_counter() - sent[u]
                    time.sleep(0.05)
        finally:
            if refresh is not None:
                refresh.terminate()
                refresh.wait(30)
    ms = [1000 * fresh[u] for u in users if u in fresh]
    q = statistics.quantiles(ms, n=20, method="inclusive")
    print(f"\nfreshness: beacon accepted -> new profile readable in KV, {len(ms)}/{len(users)} people "
          f"(queue batch <= 2 s, refresh --follow every 2 s, local KV)")
    print(f"{'run':58} {'median s':>10} {'p95 s':>8}")
    print(f"{'event to KV':58} {statistics.median(ms) / 1000:10.2f} {q[18] / 1000:8.2f}")


def hot_path_floor(spec: Path) -> None:
    """Issue 12's view: each kind of request through the SDK against its floors, all answering the way the page
    answers (``entry.respond``): a Worker returning a constant of the page's size and headers; a Worker that only
    reads the same KV keys through the page's KV port and returns their bytes; the same, decoding each value as
    the page does. Interleaved in one Pyodide. Then the cold start, in fresh processes."""
    n, warmup, colds = 1000, 100, 5
    out = subprocess.run(["node", str(ROOT / "tests/bench/floor.mjs"), str(spec), str(n), str(warmup), "--cold",
                          str(colds)], check=True, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nthe hot path and its floor: worker fetch via SDK in Pyodide, {n} rounds (+{warmup} warm-up) of every "
          "kind, interleaved; kv-echo reads the keys the page read from KV (a warm isolate caches the shared ones)")
    print("kv-decode also decodes what it read (codec.decode: envelope and packed payload), parsing and using none "
          "of it: what this contract's records cost before any work on them")
    print(f"{'request':58} {'page ms':>8} {'p99':>7} {'echo ms':>8} {'decode ms':>9} {'const ms':>8} "
          f"{'page/echo':>9} {'decode/echo':>11} {'echo/const':>10} {'KV reads':>8}")
    for name, t in result["times"].items():
        page, p99 = stats(t["page"])
        echo, decode, const = stats(t["echo"])[0], stats(t["decode"])[0], stats(t["constant"])[0]
        print(f"{name:58} {page:8.3f} {p99:7.3f} {echo:8.3f} {decode:9.3f} {const:8.3f} {page / echo:9.2f} "
              f"{decode / echo:11.2f} {echo / const:10.2f} {t['keys']:8.2f}")
    cold = result["cold"]
    imp = statistics.median(c["importWorkers"] for c in cold)
    first = statistics.median(c["firstAnswer"] for c in cold)
    bundle = statistics.median(c["importBundle"] for c in cold)
    print(f"cold start ({colds} fresh processes, Pyodide from its baseline snapshot): `import workers` "
          f"{imp:.0f} ms; + importing the bundle {bundle:.0f} ms; to the first page answered {first:.0f} ms = "
          f"{first / imp:.2f}x `import workers` alone; the bundle's Python modules: {result['bundleBytes']:,} bytes")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spec = spec_file(Path(tmp))
        print(f"benchmark: {N} requests (+{WARMUP} warm-up) of GET /v1/page?slots=hero,home,recent, "
              f"{USERS} signed-in customers, KV values in memory", file=sys.stderr)
        rows = {"CPython 3.11, compiled msgpack: core": cpython(spec, pure=False),
                "CPython 3.11, pure-Python msgpack: core": cpython(spec, pure=True)}
        out = subprocess.run(["node", str(ROOT / "tests/bench/pyodide_bench.mjs"), str(spec), str(N), str(WARMUP)],
                             check=True, capture_output=True, text=True, cwd=ROOT)
        py = json.loads(out.stdout.strip().splitlines()[-1])
        rows["Pyodide 0.28 (Py 3.13), pure-Python msgpack: core"] = py["core"]
        rows["Pyodide 0.28, pure-Python msgpack: worker fetch via SDK"] = py["worker"]
        beacon = py["beacon"]
        with_session, without_session = py["withSession"], py["withoutSession"]
    base = stats(rows["CPython 3.11, pure-Python msgpack: core"])[0]
    print(f"{'run':58} {'median ms':>10} {'p99 ms':>8} {'x CPython*':>10}")
    for name, ms in rows.items():
        med, p99 = stats(ms)
        print(f"{name:58} {med:10.3f} {p99:8.3f} {med / base:10.2f}")
    print("* ratio of medians to CPython with the same (pure-Python) msgpack as the offline Pyodide")
    page = stats(rows["Pyodide 0.28, pure-Python msgpack: worker fetch via SDK"])[0]
    med, p99 = stats(beacon)
    print("\nbeacons: POST /v1/events of 10 events, worker fetch via SDK in Pyodide (queue send stubbed, awaited)")
    print(f"{'run':58} {'median ms':>10} {'p99 ms':>8} {'x page':>10}")
    print(f"{'Pyodide 0.28: worker fetch POST /v1/events (10 events)':58} {med:10.3f} {p99:8.3f} {med / page:10.2f}")
    base_s = stats(without_session)[0]
    print("\nsession state: the page request with a pz_s cookie (4 items viewed, 1 in the cart) against the same "
          "page without one, interleaved, worker fetch via SDK in Pyodide")
    print(f"{'run':58} {'median ms':>10} {'p99 ms':>8} {'x without':>10}")
    for name, ms in (("page, no session state", without_session), ("page, with session state", with_session)):
        med, p99 = stats(ms)
        print(f"{name:58} {med:10.3f} {p99:8.3f} {med / base_s:10.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        hot_path_floor(spec_file(Path(tmp)))
    ingest_throughput()
    refresh_bench()
    freshness()
    again_slot()
    bad_records()
    miss_path()
    injection()
    splicer_cpu()
    campaigns_push()
    banner_choice()


def banner_choice() -> None:
    """Banner choice with 200 targeted campaigns against the demo's 44 untargeted ones (issue 25): CPU per
    request, inside Pyodide (the probe) and in CPython, as ratios. Every targeted campaign is tried and fails
    one condition (country, device, landing parameter, local hours, tier), the worst case for targeting."""
    from personalizer_adapters.campaigns import load_campaigns
    from tests.runtime import probe
    from tests.runtime.harness import pyodide_probe

    demo = load_campaigns(ROOT / "kv-seed" / "campaigns.toml")
    variant = {"id": "", "weight": 1, "title": "t", "body": "b", "cta": "c", "url": "/u", "image": "/i.jpg"}
    kinds = [{"countries": ["DE", "AT"]}, {"device": "mobile"}, {"utm_campaign": ["xmas"]},
             {"hours": [[1200, 1320]], "weekdays": [5, 6]}, {"tiers": ["gold"], "regions": ["DE-BY"]}]
    # Each campaign's targeting its own (no two alike): nothing is shared between them to lean on.
    targeted = [{"id": f"t{i}", "kind": "generic", "priority": 1000 - i, "match": "",
                 "target": {**kinds[i % len(kinds)], "utm_source": [f"source-{i}", "newsletter"]},
                 "variants": [{**variant, "id": f"t{i}-a"}]} for i in range(200)]
    n = 2000
    rows = {}
    with pyodide_probe() as pyo:
        for name, rules in ((f"the demo's {len(demo)} campaigns", demo),
                            ("200 targeted campaigns + the demo's", targeted + demo)):
            cpython = min(probe.choose_seconds(rules, n) for _ in range(3)) / n * 1e6
            inside = min(float(pyo.call("choose_seconds", rules, n)) for _ in range(3)) / n * 1e6  # type: ignore[arg-type]
            rows[name] = (cpython, inside)
    base_c, base_p = next(iter(rows.values()))
    print(f"\nbanner choice: CPU per request, {n} choices, best of 3 (every targeted campaign tried and refused)")
    print(f"{'campaigns':44} {'CPython us':>11} {'x demo':>7} {'Pyodide us':>11} {'x demo':>7}")
    for name, (c, p) in rows.items():
        print(f"{name:44} {c:11.1f} {c / base_c:7.2f} {p:11.1f} {p / base_p:7.2f}")


def campaigns_push() -> None:
    """`personalizer push --campaigns` of a 200-campaign file to local KV (issue 25): the check, the build's files
    rewritten, the one record pushed; beside it `campaigns check` alone, each the median of 5 runs in fresh
    processes (as a marketer runs them). The build is the demo shop at a tenth of its size, pushed first."""
    import re

    cli = [sys.executable, "-m", "personalizer_adapters.cli"]
    demo = (ROOT / "kv-seed" / "campaigns.toml").read_text()
    extra = "".join(f"""
[[campaigns]]
id = "bench-{i}"
priority = 50
kind = "segment"
segment = "bench-segment-{i}"
  [[campaigns.variants]]
  id = "bench-{i}-a"
  weight = 1
  title = "Picked for you, {i}"
  body = "A campaign of the benchmark."
  cta = "Shop"
  url = "/c/bench-{i}"
  image = "/img/bench-{i}.jpg"
""" for i in range(200 - demo.count("[[campaigns]]")))
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        config = (ROOT / "kv-seed" / "seed.toml").read_text()
        for name, value in {"products": 300, "shoppers": 600, "kv_profiles": 500, "exposures": 400}.items():
            config = re.sub(rf"(?m)^{name} = \d+", f"{name} = {value}", config)
        (t / "seed.toml").write_text(config)
        (t / "campaigns.toml").write_text(demo)
        (t / "bench.toml").write_text(demo + extra)
        env = {**os.environ, "PZ_TOMBSTONES": str(t / "tombstones.txt")}
        run = lambda *a: subprocess.run([*cli, *a], check=True, capture_output=True, text=True, env=env, cwd=ROOT)  # noqa: E731
        run("seed", "--config", str(t / "seed.toml"), "--out", str(t / "build"))
        target = ["--target", "local", "--persist", str(t / "kv"), "--state-dir", str(t / "state")]
        run("push", "--build", str(t / "build"), *target)
        times: dict[str, list[float]] = {"check": [], "push": []}
        for n in range(5):
            (t / "bench.toml").write_text(demo + extra.replace("Picked for you", f"Picked for you ({n})"))
            t0 = time.perf_counter()
            run("campaigns", "check", str(t / "bench.toml"))
            t1 = time.perf_counter()
            run("push", "--campaigns", str(t / "bench.toml"), "--build", str(t / "build"), *target)
            times["check"].append(t1 - t0)
            times["push"].append(time.perf_counter() - t1)
    check, push = statistics.median(times["check"]), statistics.median(times["push"])
    print("\ncampaigns: 200 campaigns to local KV (the demo shop at a tenth of its size), median of 5, each a fresh "
          "process")
    print(f"{'run':58} {'seconds':>10} {'x check':>8}")
    print(f"{'personalizer campaigns check (200 campaigns)':58} {check:10.2f} {1.0:8.2f}")
    print(f"{'personalizer push --campaigns (check, build files, push)':58} {push:10.2f} {push / check:8.2f}")


def splicer_cpu() -> None:
    """The page splicer's CPU per MB of page, a plain page against hostile markup (issue 24), in CPython (the
    sans-IO splicer, process time) and inside Pyodide (the splice's own wall time there, tests/runtime/probe.py).
    Placeholders are left as sent, so only the splicer is measured."""
    import asyncio

    from tests.runtime import probe
    from tests.runtime.harness import pyodide_probe

    mb = 1024 * 1024
    row = b"<li><a href='/p/p00001'>Ridgeline bottle</a> <span>19.99</span></li>\n"
    plain = (b"<html><body>" + b'<pz-slot name="hero"></pz-slot>' + row * 4000 + b'<pz-slot name="home">f</pz-slot>'
             + row * (mb // len(row))) [:mb]
    pages = {"plain (1 MiB, 2 placeholders)": plain,
             "unclosed <pz-slot (1.8 MB)": b"<pz-slot" * 230_000,
             "unclosed named, with text (1 MiB)": (b'<p>x</p><pz-slot name="home">' * 40_000)[:mb],
             "nested (1 MiB)": (b'<pz-slot name="home">' * 25_000 + b"</pz-slot>" * 50_000)[:mb],
             "attribute-stuffed (1 MiB)": ((b'<pz-slot name="home" ' + b'a="b" ' * 200 + b">x</pz-slot>")
                                           * 1_000)[:mb]}
    chunk = 16 * 1024

    def b64_chunks(page: bytes) -> list[str]:
        return [base64.b64encode(page[i:i + chunk]).decode() for i in range(0, len(page), chunk)]

    print("\npage splicer: CPU per MB of page (16 KiB chunks), plain page against hostile markup")
    print(f"{'page':40} {'CPython ms/MB':>14} {'x plain':>8} {'Pyodide ms/MB':>14} {'x plain':>8}")
    results = {}
    with pyodide_probe() as pyo:
        for name, page in pages.items():
            chunks = b64_chunks(page)
            cpu, wall = [], []
            for _ in range(3):
                t = time.process_time()
                asyncio.run(probe.splice_seconds(chunks))
                cpu.append((time.process_time() - t) * 1000 / (len(page) / 1e6))
                seconds = pyo.call("splice_seconds", chunks)
                assert isinstance(seconds, float)
                wall.append(seconds * 1000 / (len(page) / 1e6))
            results[name] = (min(cpu), min(wall))
    base_c, base_p = results[next(iter(pages))]
    for name, (c, p) in results.items():
        print(f"{name:40} {c:14.1f} {c / base_c:8.2f} {p:14.1f} {p / max(base_p, 1e-9):8.2f}")


if __name__ == "__main__":
    main()
