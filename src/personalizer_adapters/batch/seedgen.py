"""A believable, deterministic shop: catalog, shoppers with latent tastes, and their interaction events."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

# category -> (price range in cents, nouns); complements are the categories bought alongside.
CATEGORIES: dict[str, tuple[tuple[int, int], tuple[str, ...]]] = {
    "running-shoes": ((5900, 18900), ("Road Runner", "Tempo Trainer", "Marathon Racer")),
    "trail-shoes": ((7900, 21900), ("Trail Runner", "Fell Shoe", "Mountain Racer")),
    "running-apparel": ((1900, 8900), ("Singlet", "Running Tights", "Wind Shell")),
    "socks": ((900, 2900), ("Running Socks", "Merino Socks", "Hiking Socks")),
    "watches": ((9900, 59900), ("GPS Watch", "Multisport Watch", "Heart Rate Strap")),
    "rain-jackets": ((8900, 34900), ("Rain Jacket", "Hardshell", "Packable Shell")),
    "backpacks": ((4900, 27900), ("Daypack", "Trekking Pack", "Hydration Pack")),
    "tents": ((12900, 69900), ("Backpacking Tent", "Family Tent", "Bivy Shelter")),
    "sleeping-bags": ((7900, 44900), ("Down Bag", "Synthetic Bag", "Liner")),
    "camp-kitchen": ((1900, 16900), ("Camp Stove", "Cook Set", "Fuel Canister")),
    "headlamps": ((1900, 11900), ("Headlamp", "Lantern", "Rechargeable Torch")),
    "hydration": ((900, 5900), ("Water Bottle", "Filter Bottle", "Soft Flask")),
    "cycling-helmets": ((4900, 24900), ("Road Helmet", "MTB Helmet", "Commuter Helmet")),
    "bike-lights": ((1900, 14900), ("Front Light", "Rear Light", "Light Set")),
    "cycling-apparel": ((2900, 17900), ("Bib Shorts", "Jersey", "Cycling Jacket")),
    "yoga": ((1900, 12900), ("Yoga Mat", "Yoga Block", "Yoga Strap")),
    "strength": ((2900, 39900), ("Kettlebell", "Dumbbell Set", "Resistance Bands")),
    "swim": ((1900, 9900), ("Swimsuit", "Goggles", "Swim Cap")),
    "climbing": ((2900, 19900), ("Climbing Shoe", "Harness", "Chalk Bag")),
    "ski": ((9900, 69900), ("Ski Jacket", "Ski Goggles", "Ski Gloves")),
    "sunglasses": ((3900, 21900), ("Sport Sunglasses", "Glacier Glasses", "Photochromic Shades")),
    "trekking-poles": ((3900, 17900), ("Trekking Poles", "Carbon Poles", "Folding Poles")),
    "hammocks": ((2900, 12900), ("Hammock", "Hammock Tarp", "Tree Straps")),
    "nutrition": ((300, 3900), ("Energy Gel", "Protein Bar", "Electrolyte Tabs")),
}
COMPLEMENTS: dict[str, tuple[str, ...]] = {
    "running-shoes": ("socks", "running-apparel", "watches"), "trail-shoes": ("socks", "hydration", "backpacks"),
    "running-apparel": ("running-shoes", "hydration"), "socks": ("running-shoes", "trail-shoes"),
    "watches": ("running-apparel", "nutrition"), "rain-jackets": ("backpacks", "trekking-poles"),
    "backpacks": ("hydration", "rain-jackets", "headlamps"), "tents": ("sleeping-bags", "camp-kitchen", "headlamps"),
    "sleeping-bags": ("tents", "headlamps"), "camp-kitchen": ("tents", "hydration"),
    "headlamps": ("tents", "backpacks"), "hydration": ("backpacks", "nutrition"),
    "cycling-helmets": ("bike-lights", "cycling-apparel", "sunglasses"), "bike-lights": ("cycling-helmets",),
    "cycling-apparel": ("cycling-helmets", "nutrition"), "yoga": ("strength",), "strength": ("yoga", "nutrition"),
    "swim": ("nutrition", "sunglasses"), "climbing": ("backpacks", "hydration"), "ski": ("sunglasses", "backpacks"),
    "sunglasses": ("cycling-helmets", "running-apparel"), "trekking-poles": ("backpacks", "rain-jackets"),
    "hammocks": ("tents", "headlamps"), "nutrition": ("hydration", "running-apparel"),
}
BRANDS = ("Alpenfuchs", "Nordkap", "Ridgeline", "Kestrel", "Summit & Co", "Fjellstad", "Brisa", "Tundra",
          "Velox", "Sendero", "Marmota", "Cairn")
ADJECTIVES = ("Ultralight", "Pro", "Classic", "Essential", "Storm", "Aero", "Trail", "Everyday", "Peak",
              "Tempo", "Expedition", "Flow")
LOYALTY = ("", "silver", "gold", "platinum")
REPLENISHABLE = ("nutrition", "socks", "hydration")  # what people run out of and buy again
EVENT_KINDS = ("view", "add_to_cart", "purchase")


@dataclass(frozen=True)
class Shop:
    products: list[dict[str, Any]]
    shoppers: list[dict[str, Any]]
    events: npt.NDArray[Any]  # structured: shopper (int32), product (int32), kind (int8), ts (int64)
    now: int
    current_prices: dict[int, int] | None = None  # product index -> current price, where it dropped (None: synthetic)

    def without(self, people: set[str] | frozenset[str]) -> Shop:
        """The same shop with every event of ``people`` removed: how erased (tombstoned) people stay out."""
        if not people or not len(self.events):
            return self
        gone = np.array([s["id"] in people for s in self.shoppers])
        return replace(self, events=self.events[~gone[self.events["shopper"]]])


def generate(cfg: dict[str, Any]) -> Shop:
    rng = random.Random(cfg["seed"])
    nrng = np.random.default_rng(cfg["seed"])
    cats = list(CATEGORIES)
    products: list[dict[str, Any]] = []
    for i in range(cfg["products"]):
        cat = cats[i % len(cats)]
        (lo, hi), nouns = CATEGORIES[cat]
        pid = f"p{i + 1:05d}"
        products.append({
            "id": pid, "category": cat, "currency": cfg["currency"],
            "title": f"{rng.choice(BRANDS)} {rng.choice(ADJECTIVES)} {rng.choice(nouns)}",
            "price": rng.randrange(lo, hi, 100) + 99 - 100 if hi > lo else lo,
            "url": f"{cfg['url_base']}{pid}", "image": f"{cfg['image_base']}{pid}.svg",
            "stock": 0 if rng.random() < 0.03 else rng.randrange(1, 400),
        })
    by_cat: dict[str, list[int]] = {c: [] for c in cats}
    for idx, p in enumerate(products):
        by_cat[p["category"]].append(idx)
    # Within a category, popularity is Zipf-like: a few products take most of the attention.
    cat_weights = {c: np.array([1.0 / (r + 1) ** 0.9 for r in range(len(ix))]) for c, ix in by_cat.items()}
    for c in cats:
        nrng.shuffle(by_cat[c])

    shoppers: list[dict[str, Any]] = []
    rows: list[tuple[int, int, int, int]] = []
    now = cfg["now"]
    for s in range(cfg["shoppers"]):
        taste = nrng.dirichlet(np.full(len(cats), 0.15))  # latent: concentrated on a few categories
        activity = int(nrng.pareto(1.6) * 8) + 1
        loyalty = LOYALTY[min(3, int(nrng.pareto(2.5)))] if activity > 3 else ""
        shoppers.append({"id": f"c{s + 1:05d}", "taste": [round(float(t), 4) for t in taste],
                         "loyalty": loyalty})
        t = now - int(nrng.integers(0, 90 * 86400))
        for _ in range(min(activity, 120)):
            cat = cats[int(nrng.choice(len(cats), p=taste))]
            w = cat_weights[cat]
            prod = by_cat[cat][int(nrng.choice(len(w), p=w / w.sum()))]
            t = min(now - 60, t + int(nrng.exponential(86400)))
            rows.append((s, prod, 0, t))
            r = nrng.random()
            if r < 0.12:
                rows.append((s, prod, 1, t + 30))
                if r < 0.06 and products[prod]["stock"] > 0:
                    rows.append((s, prod, 2, t + 600))
                    for comp in COMPLEMENTS[cat][:1]:
                        if nrng.random() < 0.5:
                            cw = cat_weights[comp]
                            other = by_cat[comp][int(nrng.choice(len(cw), p=cw / cw.sum()))]
                            rows.append((s, other, 2, t + 660))
    rows += replenishments(cfg, products, by_cat, len(shoppers), now)
    events = np.array(rows, dtype=[("shopper", "i4"), ("product", "i4"), ("kind", "i1"), ("ts", "i8")])
    events.sort(order=["ts", "shopper"], kind="stable")
    return Shop(products, shoppers, events, now)


def replenishments(cfg: dict[str, Any], products: list[dict[str, Any]], by_cat: dict[str, list[int]], shoppers: int,
                   now: int) -> list[tuple[int, int, int, int]]:
    """Staples bought on a cycle: a quarter of the shoppers re-buy one popular gel, sock or bottle every two
    to six weeks (what "buy it again" and the restock banner are for). A random stream of its own, so the
    rest of the shop is the same with or without it."""
    rng = np.random.default_rng(cfg["seed"] + 7)
    rows = []
    for s in range(shoppers):
        if rng.random() >= 0.25:
            continue
        cat = REPLENISHABLE[int(rng.integers(len(REPLENISHABLE)))]
        prod = by_cat[cat][int(rng.integers(min(8, len(by_cat[cat]))))]  # one of the category's best sellers
        every = int(rng.integers(14, 43)) * 86400
        t = now - int(rng.integers(30, 180)) * 86400
        while products[prod]["stock"] > 0 and t < now - 3600:
            rows.append((s, prod, 2, t))
            t += int(every * rng.uniform(0.8, 1.2))
    return rows
