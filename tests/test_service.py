"""service: the whole request path under CPython over the seed; the ladder end to end; fail-open."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import msgpack
import pytest

from personalizer import InMemoryKV, Personalizer, codec, keys
from personalizer.records import Profile
from personalizer_adapters.batch.build import Built
from tests.conftest import CONFIG, FixedClock, uid_cookie


def run(core: Personalizer, path: str, query: str = "", cookie: str | None = None,
        method: str = "GET", gpc: bool = False) -> tuple[int, dict[str, str], dict]:
    headers = {"cookie": cookie, "sec-gpc": "1" if gpc else None}
    reply = asyncio.run(core.handle(method, path, query, {k: v for k, v in headers.items() if v}))
    body = json.loads(reply.body) if reply.body and "json" in (reply.header("content-type") or "") else {}
    return reply.status, dict(reply.headers), body


def profile_of(built: Built, user: str) -> Profile:
    return Profile.parse(codec.decode(built.records[keys.profile(user)], expect="profile"))


def test_signed_customer_gets_their_own_list(core: Personalizer, built: Built) -> None:
    """tier user, the profile's cards first, nothing they bought or have in the cart."""
    prof = profile_of(built, "c00001")
    status, headers, body = run(core, "/v1/recommendations", "slot=home&limit=6", uid_cookie("c00001"))
    assert status == 200 and body["tier"] == "user" and headers["x-pz-tier"] == "user"
    ids = [i["id"] for i in body["items"]]
    assert ids[0] == prof.cards[0].id
    assert not set(ids) & (prof.bought | {c.id for c in prof.cart})
    assert "set-cookie" not in headers and headers["cache-control"].startswith("private")
    assert headers["vary"] == "Cookie, Sec-GPC"


def test_forged_or_expired_token_is_an_anonymous_visitor(core: Personalizer, built: Built) -> None:
    """The same id with a bad signature or an old token never sees that person's data."""
    _, _, anonymous = run(core, "/v1/page", "slots=hero,home&limit=6")
    _, _, own = run(core, "/v1/page", "slots=hero,home&limit=6", uid_cookie("c00001"))
    assert own != anonymous
    for cookie in (uid_cookie("c00001", key="forged-key-0123456789abcdef"),
                   uid_cookie("c00001", issued_at=1_000_000_000)):
        status, headers, body = run(core, "/v1/page", "slots=hero,home&limit=6", cookie)
        assert status == 200 and body == anonymous
        assert headers["set-cookie"].startswith("pz_vid=v1.vtestvisitor.")


@pytest.mark.parametrize("cookie_extra,gpc", [pytest.param("; pz_consent=denied", False, id="cookie-denied"),
                                              pytest.param("", True, id="sec-gpc"),
                                              *(pytest.param(f"; pz_consent={v}", False, id=v or "empty")
                                                for v in ("DENIED", "Denied", "0", "false", "no", ""))])
def test_denied_consent_is_not_personalized_and_sets_no_cookie(core: Personalizer, cookie_extra: str,
                                                               gpc: bool) -> None:
    """No profile read, popular tier, the generic banner's control variant, no Set-Cookie."""
    kv: InMemoryKV = core.kv  # type: ignore[assignment]
    status, headers, body = run(core, "/v1/page", "slots=hero,home,recent",
                                uid_cookie("c00001") + cookie_extra, gpc=gpc)
    assert status == 200 and "set-cookie" not in headers
    assert {f["tier"] for f in body["fragments"].values()} == {"popular"}
    assert body["fragments"]["hero"]["banner"]["id"] == "generic"
    assert not any(k.startswith("pz1:p:") for k in kv.reads)


def test_page_never_repeats_an_item_across_carousels(core: Personalizer) -> None:
    """home, recent, cart and item carousels on one page share no item."""
    _, headers, body = run(core, "/v1/page", "slots=hero,home,recent,cart,item&item=p00010&limit=12",
                           uid_cookie("c00001"))
    ids = [i["id"] for s in ("home", "recent", "cart", "item") for i in body["fragments"][s]["items"]]
    assert len(ids) == len(set(ids)) == 48
    assert "p00010" not in ids
    assert headers["x-pz-tier"].startswith("hero=")


def test_segment_tier_when_the_personal_list_is_exhausted(built: Built) -> None:
    """A profile without personal cards is answered from its best segment."""
    records = dict(built.records)
    prof = codec.decode(records[keys.profile("c00001")], expect="profile")
    records[keys.profile("c00001")] = codec.encode("profile", {**prof.data, "cards": []})
    core = Personalizer(CONFIG, InMemoryKV(records), FixedClock(), lambda: "vx")
    _, _, body = run(core, "/v1/recommendations", "slot=home", uid_cookie("c00001"))
    assert body["tier"] == "segment"


def corrupt(built: Built, key: str, how: str) -> dict[str, bytes]:
    records = dict(built.records)
    if how == "missing":
        del records[key]
    elif how == "garbage":
        records[key] = b"\x93\x01\xff not msgpack"
    else:  # the same record under a schema version this worker does not know
        env = codec.decode(records[key], expect="popular")
        records[key] = msgpack.packb({"v": 2, "kind": env.kind, "gen": env.generation, "at": 0, "until": None,
                                      "data": env.data})
    return records


@pytest.mark.parametrize("how", ["missing", "garbage", "schema-v2"])
def test_bad_popular_record_degrades_to_default(built: Built, how: str, caplog: pytest.LogCaptureFixture) -> None:
    """A missing, corrupt or wrong-version popular list: the shop's default tier answers, 200."""
    records = corrupt(built, keys.popular(built.generation), how)
    core = Personalizer(CONFIG, InMemoryKV(records), FixedClock(), lambda: "vx")
    with caplog.at_level(logging.WARNING, "personalizer"):
        status, _, body = run(core, "/v1/recommendations", "slot=home&limit=5")
    assert status == 200 and body["tier"] == "default" and len(body["items"]) == 5
    if how != "missing":
        assert "bad record" in caplog.text


@pytest.mark.parametrize("what", ["profile", "manifest"])
def test_corrupt_profile_or_manifest_degrades(built: Built, what: str) -> None:
    """A corrupt profile: anonymous tiers. A corrupt manifest: the default tier everywhere."""
    key = keys.profile("c00001") if what == "profile" else keys.MANIFEST
    records = dict(built.records) | {key: b"\xc1garbage"}
    core = Personalizer(CONFIG, InMemoryKV(records), FixedClock(), lambda: "vx")
    status, _, body = run(core, "/v1/page", "slots=hero,home", uid_cookie("c00001"))
    assert status == 200
    expected = {"segment", "popular"} if what == "profile" else {"default"}
    assert {f["tier"] for f in body["fragments"].values()} <= expected


class FailingKV:
    async def get(self, key: str) -> bytes | None:
        raise ConnectionError("KV is down")


class FlakyKV(InMemoryKV):
    """The seed's KV, until ``down``: then every read fails."""

    down = False

    async def get(self, key: str) -> bytes | None:
        if self.down:
            raise ConnectionError("KV is down")
        return await super().get(key)


def default_tier(built: Built) -> tuple[list[str], dict[str, object]]:
    data = codec.decode(built.records[keys.DEFAULT], expect="default").data
    return [c[0] for c in data["cards"]], data["banner"]


def test_kv_outage_serves_the_shops_default_tier_the_isolate_has_read(built: Built,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Once an isolate has read the shop's default tier, an outage (every read failing, every cache entry
    expired) still answers 200 with the shop's own default banner and popular items."""
    kv, clock = FlakyKV(built.records), FixedClock()
    core = Personalizer(CONFIG, kv, clock, lambda: "vx")
    assert run(core, "/v1/page", "slots=hero,home", uid_cookie("c00001"))[0] == 200
    kv.down, clock.t = True, clock.t + 3600
    with caplog.at_level(logging.WARNING, "personalizer"):
        status, headers, body = run(core, "/v1/page", "slots=hero,home", uid_cookie("c00001"))
    assert status == 200 and headers["x-pz-tier"] == "hero=default,home=default"
    cards, banner = default_tier(built)
    assert body["generation"] == "default" and body["fragments"]["hero"]["banner"]["id"] == banner["id"]
    assert [i["id"] for i in body["fragments"]["home"]["items"]] == cards[:12]
    assert "kv read failed key=pz1:default" in caplog.text


def test_a_cold_isolate_in_an_outage_serves_nothing_of_any_shop(caplog: pytest.LogCaptureFixture) -> None:
    """Every KV read failing from the first request: 200, no banner, empty carousels; in HTML no section at
    all, so the page's placeholders keep the shop's own content."""
    core = Personalizer(CONFIG, FailingKV(), FixedClock(), lambda: "vx")
    with caplog.at_level(logging.WARNING, "personalizer"):
        status, headers, body = run(core, "/v1/page", "slots=hero,home", uid_cookie("c00001"))
    assert status == 200 and headers["x-pz-tier"] == "hero=none,home=default"
    assert body["fragments"]["hero"]["banner"] is None and body["fragments"]["home"]["items"] == []
    html = asyncio.run(core.handle("GET", "/v1/page", "slots=hero,home&format=html", {}))
    assert html.status == 200 and b"<section" not in html.body and b'class="pz-page"' in html.body
    assert "kv read failed" in caplog.text


def test_shared_records_are_read_once_per_ttl(core: Personalizer, built: Built) -> None:
    """The second request reads only the profile: shared records come from the isolate cache."""
    kv: InMemoryKV = core.kv  # type: ignore[assignment]
    run(core, "/v1/page", "slots=hero,home", uid_cookie("c00001"))
    kv.reads.clear()
    run(core, "/v1/page", "slots=hero,home", uid_cookie("c00002"))
    seg = profile_of(built, "c00002").segments[0]
    assert set(kv.reads) <= {keys.profile("c00002"), keys.segment(built.generation, seg)}
    assert keys.profile("c00002") in kv.reads


def test_errors_use_the_json_shape_and_head_has_no_body(core: Personalizer) -> None:
    """4xx with {"error": {"code", "message"}}; HEAD answers headers only."""
    status, headers, body = run(core, "/v1/recommendations", "slot=nope")
    assert status == 400 and body["error"]["code"] == "bad_slot" and body["error"]["message"]
    reply = asyncio.run(core.handle("HEAD", "/v1/banner", "slot=hero", {}))
    assert reply.status == 200 and reply.body == b"" and reply.header("x-pz-tier")


def test_a_visitor_id_never_names_a_customer(core: Personalizer, built: Built) -> None:
    """A signed pz_vid whose id equals a customer's id reads the visitor key space, not the customer's profile."""
    from personalizer.identity import VID, sign
    from tests.conftest import TEST_KEY

    kv: InMemoryKV = core.kv  # type: ignore[assignment]
    vid = f"{VID}={sign(VID, 'c00001', int(time.time()), TEST_KEY.encode())}"
    _, _, as_visitor = run(core, "/v1/recommendations", "slot=home&limit=6", vid)
    assert keys.profile("c00001") not in kv.reads and keys.visitor("c00001") in kv.reads
    assert as_visitor["tier"] != "user"


@pytest.mark.parametrize("cookie", [
    pytest.param("; ".join(f"_ga_{n}=GA1.1.{'9' * 120}" for n in range(80)) + "; pz_consent=denied",
                 id="denied-after-80-cookies"),
    pytest.param("pz_consent=denied; pad=" + "x" * 70_000, id="header-too-long-to-read"),
    pytest.param("pz_consent=granted; pz_consent=denied", id="conflicting"),
])
def test_a_refusal_we_cannot_miss_or_cannot_read_is_a_refusal(core: Personalizer, cookie: str) -> None:
    """Many cookies, an unreadable header or conflicting answers: not personalized, no cookie set."""
    kv: InMemoryKV = core.kv  # type: ignore[assignment]
    status, headers, body = run(core, "/v1/page", "slots=hero,home", cookie + "; " + uid_cookie("c00001"))
    assert status == 200 and "set-cookie" not in headers
    assert not any(k.startswith(("pz1:p:", "pz1:v:")) for k in kv.reads)
    assert body["fragments"]["home"]["tier"] != "user"


@pytest.mark.parametrize("value", ["DENIED", "0", "false", "no", "", "yes", "true", "1"])
def test_only_an_exact_granted_is_consent_for_a_new_visitor(core: Personalizer, value: str) -> None:
    """Any pz_consent value but exactly ``granted`` is a denial, whatever CONSENT_DEFAULT says: no id minted,
    no personalization; ``granted`` itself mints one."""
    status, headers, _ = run(core, "/v1/page", "slots=home", f"pz_consent={value}")
    assert status == 200 and "set-cookie" not in headers
    status, headers, _ = run(core, "/v1/page", "slots=home", "pz_consent=granted")
    assert headers["set-cookie"].startswith("pz_vid=")


def test_folded_sec_gpc_opts_out(core: Personalizer) -> None:
    """Sec-GPC: "1, 1" (two headers folded by a proxy) is honoured like "1"."""
    reply = asyncio.run(core.handle("GET", "/v1/recommendations", "slot=home", {"sec-gpc": "1, 1"}))
    assert reply.status == 200 and reply.header("set-cookie") is None


@pytest.mark.parametrize("path,query", [("/healthz", ""), ("/nope", ""), ("/v1/recommendations", "slot=home"),
                                        ("/v1/recommendations", "slot=home&limit=%C2%B2")])
def test_every_answer_is_nosniff_and_bad_numbers_are_400(core: Personalizer, path: str, query: str) -> None:
    """X-Content-Type-Options on every answer; a Unicode digit is a 400 JSON error, not a 500."""
    status, headers, body = run(core, path, query)
    assert headers["x-content-type-options"] == "nosniff"
    assert status < 500
    if "limit" in query:
        assert (status, body["error"]["code"]) == (400, "bad_limit")


@pytest.mark.parametrize("value", [
    pytest.param(b"\x00" * (20 * 1024 * 1024), id="20MiB-garbage"),
    pytest.param(codec.encode("profile", {"id": "c00001", "segments": [], "cards": [], "recent": [],
                                          "bought": [f"p{n:07d}" for n in range(400_000)], "cart": []}),
                 id="4MB-valid-profile"),
])
def test_a_bad_profile_costs_one_read_not_one_per_request(built: Built, value: bytes) -> None:
    """An oversized profile value is refused before decoding, and its key is not read again for a while."""
    kv = InMemoryKV({**built.records, keys.profile("c00001"): value})
    core = Personalizer(CONFIG, kv, FixedClock(), lambda: "vtestvisitor")
    for _ in range(3):
        status, _, body = run(core, "/v1/recommendations", "slot=home", uid_cookie("c00001"))
        assert status == 200 and body["tier"] != "user"
    assert kv.reads.count(keys.profile("c00001")) == 1


@pytest.mark.parametrize("token", ["v1.c00001.².sig", "v1.c00001.١٧٠٠٠٠٠٠٠٠.sig", "v1.c00001.-5.sig",
                                   "v1..1.sig", "v1.c00001.1.2.3", "\x00", "v1.c00001.99999999999999999999.x"])
def test_malformed_tokens_are_anonymous_not_errors(core: Personalizer, token: str) -> None:
    """Unicode digits or junk in a pz_uid: an anonymous 200, never a 5xx."""
    status, headers, body = run(core, "/v1/recommendations", "slot=home", f"pz_uid={token}")
    assert status == 200 and body["tier"] != "user"


def test_an_erased_person_is_served_as_nobody_and_their_cookies_cleared(built: Built) -> None:
    """The erasure's mark at their key: no personal tier, nothing of their session used, pz_s and pz_vid
    deleted, no-store; their beacons are answered but not kept."""
    from personalizer import session
    from personalizer.ports import InMemorySink

    records = {**built.records, keys.profile("c00001"): codec.erased_mark()}
    sink = InMemorySink()
    core = Personalizer(CONFIG, InMemoryKV(records), FixedClock(), lambda: "vnew", sink=sink)
    state = session.encode(session.Session("c00001", ("p00001",)), int(FixedClock().now()), CONFIG.signing_keys[0])
    cookie = f"{uid_cookie('c00001')}; pz_s={state}; pz_vid=v1.x.1.y"
    status, headers, body = run(core, "/v1/page", "slots=hero,home,recent", cookie)
    assert status == 200 and "user" not in {f["tier"] for f in body["fragments"].values()}
    assert body["fragments"]["recent"]["items"][0]["id"] != "p00001"
    reply = asyncio.run(core.handle("GET", "/v1/page", "slots=home", {"cookie": cookie}))
    gone = "=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"
    assert sorted(v for k, v in reply.headers if k == "set-cookie") == [f"pz_s{gone}", f"pz_vid{gone}"]
    assert reply.header("cache-control") == "private, no-store"
    events = json.dumps({"events": [{"id": "e1", "type": "view", "item": "p00002", "ts": FixedClock().now()}]})
    beacon = asyncio.run(core.handle("POST", "/v1/events", "", {"cookie": cookie, "content-type": "text/plain",
                                                               "user-agent": "Mozilla/5.0"}, events.encode()))
    assert beacon.status == 202 and json.loads(beacon.body)["stored"] == 0 and sink.messages == []
    # someone else is untouched
    _, _, other = run(core, "/v1/page", "slots=home", uid_cookie("c00002"))
    assert other["fragments"]["home"]["tier"] == "user"


def test_the_global_holdout_is_served_as_nobody_and_says_so(built: Built) -> None:
    """HOLDOUT_PERCENT: a sticky share of people gets no personal tier and the generic banner on every slot, the
    answer says holdout (header, JSON, the page's HTML), and everyone else's answer is byte for byte as without."""
    from dataclasses import replace as with_

    from personalizer.identity import in_holdout

    people = [f"c{n:05d}" for n in range(1, 200)]
    held = [p for p in people if in_holdout(p, 20)]
    assert 0.1 < len(held) / len(people) < 0.3 and held == [p for p in people if in_holdout(p, 20)]  # sticky
    free = next(p for p in people if not in_holdout(p, 20) and p in {"c00001", "c00002", "c00005", "c00006"})
    plain = Personalizer(CONFIG, InMemoryKV(built.records), FixedClock(), lambda: "vnew")
    core = Personalizer(with_(CONFIG, holdout_percent=20), InMemoryKV(built.records), FixedClock(), lambda: "vnew")
    status, headers, body = run(core, "/v1/page", "slots=hero,home,recent", uid_cookie(held[0]))
    assert status == 200 and headers["x-pz-holdout"] == "1" and body["holdout"] is True
    assert {f["tier"] for f in body["fragments"].values()} <= {"popular", "default"}
    assert body["fragments"]["hero"]["banner"]["id"] == "generic"
    kv: InMemoryKV = core.kv  # type: ignore[assignment]
    assert not any(k.startswith("pz1:p:") for k in kv.reads)  # their profile is not even read
    html = asyncio.run(core.handle("GET", "/v1/page", "slots=home&format=html", {"cookie": uid_cookie(held[0])}))
    assert b'data-pz-holdout=""' in html.body
    one = asyncio.run(core.handle("GET", "/v1/recommendations", "slot=home", {"cookie": uid_cookie(held[0])}))
    assert json.loads(one.body)["holdout"] is True
    for path, query in (("/v1/page", "slots=hero,home,recent"), ("/v1/recommendations", "slot=home")):
        mine = asyncio.run(core.handle("GET", path, query, {"cookie": uid_cookie(free)}))
        assert mine.body == asyncio.run(plain.handle("GET", path, query, {"cookie": uid_cookie(free)})).body
        assert mine.header("x-pz-holdout") is None


def test_an_impression_of_the_holdout_keeps_its_mark() -> None:
    from personalizer.events import Rejected, clean_event

    base = {"id": "e1", "type": "impression", "ts": 1, "slot": "home", "tier": "popular", "generation": "g1",
            "items": ["p1"]}
    assert clean_event({**base, "holdout": True}, 10)["holdout"] is True
    assert "holdout" not in clean_event(base, 10) and "holdout" not in clean_event({**base, "holdout": False}, 10)
    with pytest.raises(Rejected):
        clean_event({**base, "holdout": "yes"}, 10)
