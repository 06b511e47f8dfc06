"""The signed session state (pz_s): folded from beacons, used by the next read at once, ignored when not valid."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from personalizer import InMemoryKV, Personalizer, codec, keys
from personalizer.ports import InMemorySink
from personalizer.records import ItemRecord, Manifest, Profile
from personalizer.session import MAX_CHARS, MAX_VIEWED, SESSION, Session, decode, encode, fold
from personalizer_adapters.batch.build import Built
from tests.conftest import CONFIG, OLD_KEY, TEST_KEY, FixedClock, uid_cookie

NOW = int(time.time())
KEYS = (TEST_KEY.encode(), OLD_KEY.encode())
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"


def ev(kind: str, ts: float, **fields: Any) -> dict[str, Any]:
    return {"id": f"{kind}-{ts}-{fields.get('item', '')}", "type": kind, "ts": float(ts), **fields}


# -- the token ------------------------------------------------------------------------------------------
def test_fold_orders_by_time_and_keeps_the_live_cart() -> None:
    events = [ev("view", 3, item="b"), ev("view", 1, item="a"), ev("view", 5, item="a"),
              ev("add_to_cart", 6, item="x", quantity=1), ev("add_to_cart", 7, item="y", quantity=1),
              ev("remove_from_cart", 8, item="x"),
              ev("purchase", 9, order="o1", items=[{"item": "z", "quantity": 1, "price": "1.00"}])]
    s = fold(None, "c1", events, NOW)
    assert s.viewed == ("a", "b") and s.cart == (("y", 7),) and s.bought == ("z",)
    s = fold(s, "c1", [ev("purchase", 10, order="o2", items=[{"item": "y", "quantity": 1, "price": "2.00"}])], NOW)
    assert s.cart == () and s.bought == ("y", "z")
    many = fold(None, "c1", [ev("view", t, item=f"i{t}") for t in range(20)], NOW)
    assert many.viewed == tuple(f"i{t}" for t in range(19, 19 - MAX_VIEWED, -1))


def test_round_trip_and_rotation() -> None:
    s = Session("c1", ("a", "b"), (("x", NOW - 5),), ("z",), NOW)
    token = encode(s, NOW, KEYS[1])  # signed with the retired key: still verifies
    assert decode(token, "c1", KEYS, NOW, 3600) == s


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),          # signature
    lambda t: t.replace(".", ".x", 1),                                     # payload
    lambda t: "v2" + t[2:],                                                # version
    lambda t: t + "." + "x",                                               # shape
    lambda t: t.split(".")[0] + "." + t.split(".")[1] + ".notanumber." + t.split(".")[3],
    lambda t: "v1." + "A" * MAX_CHARS + ".1.x",                            # oversized
    lambda t: "",
], ids=["signature", "payload", "version", "shape", "time", "oversized", "empty"])
def test_forged_or_malformed_state_is_ignored(mangle: Any) -> None:
    token = encode(Session("c1", ("a",)), NOW, KEYS[0])
    assert decode(mangle(token), "c1", KEYS, NOW, 3600) is None


def test_stale_future_or_anothers_state_is_ignored() -> None:
    token = encode(Session("c1", ("a",)), NOW - 7200, KEYS[0])
    assert decode(token, "c1", KEYS, NOW, 3600) is None
    assert decode(encode(Session("c1", ("a",)), NOW + 3600, KEYS[0]), "c1", KEYS, NOW, 3600) is None
    assert decode(encode(Session("c1", ("a",)), NOW, KEYS[0]), "c2", KEYS, NOW, 3600) is None
    assert decode(encode(Session("c1", ("a",)), NOW, b"some-other-key-0123456789"), "c1", KEYS, NOW, 3600) is None


def test_a_state_that_would_be_too_long_drops_its_oldest_entries() -> None:
    big = Session("c1", tuple("v" * 60 + str(i) for i in range(8)), tuple(("c" * 60 + str(i), NOW) for i in range(10)),
                  tuple("b" * 60 + str(i) for i in range(10)), NOW)
    token = encode(big, NOW, KEYS[0])
    assert len(token) <= MAX_CHARS
    back = decode(token, "c1", KEYS, NOW, 3600)
    assert back is not None and back.viewed[0] == big.viewed[0] and back.cart[0] == big.cart[0]


# -- through the core ---------------------------------------------------------------------------------------
class Shop:
    """The seeded shop under CPython, with a clock that can move, a queue, and a browser's cookie jar."""

    def __init__(self, built: Built, user: str | None = "c00001") -> None:
        self.built, self.clock, self.sink = built, FixedClock(NOW), InMemorySink()
        self.jar: dict[str, str] = {}
        if user:
            name, value = uid_cookie(user, issued_at=NOW).split("=", 1)
            self.jar[name] = value
        self.kv = InMemoryKV(built.records)
        self.core = Personalizer(CONFIG, self.kv, self.clock, lambda: "vsessiontest", sink=self.sink)

    def cookie(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.jar.items())

    def request(self, method: str, path: str, query: str = "", body: bytes | None = b"",
                headers: dict[str, str] | None = None) -> Any:
        hdrs = {"cookie": self.cookie(), "user-agent": BROWSER, "content-type": "text/plain;charset=UTF-8",
                **(headers or {})}
        reply = asyncio.run(self.core.handle(method, path, query, hdrs, body))
        for k, v in reply.headers:
            if k == "set-cookie":
                name, value = v.split(";")[0].split("=", 1)
                if "Max-Age=0" in v:
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = value
        return reply

    def beacon(self, *events: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", "/v1/events", body=json.dumps({"events": list(events)}).encode(),
                            headers=headers)

    def get(self, path: str, query: str) -> dict[str, Any]:
        reply = self.request("GET", path, query)
        assert reply.status == 200
        return json.loads(reply.body)  # type: ignore[no-any-return]


def gen(built: Built) -> str:
    return Manifest.parse(codec.decode(built.records[keys.MANIFEST], expect="manifest")).generation


def item_record(built: Built, item: str) -> ItemRecord:
    return ItemRecord.parse(codec.decode(built.records[keys.item(gen(built), item)], expect="item"))


def profile_of(built: Built, user: str) -> Profile:
    return Profile.parse(codec.decode(built.records[keys.profile(user)], expect="profile"))


def unseen_items(built: Built, user: str, n: int) -> list[str]:
    """Items the user has not bought, viewed recently or carted, in stock, with neighbours."""
    prof = profile_of(built, user)
    mine = prof.bought | {c.id for c in (*prof.cart, *prof.recent, *prof.cards)}
    out = []
    prefix = keys.item(gen(built), "x")[:-1]
    for key in sorted(k for k in built.records if k.startswith(prefix)):
        rec = item_record(built, key[len(prefix):])
        if rec.item not in mine and len(rec.also_bought) >= 4 and len(rec.complements) >= 4:
            out.append(rec.item)
        if len(out) == n:
            return out
    raise AssertionError("seed too small")


def test_a_view_leads_recent_at_once(built: Built) -> None:
    shop = Shop(built)
    a, b = unseen_items(built, "c00001", 2)
    history = [i["id"] for i in shop.get("/v1/recommendations", "slot=recent")["items"]]
    shop.beacon(ev("view", NOW - 2, item=a), ev("view", NOW - 1, item=b))
    assert SESSION in shop.jar
    body = shop.get("/v1/recommendations", "slot=recent")
    assert body["tier"] == "user" and [i["id"] for i in body["items"]] == [b, a, *history][:12]


def test_home_leans_towards_what_was_just_viewed(built: Built) -> None:
    shop = Shop(built)
    (a,) = unseen_items(built, "c00001", 1)
    before = [i["id"] for i in shop.get("/v1/recommendations", "slot=home")["items"]]
    shop.beacon(ev("view", NOW - 1, item=a))
    after = [i["id"] for i in shop.get("/v1/recommendations", "slot=home")["items"]]
    neighbours = [c.id for c in item_record(built, a).also_bought]
    prof = profile_of(built, "c00001")
    first_new = next(i for i in neighbours if i not in prof.bought and i not in {c.id for c in prof.cart})
    assert after != before and after[0] == first_new


def test_the_live_cart_drives_complements_exclusions_and_the_reminder(built: Built) -> None:
    shop = Shop(built, "c00003")
    (item,) = unseen_items(built, "c00003", 1)
    shop.beacon(ev("add_to_cart", NOW, item=item, quantity=1))
    cart = shop.get("/v1/recommendations", "slot=cart")
    expected = [c.id for c in item_record(built, item).complements]
    assert cart["tier"] == "user" and cart["items"][0]["id"] in expected[:3]
    for slot in ("home", "recent"):
        assert item not in [i["id"] for i in shop.get("/v1/recommendations", f"slot={slot}")["items"]]
    assert shop.get("/v1/banner", "slot=hero")["banner"]["id"] != "cart-reminder"  # not yet: the delay
    shop.clock.t = NOW + 7 * 3600  # past cart_reminder_after_s (6 h)
    hero = shop.get("/v1/banner", "slot=hero")
    card = item_record(built, item).card
    assert card is not None and hero["banner"]["id"] == "cart-reminder"
    assert card.title in hero["banner"]["title"] + hero["banner"]["body"]


def test_a_new_visitor_gets_a_session_too(built: Built) -> None:
    shop = Shop(built, user=None)
    (a,) = unseen_items(built, "c00001", 1)
    shop.beacon(ev("view", NOW, item=a))
    assert "pz_vid" in shop.jar and SESSION in shop.jar
    body = shop.get("/v1/recommendations", "slot=recent")
    assert body["tier"] == "user" and body["items"][0]["id"] == a


@pytest.mark.parametrize("value", ["v1.bm9wZQ.1.sig", "x" * 5000, "v1.%%%.1.x"], ids=["forged", "oversized", "junk"])
def test_a_forged_or_oversized_state_is_ignored_on_reads(built: Built, value: str) -> None:
    plain, forged = Shop(built), Shop(built)
    forged.jar[SESSION] = value
    for path, query in (("/v1/recommendations", "slot=recent"), ("/v1/page", "slots=hero,home,cart")):
        assert forged.get(path, query) == plain.get(path, query)


def test_consent_denied_sets_no_state_and_clears_one(built: Built) -> None:
    shop = Shop(built)
    (a,) = unseen_items(built, "c00001", 1)
    shop.beacon(ev("view", NOW, item=a), headers={"sec-gpc": "1"})
    assert SESSION not in shop.jar
    shop.beacon(ev("view", NOW, item=a))
    assert SESSION in shop.jar
    shop.jar["pz_consent"] = "denied"
    reply = shop.beacon(ev("view", NOW, item=a))
    assert json.loads(reply.body)["stored"] == 0 and SESSION not in shop.jar


def test_robots_do_not_move_the_session(built: Built) -> None:
    shop = Shop(built)
    (a,) = unseen_items(built, "c00001", 1)
    shop.beacon(ev("view", NOW, item=a), headers={"sec-purpose": "prefetch"})
    assert SESSION not in shop.jar
