"""The benchmarked work, identical under CPython and Pyodide: the core's request path, KV values in memory."""

import asyncio
import base64
import json
import time

from personalizer import Config, InMemoryKV, Personalizer, sign

PATH, QUERY = "/v1/page", "slots=hero,home,recent"


class Clock:
    def now(self):
        return time.time()

    def monotonic_ms(self):
        return time.perf_counter() * 1000.0


def load(path):
    with open(path) as f:
        spec = json.load(f)
    records = {k: base64.b64decode(v) for k, v in spec["records"].items()}
    return records, spec["users"], spec["key"].encode()


def cookies(users, key):
    now = int(time.time())
    return [f"pz_uid={sign('pz_uid', u, now, key)}" for u in users]


def session_cookies(users, key, records):
    """pz_uid plus a session state per user: 4 items just viewed and 1 in the cart (the page then reads their
    item records too, from the isolate cache once warm)."""
    from personalizer.session import Session, encode

    now = int(time.time())
    items = sorted(k.rsplit(":", 1)[1] for k in records if ":item:" in k)
    out = []
    for n, (user, uid) in enumerate(zip(users, cookies(users, key), strict=True)):
        mine = [items[(n * 7 + j * 13) % len(items)] for j in range(5)]
        state = encode(Session(user, tuple(mine[:4]), ((mine[4], now - 60),)), now, key)
        out.append(f"{uid}; pz_s={state}")
    return out


async def run_core(path, n, warmup):
    """Per-request milliseconds of ``Personalizer.handle`` for a page of hero, home, recent."""
    records, users, key = load(path)
    core = Personalizer(Config(signing_keys=(key,)), InMemoryKV(records), Clock(), lambda: "vbench")
    jar = cookies(users, key)
    out = []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        reply = await core.handle("GET", PATH, QUERY, {"cookie": jar[i % len(jar)]})
        t1 = time.perf_counter()
        if reply.status != 200 or b'"tier":"user"' not in reply.body:
            raise RuntimeError(f"unexpected answer {reply.status} {reply.body[:200]!r}")
        if i >= warmup:
            out.append((t1 - t0) * 1000.0)
    return out


if __name__ == "__main__":
    import sys

    print(json.dumps(asyncio.run(run_core(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))))
