"""End to end, the miss path: offline edge runtime (Pyodide + SDK + Miniflare KV) + a real uvicorn origin.

The origin is the real app behind a switchboard (a pass-through ASGI wrapper served over real HTTP) that
can make it slow, asleep, failing or wrong, and that counts the calls it receives per key.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from personalizer import codec, keys
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.seed import bulk_json
from personalizer_adapters.origin.app import create_app
from tests.conftest import TEST_KEY, uid_cookie
from tests.runtime.harness import edge_runtime, local_kv_get, serve_asgi

pytestmark = pytest.mark.edge
SECRET = "edge-origin-secret-0123456789"
TIMEOUT_MS = 1500  # the slow origin (0.6 s) stays inside it under a full parallel run; asleep (3 s) does not
Scope = dict[str, Any]


class Switchboard:
    """Pass-through to the real origin, or a chosen failure. Counts calls per requested key."""

    def __init__(self, app: Any) -> None:
        self.app, self.mode, self.keys, self.sleeping = app, "pass", [], 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        self.keys.append(json.loads(body).get("key"))
        mode = self.mode
        if mode in ("pass", "slow"):
            if mode == "slow":
                await asyncio.sleep(0.6)  # slow but inside the deadline: concurrent requests overlap, loaded or not
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if replayed:
                    return await receive()  # type: ignore[no-any-return]
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            return await self.app(scope, replay, send)  # type: ignore[no-any-return]
        if mode == "sleep":
            self.sleeping += 1
            try:
                await asyncio.sleep(3)  # far past the edge's deadline
            finally:
                self.sleeping -= 1
        status, payload = {
            "sleep": (500, b"{}"), "500": (500, b'{"error": {"code": "boom", "message": "internal"}}'),
            "garbage": (200, b"\x00\x01\x02 this is not a record"),
            "wrong-schema": (200, msgpack.packb({"v": 2, "kind": "profile", "gen": None, "at": 0, "until": None,
                                                 "data": {}})),
        }[mode]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/x-msgpack")]})
        await send({"type": "http.response.body", "body": payload})

    def calls(self, user: str) -> int:
        return self.keys.count(keys.profile(user))


@pytest.fixture(scope="module")
def switch(built: Built, seed_dir: Path) -> Iterator[tuple[Switchboard, str]]:
    board = Switchboard(create_app(seed_dir / "origin", SECRET))
    with serve_asgi(board) as url:
        yield board, url


def shared_seed(built: Built, directory: Path) -> Path:
    """Everything but the profiles: every customer is a miss the origin must fill."""
    path = directory / "kv.json"
    path.write_text(bulk_json({k: v for k, v in built.records.items() if not k.startswith("pz1:p:")}))
    return path


def edge_vars(origin_url: str) -> dict[str, str]:
    return {"PZ_SIGNING_KEYS": TEST_KEY, "ORIGIN_URL": origin_url, "ORIGIN_SECRET": SECRET,
            "ORIGIN_TIMEOUT_MS": str(TIMEOUT_MS), "ORIGIN_BREAKER_FAILURES": "3", "ORIGIN_BREAKER_COOLDOWN_S": "1"}


@pytest.fixture(scope="module")
def edge(built: Built, switch: tuple[Switchboard, str],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    state = tmp_path_factory.mktemp("edge-origin")
    with edge_runtime(state / "state", seed=shared_seed(built, state), variables=edge_vars(switch[1])) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as client:
        client.persist = state / "state"  # type: ignore[attr-defined]
        yield client


_next = iter(range(5001, 6001))


def fresh_user() -> str:
    """A store-only shopper (never pushed to KV) not used by any other test."""
    return f"c{next(_next):05d}"


def home(edge: httpx.Client, user: str) -> httpx.Response:
    r = edge.get("/v1/recommendations?slot=home", headers={"cookie": uid_cookie(user)})
    assert r.status_code == 200
    return r


def outcome(r: httpx.Response) -> str | None:
    timing = r.headers["server-timing"]
    return timing.split('desc="')[1].split('"')[0] if 'desc="' in timing else None


def test_miss_is_filled_by_the_origin_then_served_from_kv(edge: httpx.Client,
                                                         switch: tuple[Switchboard, str]) -> None:
    """First request: tier user from the origin's answer. After the write-back: a KV hit, no origin call."""
    board, _ = switch
    user = fresh_user()
    first = home(edge, user)
    assert first.json()["tier"] == "user" and outcome(first) == "hit" and board.calls(user) == 1
    for _ in range(50):  # the write-back runs in wait_until, after the response
        again = home(edge, user)
        if outcome(again) is None:
            break
        time.sleep(0.05)
    assert outcome(again) is None and again.json() == first.json() and board.calls(user) == 1
    stored = local_kv_get(edge.persist, keys.profile(user))  # type: ignore[attr-defined]
    assert stored is not None and codec.decode(stored, expect="profile").data["id"] == user


def test_concurrent_requests_for_one_missing_key_make_one_origin_call(edge: httpx.Client,
                                                                       switch: tuple[Switchboard, str]) -> None:
    """N requests at once for the same missing profile share one origin call."""
    board, _ = switch
    user = fresh_user()
    board.mode = "slow"
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: home(edge, user), range(8)))
    finally:
        board.mode = "pass"
    assert {a.json()["tier"] for a in answers} == {"user"}
    assert sorted(outcome(a) or "kv" for a in answers).count("hit") == 1
    assert board.calls(user) == 1


def test_unknown_customer_is_anonymous_and_cached_negative(edge: httpx.Client,
                                                           switch: tuple[Switchboard, str]) -> None:
    """The origin's 404 means anonymous; the isolate remembers it and does not ask again."""
    board, _ = switch
    first, second = home(edge, "c99990"), home(edge, "c99990")
    assert first.json()["tier"] == second.json()["tier"] == "popular"
    assert (outcome(first), outcome(second)) == ("absent", "negative") and board.calls("c99990") == 1


@pytest.mark.parametrize("mode,expected", [
    pytest.param("sleep", "timeout", id="asleep-past-the-deadline"),
    pytest.param("500", "error", id="500"),
    pytest.param("garbage", "invalid", id="not-a-record"),
    pytest.param("wrong-schema", "invalid", id="wrong-schema"),
])
def test_origin_failures_degrade_to_the_next_tier(edge: httpx.Client, switch: tuple[Switchboard, str],
                                                   mode: str, expected: str) -> None:
    """Whatever the origin does, a 200 from a lower tier, the outcome named in Server-Timing."""
    board, _ = switch
    board.mode = mode
    try:
        r = home(edge, fresh_user())
        still_sleeping = board.sleeping
    finally:
        board.mode = "pass"
    assert r.json()["tier"] == "popular" and r.headers["x-pz-tier"] == "popular" and outcome(r) == expected
    if mode == "sleep":
        assert still_sleeping == 1  # answered by the deadline, while the origin was still asleep
    assert outcome(home(edge, fresh_user())) == "hit"  # a success closes the breaker's count again


def test_breaker_opens_then_a_probe_closes_it(edge: httpx.Client, switch: tuple[Switchboard, str]) -> None:
    """3 failures open the breaker: no origin calls; after the cooldown one probe goes and closes it."""
    board, _ = switch
    board.mode = "500"
    try:
        failed = [home(edge, fresh_user()) for _ in range(3)]
        calls = len(board.keys)
        blocked = [home(edge, fresh_user()) for _ in range(3)]
        assert len(board.keys) == calls
    finally:
        board.mode = "pass"
    assert [outcome(r) for r in failed] == ["error"] * 3 and [outcome(r) for r in blocked] == ["open"] * 3
    assert {r.json()["tier"] for r in failed + blocked} == {"popular"}
    time.sleep(1.2)  # the cooldown (ORIGIN_BREAKER_COOLDOWN_S=1)
    probe = home(edge, fresh_user())
    assert outcome(probe) == "hit" and probe.json()["tier"] == "user" and len(board.keys) == calls + 1
    assert outcome(home(edge, fresh_user())) == "hit"


def test_origin_down_degrades(built: Built, tmp_path: Path) -> None:
    """Nothing listening at ORIGIN_URL: 200 from the next tier."""
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with edge_runtime(tmp_path / "state", seed=shared_seed(built, tmp_path),
                      variables=edge_vars(f"http://127.0.0.1:{port}")) as (url, _), httpx.Client(base_url=url) as c:
        r = home(c, "c05999")
        assert r.json()["tier"] == "popular" and outcome(r) == "error"
