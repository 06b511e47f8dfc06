"""miss: the origin gate (breaker, single flight, negative cache, validation) and the service's miss path."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable

import msgpack
import pytest

from personalizer import Breaker, InMemoryKV, MissPath, OriginGate, Personalizer, codec, keys
from personalizer_adapters.batch.build import Built
from tests.conftest import CONFIG, FixedClock, uid_cookie

NOW = 1_800_000_000.0


class FakeOrigin:
    """Answers from a dict; ``delay`` seconds per call; ``fail`` raises; counts calls."""

    def __init__(self, answers: dict[str, bytes], delay: float = 0.0, fail: bool = False) -> None:
        self.answers, self.delay, self.fail, self.calls = answers, delay, fail, 0

    async def resolve(self, key: str) -> bytes | None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("origin down")
        return self.answers.get(key)


def drain(deferred: list[Awaitable[None]]) -> None:
    """Run what the platform's wait_until would run after the response."""
    for aw in deferred:
        asyncio.run(aw)  # type: ignore[arg-type]


def profile_bytes(built: Built, user: str) -> bytes:
    return built.records[keys.profile(user)]


def test_breaker_opens_after_threshold_and_probes_once() -> None:
    """closed -> open after N failures -> one probe after the cooldown -> closed on success, open on failure."""
    b = Breaker(threshold=2, cooldown_s=10)
    b.failure(0)
    assert b.allow(0) and b.state == "closed"
    b.failure(1)
    assert b.state == "open" and not b.allow(5)
    assert b.allow(11) and b.state == "half-open" and not b.allow(11)  # only one probe
    b.failure(11)
    assert b.state == "open" and not b.allow(12)
    assert b.allow(21)
    b.success()
    assert b.state == "closed" and b.allow(21)


def test_gate_shares_one_call_among_concurrent_requests(built: Built) -> None:
    """N concurrent resolves of one key make one origin call; all get the record, one gets the bytes."""
    key = keys.profile("c00001")
    origin = FakeOrigin({key: profile_bytes(built, "c00001")}, delay=0.05)
    gate = OriginGate()

    async def go() -> list[str]:
        results = await asyncio.gather(*(gate.resolve(key, origin, timeout_s=1, now=NOW) for _ in range(10)))
        assert all(r.value is not None and r.value.id == "c00001" for r in results)
        return sorted(r.outcome for r in results)

    assert asyncio.run(go()) == ["hit"] + ["shared"] * 9
    assert origin.calls == 1 and not gate.inflight


def test_gate_caches_not_found_briefly(built: Built) -> None:
    """A 404 is remembered for the negative TTL: no second call until it expires."""
    origin = FakeOrigin({})
    gate = OriginGate(negative_ttl_s=30)
    key = keys.profile("c99999")
    outcomes = [asyncio.run(gate.resolve(key, origin, timeout_s=1, now=t)).outcome for t in (NOW, NOW + 29, NOW + 31)]
    assert outcomes == ["absent", "negative", "absent"] and origin.calls == 2


def wrong_schema(raw: bytes) -> bytes:
    obj = msgpack.unpackb(raw)
    return msgpack.packb({**obj, "v": 2})


@pytest.mark.parametrize("mangle,outcome", [
    pytest.param(lambda b, other: b"\x00\x01 not msgpack", "invalid", id="garbage"),
    pytest.param(lambda b, other: wrong_schema(b), "invalid", id="wrong-schema"),
    pytest.param(lambda b, other: other, "invalid", id="another-persons-profile"),
    pytest.param(lambda b, other: codec.encode("popular", {"name": "x", "cards": []}), "invalid", id="wrong-kind"),
    pytest.param(lambda b, other: b + b"\x00" * (1024 * 1024), "invalid", id="oversized"),
    pytest.param(lambda b, other: b, "hit", id="valid"),
])
def test_gate_validates_answers(built: Built, mangle: object, outcome: str) -> None:
    """Only a v1 record of the right kind, for the right key, within the size bound, is used."""
    key = keys.profile("c00001")
    answer = mangle(profile_bytes(built, "c00001"), profile_bytes(built, "c00002"))  # type: ignore[operator]
    gate = OriginGate(breaker=Breaker(threshold=1))
    r = asyncio.run(gate.resolve(key, FakeOrigin({key: answer}), timeout_s=1, now=NOW))
    assert r.outcome == outcome and (r.value is None) == (outcome != "hit")
    assert gate.breaker.state == ("closed" if outcome == "hit" else "open")


def test_gate_validates_the_generation_of_shared_records(built: Built) -> None:
    """A segment record of another generation is not the one asked for."""
    seg = next(k for k in built.records if ":seg:" in k)
    other = seg.replace(built.generation, "g0-other")
    r = asyncio.run(OriginGate().resolve(other, FakeOrigin({other: built.records[seg]}), timeout_s=1, now=NOW))
    assert r.outcome == "invalid"


def core_with_origin(built: Built, origin: FakeOrigin, drop: str = "c00001",
                     gate: OriginGate | None = None) -> tuple[Personalizer, InMemoryKV, list[Awaitable[None]]]:
    records = {k: v for k, v in built.records.items() if k != keys.profile(drop)}
    kv = InMemoryKV(records)
    deferred: list[Awaitable[None]] = []
    miss = MissPath(origin, gate or OriginGate(), kv, deferred.append)
    return Personalizer(CONFIG, kv, FixedClock(), lambda: "vx", miss=miss), kv, deferred


def page(core: Personalizer, user: str) -> tuple[str | None, str | None]:
    reply = asyncio.run(core.handle("GET", "/v1/recommendations", "slot=home", {"cookie": uid_cookie(user)}))
    assert reply.status == 200
    return reply.header("x-pz-tier"), reply.header("server-timing")


def test_miss_is_served_from_the_origin_and_written_back_after(built: Built) -> None:
    """Tier user from the origin's answer; the write-back is deferred (not awaited by the response)."""
    origin = FakeOrigin({keys.profile("c00001"): profile_bytes(built, "c00001")})
    core, kv, deferred = core_with_origin(built, origin)
    tier, timing = page(core, "c00001")
    assert tier == "user" and 'desc="hit"' in (timing or "")
    assert keys.profile("c00001") not in kv.data and len(deferred) == 1
    asyncio.run(deferred[0])  # what wait_until runs after the response
    assert kv.data[keys.profile("c00001")] == profile_bytes(built, "c00001")
    tier, timing = page(core, "c00001")
    assert tier == "user" and origin.calls == 1 and "desc" not in (timing or "")


@pytest.mark.parametrize("origin,outcome", [
    pytest.param(FakeOrigin({}, delay=5), "timeout", id="slow"),
    pytest.param(FakeOrigin({}, fail=True), "error", id="down"),
])
def test_failing_origin_degrades_to_the_next_tier(built: Built, origin: FakeOrigin, outcome: str) -> None:
    """Slow or failing origin: tier popular, the outcome in Server-Timing, nothing written back."""
    core, kv, deferred = core_with_origin(built, origin)
    tier, timing = page(core, "c00001")
    assert tier == "popular" and f'desc="{outcome}"' in (timing or "") and not deferred


def test_breaker_stops_calls_until_a_probe_succeeds(built: Built) -> None:
    """After N failures the origin is not called; after the cooldown one probe goes, and success closes it."""
    start = time.time()
    origin = FakeOrigin({keys.profile("c00001"): profile_bytes(built, "c00001")}, fail=True)
    gate = OriginGate(breaker=Breaker(threshold=3, cooldown_s=10))
    core, kv, deferred = core_with_origin(built, origin, gate=gate)
    core.clock = FixedClock(start)  # type: ignore[assignment]
    for _ in range(3):
        page(core, "c00001")
    assert origin.calls == 3 and gate.breaker.state == "open"
    tier, timing = page(core, "c00001")
    assert origin.calls == 3 and 'desc="open"' in (timing or "") and tier == "popular"
    origin.fail = False
    core.clock = FixedClock(start + 11)  # type: ignore[assignment]
    tier, _ = page(core, "c00001")
    assert origin.calls == 4 and tier == "user" and gate.breaker.state == "closed"
    drain(deferred)


def test_anonymous_visitors_never_reach_the_origin(built: Built) -> None:
    """Only a signed customer's missing profile is a true miss; a visitor id or a forged token is not."""
    origin = FakeOrigin({})
    core, _, _ = core_with_origin(built, origin)
    asyncio.run(core.handle("GET", "/v1/recommendations", "slot=home", {}))
    asyncio.run(core.handle("GET", "/v1/recommendations", "slot=home",
                            {"cookie": uid_cookie("c00001", key="forged-key-0123456789abcdef")}))
    assert origin.calls == 0


def test_missing_segment_and_item_records_are_misses_too(built: Built) -> None:
    """A segment or item record absent from the active generation is asked of the origin."""
    prof = codec.decode(built.records[keys.profile("c00001")], expect="profile").data
    seg_key = keys.segment(built.generation, prof["segments"][0])
    item_key = keys.item(built.generation, "p00010")
    records = {k: v for k, v in built.records.items() if k not in (seg_key, item_key)}
    kv = InMemoryKV(records)
    origin = FakeOrigin({seg_key: built.records[seg_key], item_key: built.records[item_key]})
    deferred: list[Awaitable[None]] = []
    core = Personalizer(CONFIG, kv, FixedClock(), lambda: "vx",
                        miss=MissPath(origin, OriginGate(), kv, deferred.append))
    reply = asyncio.run(core.handle("GET", "/v1/page", "slots=home,item&item=p00010&limit=30",
                                    {"cookie": uid_cookie("c00001")}))
    assert reply.header("x-pz-tier") == "home=user,item=item"
    assert origin.calls == 2 and len(deferred) == 2
    drain(deferred)
    assert seg_key in kv.data and item_key in kv.data


def test_sequential_misses_share_one_deadline(built: Built) -> None:
    """A request's misses share one origin budget: once a slow origin used it up, later misses skip the call."""
    prof = codec.decode(built.records[keys.profile("c00001")], expect="profile").data
    seg_key = keys.segment(built.generation, prof["segments"][0])
    item_key = keys.item(built.generation, "p00010")
    kv = InMemoryKV({k: v for k, v in built.records.items() if k not in (seg_key, item_key)})
    origin = FakeOrigin({}, delay=5)
    core = Personalizer(dataclasses.replace(CONFIG, origin_timeout_ms=50), kv, FixedClock(), lambda: "vx",
                        miss=MissPath(origin, OriginGate(), kv, lambda aw: None))
    # round 1: profile (hit) + item (miss: times out); round 2: segment (miss: no budget left)
    reply = asyncio.run(core.handle("GET", "/v1/page", "slots=item,home&item=p00010",
                                    {"cookie": uid_cookie("c00001")}))
    assert reply.status == 200 and 'desc="timeout,budget"' in (reply.header("server-timing") or "")
    assert origin.calls == 1
