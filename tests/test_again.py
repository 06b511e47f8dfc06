"""Buy it again: due-ness, ranking, repurchase facts, the next-basket protocol and its baselines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from personalizer import InMemoryKV, Personalizer, codec, keys
from personalizer.again import DUE_FLOOR, RATE_FLOOR, Rebuy, due, most_due, rank
from personalizer.errors import DecodeError
from personalizer.records import Card, Settings
from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.inputs import load_shop
from personalizer_adapters.batch.seedgen import Shop
from personalizer_adapters.quality.holdout import last_basket_split
from personalizer_adapters.quality.nextbasket import tifu_knn, tifu_vectors
from tests.conftest import CONFIG, FixedClock, uid_cookie

DAY = 86_400


def card(i: int) -> Card:
    return Card(f"p{i}", f"Item {i}", f"/p/p{i}", f"https://i/p{i}.jpg", 100, "EUR", "c")


def events(rows: list[tuple[int, int, int, int]]) -> np.ndarray:  # type: ignore[type-arg]
    return np.array(rows, dtype=[("shopper", "i4"), ("product", "i4"), ("kind", "i1"), ("ts", "i8")])


def test_due_rises_to_one_at_the_interval_then_fades() -> None:
    """Just bought: the floor; at its interval: 1; long overdue: fading; no interval known: 1."""
    assert due(0, 10 * DAY) == pytest.approx(DUE_FLOOR)
    assert due(5 * DAY, 10 * DAY) == pytest.approx(DUE_FLOOR + (1 - DUE_FLOOR) / 2)
    assert due(10 * DAY, 10 * DAY) == due(40 * DAY, 10 * DAY) == 1.0
    assert due(80 * DAY, 10 * DAY) == pytest.approx(0.5)
    assert due(3 * DAY, 0) == 1.0


def test_rank_weighs_frequency_rate_and_due() -> None:
    """A staple due now beats a more frequent item just bought; the score is weight x (floor + rate) x due."""
    now = 100 * DAY
    staple = Rebuy(card(1), 2.0, now - 14 * DAY, 14 * DAY, 0.8)      # due: 2 x 1.8 x 1 = 3.6
    just_bought = Rebuy(card(2), 3.0, now - 1 * DAY, 30 * DAY, 0.8)  # 3 x 1.8 x (0.3 + 0.7/30) = 1.75
    rare = Rebuy(card(3), 1.0, now - 20 * DAY, 20 * DAY, 0.0)        # 1 x 1.0 x 1 = 1.0
    assert [c.id for c in rank([just_bought, rare, staple], now)] == ["p1", "p2", "p3"]
    assert RATE_FLOOR == 1.0


def test_most_due_is_a_regular_item_that_is_due() -> None:
    """The restock banner's item: re-bought by many, bought more than once, at or past its interval."""
    now = 100 * DAY
    not_yet = Rebuy(card(1), 3.0, now - 2 * DAY, 14 * DAY, 0.9)
    few_rebuy = Rebuy(card(2), 3.0, now - 30 * DAY, 14 * DAY, 0.1)
    due_now = Rebuy(card(3), 2.0, now - 15 * DAY, 14 * DAY, 0.6)
    forgotten = Rebuy(card(4), 5.0, now - 300 * DAY, 14 * DAY, 0.9)
    assert most_due([not_yet, few_rebuy, due_now, forgotten], now) == due_now
    assert most_due([not_yet, few_rebuy], now) is None


def test_last_basket_split_by_hand() -> None:
    """The last basket (purchases within an hour) is held out with everything after its start."""
    ev = events([(0, 0, 2, 0), (0, 1, 2, 10), (0, 0, 2, 5 * DAY), (0, 2, 0, 9 * DAY), (0, 0, 2, 9 * DAY + 60),
                 (0, 3, 2, 9 * DAY + 120), (1, 4, 2, DAY)])
    shop = Shop([{"id": f"p{i}"} for i in range(5)], [{"id": "a"}, {"id": "b"}], ev, 10 * DAY)
    split = last_basket_split(shop)
    assert split.targets == {0: frozenset({0, 3})} and split.before == {0: frozenset({0, 1})}
    assert split.at == {0: 9 * DAY + 60} and split.too_few == 1  # b has one basket
    assert sorted(split.train.events["ts"].tolist()) == [0, 10, DAY, 5 * DAY, 9 * DAY]  # the view before stays


def test_tifu_knn_by_hand() -> None:
    """A's baskets {0}, {1}, {0, 1} (groups of 2 from the newest, rb = rg = 0.5): u_A = [0.5, 0.375, 0];
    B's one basket {2}: u_B = [0, 0, 1]; with one neighbour and alpha 0.5, A's scores are their average."""
    ev = events([(0, 0, 2, 0), (0, 1, 2, DAY), (0, 0, 2, 2 * DAY), (0, 1, 2, 2 * DAY), (1, 2, 2, 0)])
    shop = Shop([{"id": f"p{i}"} for i in range(3)], [{"id": "a"}, {"id": "b"}], ev, 3 * DAY)
    u = tifu_vectors(shop, group=2, rb=0.5, rg=0.5).toarray()
    assert u[0].tolist() == pytest.approx([0.5, 0.375, 0.0]) and u[1].tolist() == pytest.approx([0, 0, 1])
    scores = tifu_knn(shop, k_neighbours=1, alpha=0.5, group=2, rb=0.5, rg=0.5).toarray()
    assert scores[0].tolist() == pytest.approx([0.25, 0.1875, 0.5])


def again_customer(built: Built) -> tuple[str, dict]:  # type: ignore[type-arg]
    """A seeded customer with something to buy again and nothing in the cart."""
    for key, value in sorted(built.records.items()):
        if key.startswith("pz1:p:"):
            data = codec.decode(value, expect="profile").data
            if len(data["again"]) >= 2 and not data["cart"]:
                return data["id"], data
    raise AssertionError("the seed has no re-buyer")


def test_again_slot_ranks_the_profile_with_the_request_clock(built: Built) -> None:
    """slot=again: the user tier, in the order again.rank gives at the request's time, re-bought items kept."""
    who, data = again_customer(built)
    now = 1_793_491_200 + 3 * DAY
    core = Personalizer(CONFIG, InMemoryKV(built.records), FixedClock(now), lambda: "v")
    reply = asyncio.run(core.handle("GET", "/v1/recommendations", "slot=again&limit=4",
                                    {"cookie": uid_cookie(who, issued_at=now)}))
    body = json.loads(reply.body)
    expected = [c.id for c in rank([Rebuy.parse(e) for e in data["again"]], now)]
    assert reply.status == 200 and body["tier"] == "user"
    assert [i["id"] for i in body["items"]][:len(expected)] == expected[:4]
    assert set(expected) & set(data["bought"])  # what they bought is exactly what this slot is for


@pytest.mark.parametrize("floor", [0.0, 1.0])
def test_the_manifests_due_floor_orders_the_again_slot(built: Built, floor: float) -> None:
    """The build tunes the due floor and ships it in the manifest's settings; the edge ranks with it."""
    who, data = again_customer(built)
    now = 1_793_491_200 + 3 * DAY
    manifest = codec.decode(built.records[keys.MANIFEST], expect="manifest").data
    records = {**built.records, keys.MANIFEST: codec.encode("manifest", {
        **manifest, "settings": {**manifest["settings"], "again_due_floor": floor}}, generation=None,
        produced_at=now)}
    core = Personalizer(CONFIG, InMemoryKV(records), FixedClock(now), lambda: "v")
    reply = asyncio.run(core.handle("GET", "/v1/recommendations", "slot=again&limit=24",
                                    {"cookie": uid_cookie(who, issued_at=now)}))
    entries = [Rebuy.parse(e) for e in data["again"]]
    expected = [c.id for c in rank(entries, now, floor)]
    assert [i["id"] for i in json.loads(reply.body)["items"]][:len(expected)] == expected
    assert Settings.parse({"again_due_floor": floor}).again_due_floor == floor


def test_a_due_floor_out_of_range_is_a_corrupt_manifest() -> None:
    for bad in (1.5, -0.1, "0.3", True, None):
        with pytest.raises(DecodeError):
            Settings.parse({"again_due_floor": bad})
    assert Settings.parse({}).again_due_floor == DUE_FLOOR


def test_the_due_floor_changes_the_order() -> None:
    """Just bought vs due: with floor 1 due-ness no longer matters, with floor 0 a just-bought item sinks."""
    now = 100 * DAY
    staple = Rebuy(card(1), 2.0, now - 14 * DAY, 14 * DAY, 0.8)
    just_bought = Rebuy(card(2), 3.0, now - 1 * DAY, 30 * DAY, 0.8)
    assert [c.id for c in rank([staple, just_bought], now, 1.0)] == ["p2", "p1"]
    assert [c.id for c in rank([staple, just_bought], now, 0.0)] == ["p1", "p2"]


def test_again_slot_without_history_is_the_segments_rebuys(built: Built) -> None:
    """Someone with nothing to re-buy: the popular (or segment) re-buys, never a durable nobody re-buys."""
    core = Personalizer(CONFIG, InMemoryKV(built.records), FixedClock(), lambda: "v")
    reply = asyncio.run(core.handle("GET", "/v1/recommendations", "slot=again", {}))
    body = json.loads(reply.body)
    popular = codec.decode(built.records[keys.popular(built.generation)], expect="popular").data
    assert body["tier"] == "popular" and [i["id"] for i in body["items"]] == [c[0] for c in popular["again"]][:12]
    assert all(c[6] in ("nutrition", "socks", "hydration") for c in popular["again"][:5])


def test_again_leaves_out_the_cart(built: Built) -> None:
    """Items in the cart never appear in slot=again."""
    who, data = again_customer(built)
    first = data["again"][0][0]
    profile = codec.encode("profile", {**data, "cart": [first]})
    core = Personalizer(CONFIG, InMemoryKV({**built.records, keys.profile(who): profile}), FixedClock(), lambda: "v")
    reply = asyncio.run(core.handle("GET", "/v1/recommendations", "slot=again", {"cookie": uid_cookie(who)}))
    assert first[0] not in [i["id"] for i in json.loads(reply.body)["items"]]


def test_restock_banner_names_the_item_that_is_due(built: Built) -> None:
    """A regular purchase past its interval: the restock rule wins over lower-priority rules."""
    who, data = again_customer(built)
    entry = [*data["again"][0]]
    entry[1], entry[2], entry[3], entry[4] = 3.0, 1_000_000, 14 * DAY, 0.9   # bought regularly, due long ago
    now = 1_000_000 + 20 * DAY
    profile = codec.encode("profile", {**data, "again": [entry], "cart": []})
    core = Personalizer(CONFIG, InMemoryKV({**built.records, keys.profile(who): profile}), FixedClock(now),
                        lambda: "v")
    reply = asyncio.run(core.handle("GET", "/v1/banner", "slot=hero", {"cookie": uid_cookie(who, issued_at=now)}))
    banner = json.loads(reply.body)["banner"]
    assert banner["id"] == "restock" and entry[0][1] in banner["title"]


def test_next_basket_on_real_orders_beats_p_topfreq(tmp_path: Path) -> None:
    """Instacart (real orders), a slice of 200 people: again beats P-TopFreq on the whole next basket."""
    from personalizer_adapters.batch.seed import load_config
    from personalizer_adapters.quality.nextbasket import evaluate_next_basket
    from tests.data import realdata
    from tests.runtime.harness import ROOT

    catalog, orders = realdata.load("instacart")
    lines = orders.read_text().splitlines()
    people = {line.split(",")[0] for line in lines[1:]}
    keep = set(sorted(people, key=lambda p: int(p[1:]))[:200])
    (tmp_path / "e.csv").write_text("\n".join([lines[0]] + [x for x in lines[1:] if x.split(",")[0] in keep]))
    shop, _ = load_shop(catalog, tmp_path / "e.csv", None, strict=False, now=None)
    cfg = {**load_config(ROOT / "kv-seed" / "seed.toml"), "ease_max_items": 0}
    result = evaluate_next_basket(shop, cfg)
    assert result.people > 150
    assert result.ndcg("again (buy it again)") > result.ndcg("P-TopFreq") > 3 * result.ndcg("G-TopFreq")


@pytest.mark.edge
def test_again_through_the_edge_on_real_orders(tmp_path: Path) -> None:
    """Real orders built with `personalizer build`, pushed to local KV: the live edge answers slot=again per
    person exactly as the core does over the same records."""
    import re
    import time

    import httpx

    from personalizer_adapters.kv.plan import Build
    from tests.conftest import TEST_KEY
    from tests.data import realdata
    from tests.runtime.harness import ROOT, edge_runtime
    from tests.test_push_local import cli

    catalog, orders = realdata.load("instacart")
    lines = orders.read_text().splitlines()
    keep = set(sorted({x.split(",")[0] for x in lines[1:]}, key=lambda p: int(p[1:]))[:60])
    mine = [x for x in lines[1:] if x.split(",")[0] in keep]
    (tmp_path / "orders.csv").write_text("\n".join([lines[0], *mine]))
    # the catalog cut to the products these people bought (a push to local KV costs ~1 ms a key)
    bought = {x.split(",")[1] for x in mine}
    products = catalog.read_text().splitlines()
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("\n".join([products[0], *(x for x in products[1:] if x.split(",")[0] in bought)]))
    config = tmp_path / "config.toml"  # cosine neighbours: this test is about the again slot, not EASE
    config.write_text(re.sub(r"(?m)^ease_max_items = .*$", "ease_max_items = 0",
                             (ROOT / "kv-seed" / "seed.toml").read_text()))
    out, kv = tmp_path / "build", tmp_path / "kv"
    made = cli("build", "--catalog", str(catalog), "--events", str(tmp_path / "orders.csv"), "--out", str(out),
               "--config", str(config), "--tombstones", str(tmp_path / "none.txt"))
    assert made.returncode == 0, made.stderr
    pushed = cli("push", "--build", str(out), "--target", "local", "--persist", str(kv), "--state-dir",
                 str(tmp_path / "state"), "--tombstones", str(tmp_path / "none.txt"))
    assert pushed.returncode == 0, pushed.stderr
    records = Build.load(out).records
    people = sorted(keep)[:6]
    with edge_runtime(kv, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _), \
            httpx.Client(base_url=url, timeout=30) as edge:
        for who in people:
            now = time.time()
            live = edge.get("/v1/recommendations?slot=again", headers={"cookie": uid_cookie(who)}).json()
            core = Personalizer(CONFIG, InMemoryKV(records), FixedClock(now), lambda: "v")
            reply = asyncio.run(core.handle("GET", "/v1/recommendations", "slot=again",
                                            {"cookie": uid_cookie(who, issued_at=int(now))}))
            assert live["tier"] == "user" and live["items"] == json.loads(reply.body)["items"]
            assert len(live["items"]) == 12
