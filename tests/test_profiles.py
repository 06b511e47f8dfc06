"""The profile stage's ranking: ``top_k``'s total order, and the batch's lists for many people at once being the
lists the origin computes for one person on a miss."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from personalizer_adapters.batch.build import fit_model
from personalizer_adapters.batch.inputs import load_shop
from personalizer_adapters.batch.model import (
    again_entries,
    again_lists,
    history,
    order_keys,
    personal_list,
    personal_lists,
    quantities,
    top_k,
)
from personalizer_adapters.batch.seed import load_config
from personalizer_adapters.batch.seedgen import Shop, generate
from tests.runtime.harness import ROOT

CFG = ROOT / "kv-seed" / "seed.toml"


def test_top_k_breaks_ties_at_the_kth_score_by_index() -> None:
    rng = np.random.default_rng(7)
    for _ in range(500):  # few distinct scores: ties at the k-th best are the rule here, not the exception
        n, k = int(rng.integers(1, 80)), int(rng.integers(1, 12))
        scores = rng.integers(-2, 4, n).astype(np.float64)
        exclude = rng.random(n) < 0.2
        kept = np.where(exclude, -np.inf, scores)
        want = [i for i in sorted(range(n), key=lambda i: (-kept[i], i)) if kept[i] > 0][:k]
        assert top_k(scores, k, exclude).tolist() == want
    many = np.ones(5000)  # 5,000 equal scores: the first k indices, whatever the partition picked
    assert top_k(many, 3).tolist() == [0, 1, 2]


def _shops() -> list[tuple[str, Shop, dict[str, Any]]]:
    from tests.data import realdata

    seed_cfg = {**load_config(CFG), "products": 600, "shoppers": 1500, "kv_profiles": 1500}
    catalog, ratings = realdata.load("movielens-100k")
    movielens, _ = load_shop(catalog, ratings, None, strict=False, now=None)
    return [("seed", generate(seed_cfg), seed_cfg), ("movielens-100k", movielens, load_config(CFG))]


VARIANTS: dict[str, dict[str, Any]] = {
    "as built": {}, "distinct history": {"history": "distinct"}, "similarity only": {"personal_source": "similarity"},
    "popularity": {"personal_source": "popularity"}, "taste and recency": {"taste_weight": 3.0,
                                                                         "recency_half_life": 2.0}}


@pytest.mark.parametrize("similarity", ["ease", "knn"])
def test_lists_for_many_people_at_once_are_each_persons_own(similarity: str) -> None:
    """The build computes the lists of thousands of people together; the origin computes one person's on a miss.
    Every person's category affinity (to the bit) and list agree, on the seed and on MovieLens, whatever the
    model's settings."""
    for name, shop, cfg in _shops():
        model = fit_model(shop, {**cfg, "ease_max_items": 20_000 if similarity == "ease" else 0}).model
        ev = shop.events
        order = np.lexsort((ev["ts"], ev["shopper"]))  # by person, in time order (stable, as a profile sorts)
        ev = ev[order]
        people = len(shop.shoppers)
        for variant, changes in VARIANTS.items():
            m = replace(model, **changes)
            affinity, lists = personal_lists(m, ev["shopper"], ev["product"], ev["kind"], people)
            bounds = np.searchsorted(ev["shopper"], np.arange(people + 1))
            filled = 0
            for s in range(people):
                mine = ev[bounds[s]:bounds[s + 1]]
                if not len(mine):
                    assert not len(lists[s]) and not affinity[s].any()
                    continue
                items, x, own_affinity = history(m, mine["product"], mine["kind"])
                assert affinity[s].tobytes() == own_affinity.tobytes(), (name, variant, s)
                assert lists[s].tolist() == personal_list(m, items, x, own_affinity).tolist(), (name, variant, s)
                filled += len(lists[s]) > 0
            assert filled > people // 2, (name, variant)


def _orders_shops() -> list[tuple[str, Shop, dict[str, Any]]]:
    """Shops with re-buys: the seed; Instacart (orders by time); The Complete Journey (quantities, order keys)."""
    from tests.data import realdata

    seed_cfg = {**load_config(CFG), "products": 600, "shoppers": 1500, "kv_profiles": 1500}
    out = [("seed", generate(seed_cfg), seed_cfg)]
    for name, people in (("instacart", 10**9), ("completejourney", 300)):
        catalog, events = realdata.load(name)
        shop, _ = load_shop(catalog, events, None, strict=False, now=None)
        keep = shop.events["shopper"] < people
        out.append((name, Shop(shop.products, shop.shoppers[:people], shop.events[keep], shop.now),
                    {**load_config(CFG), "ease_max_items": 0}))
    return out


def test_buy_it_again_for_many_people_at_once_is_each_persons_own() -> None:
    """The batch's "buy it again" entries for a group of people are the entries the origin computes for one."""
    for name, shop, cfg in _orders_shops():
        model = fit_model(shop, cfg).model
        ev = shop.events[np.lexsort((shop.events["ts"], shop.events["shopper"]))]
        names = ev.dtype.names or ()
        people = len(shop.shoppers)
        bounds = np.searchsorted(ev["shopper"], np.arange(people + 1))
        for half_life in (1.0, model.again_half_life, 20.0):
            m = replace(model, again_half_life=half_life)
            together = again_lists(m, ev["shopper"], ev["product"], ev["kind"], ev["ts"],
                                   ev["qty"] if "qty" in names else None, ev["order"] if "order" in names else None,
                                   people)
            filled = 0
            for s in range(people):
                mine = ev[bounds[s]:bounds[s + 1]]
                own = again_entries(m, mine["product"], mine["kind"], mine["ts"], quantities(mine),
                                    order_keys(mine))
                assert together[s] == own, (name, half_life, s)
                filled += bool(own)
            assert filled > 20, (name, half_life)
