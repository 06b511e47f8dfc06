"""Build a generation's v1 records from a catalog and interaction events (numpy, no per-event loops)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from personalizer import codec, keys
from personalizer.records import Card

from .model import CART, EVENT_WEIGHT, Model, profile_payload, top_k
from .seedgen import COMPLEMENTS, Shop

NEIGHBOURS_K = 50  # similar items kept per item: the personal list's reach


@dataclass(frozen=True)
class Built:
    generation: str
    records: dict[str, bytes]   # key -> encoded value for KV: shared records, pushed profiles, inventory, manifest
    model: Model
    fallback_cards: list[list[Any]]
    fallback_banner: dict[str, Any]


def _card(p: dict[str, Any]) -> list[Any]:
    """A product as a v1 card: [id, title, url, image, price (cents), currency, category]."""
    return Card(p["id"], p["title"], p["url"], p["image"], p["price"], p["currency"], p["category"]).payload()


def by_shopper(events: npt.NDArray[Any], shoppers: int) -> list[npt.NDArray[Any]]:
    """Events split per shopper index (one stable sort, no per-event Python work)."""
    ordered = events[np.argsort(events["shopper"], kind="stable")]
    bounds = np.searchsorted(ordered["shopper"], np.arange(shoppers + 1))
    return [ordered[bounds[i]:bounds[i + 1]] for i in range(shoppers)]


def banner_rules(categories: list[str]) -> list[dict[str, Any]]:
    """The seeded banner set: every rule kind, with A/B variants where a retailer would test copy."""
    def v(vid: str, w: int, title: str, body: str, cta: str, url: str) -> dict[str, Any]:
        return {"id": vid, "weight": w, "title": title, "body": body, "cta": cta, "url": url,
                "image": f"https://img.pz-demo-shop.test/banners/{vid}.jpg"}
    rules = [
        {"id": "cart-reminder", "kind": "cart_reminder", "priority": 100, "match": "", "variants": [
            v("cart-a", 50, "Still thinking about the {item}?", "Your cart is saved. Finish your order today.",
              "Back to cart", "/cart"),
            v("cart-b", 50, "Your {item} is waiting", "Free returns for 60 days on everything in your cart.",
              "Complete order", "/cart")]},
        {"id": "price-drop", "kind": "price_drop", "priority": 90, "match": "", "variants": [
            v("drop-a", 1, "Price drop: {item}", "Something you looked at just got cheaper.", "See the deal",
              "/deals/watched")]},
        {"id": "intro-offer", "kind": "new_visitor", "priority": 40, "match": "", "variants": [
            v("intro-10", 50, "Welcome: 10% off your first order", "Sign up and save on your first gear.",
              "Claim 10%", "/welcome"),
            v("intro-ship", 25, "Free shipping on your first order", "No minimum. Outdoor gear, delivered.",
              "Start shopping", "/welcome"),
            v("intro-guide", 25, "New here? Find your gear", "Take the 2-minute quiz for picks made for you.",
              "Take the quiz", "/quiz")]},
        {"id": "generic", "kind": "generic", "priority": 0, "match": "", "variants": [
            v("season", 1, "The autumn edit", "Layers, lights and everything for shorter days.", "Shop now",
              "/c/autumn")]},
    ]
    for tier, prio in (("silver", 70), ("gold", 75), ("platinum", 80)):
        rules.append({"id": f"loyalty-{tier}", "kind": "loyalty", "priority": prio, "match": tier, "variants": [
            v(f"loyal-{tier}-a", 50, "Your {tier} rewards are ready", "Members save more this week.",
              "See rewards", "/rewards"),
            v(f"loyal-{tier}-b", 50, "Thank you, {tier} member", "Double points on your next order.",
              "Shop with points", "/rewards")]})
    for n, cat in enumerate(categories):
        if n % 2 == 0:  # "New in X" runs only where there are new arrivals: half the categories
            rules.append({"id": f"back-{cat}", "kind": "returning_category", "priority": 60, "match": cat,
                          "variants": [v(f"back-{cat}", 1, "New in {category}",
                                         "Fresh picks since your last visit.", "Explore", f"/c/{cat}")]})
        rules.append({"id": f"seg-{cat}", "kind": "segment", "priority": 50, "match": f"likes-{cat}",
                      "variants": [v(f"seg-{cat}", 1, "Made for {category} fans".replace("{category}", cat),
                                     "Top rated by shoppers like you.", "Shop the edit", f"/c/{cat}")]})
    return rules


def build(shop: Shop, cfg: dict[str, Any]) -> Built:
    P, S, now = len(shop.products), len(shop.shoppers), shop.now
    ev = shop.events
    cats = sorted({p["category"] for p in shop.products})
    cat_of = np.array([cats.index(p["category"]) for p in shop.products], dtype=np.int32)
    in_stock = np.array([p["stock"] > 0 for p in shop.products])
    oos = ~in_stock
    cards = [_card(p) for p in shop.products]
    half_life_s = cfg["half_life_days"] * 86400.0
    w = EVENT_WEIGHT[ev["kind"]] * np.exp2(-(now - ev["ts"]) / half_life_s)

    # Shopper x product interaction weights (dense is fine at seed scale: 6,000 x 2,400 float32).
    X = np.zeros((S, P), dtype=np.float32)
    np.add.at(X, (ev["shopper"], ev["product"]), w)
    # Item-item: cosine over carts+purchases for also-bought; over all weighted interactions for taste.
    B = np.zeros((S, P), dtype=np.float32)
    strong = ev[ev["kind"] >= CART]
    B[strong["shopper"], strong["product"]] = 1.0
    norms = np.sqrt((B * B).sum(0)) + 1e-9
    co = (B.T @ B) / np.outer(norms, norms)
    np.fill_diagonal(co, 0)
    xn = np.sqrt((X * X).sum(0)) + 1e-9
    sim = (X.T @ X) / np.outer(xn, xn)
    np.fill_diagonal(sim, 0)
    popularity = X.sum(0)
    neighbours = np.argsort(-sim, axis=1, kind="stable")[:, :NEIGHBOURS_K].astype(np.int32)
    weights = np.take_along_axis(sim, neighbours, axis=1).astype(np.float32)

    gen = f"g{now}-{hashlib.sha256(ev.tobytes() + repr(cfg).encode()).hexdigest()[:8]}"
    model = Model(gen, now, half_life_s, cfg["personal_list"], cards, cats, cat_of, in_stock, neighbours, weights)
    rec: dict[str, bytes] = {}

    def put(key: str, kind: str, data: dict[str, Any], generation: str | None = gen) -> None:
        rec[key] = codec.encode(kind, data, generation=generation, produced_at=now)

    # Profiles first: their segments define segment membership. Only the first `kv_profiles` shoppers are
    # pushed to KV; the rest exist only in the origin's profile store (signed up since the last push).
    profiles: list[dict[str, Any] | None] = []
    for s, events in enumerate(by_shopper(ev, S)):
        shopper = shop.shoppers[s]
        profiles.append(profile_payload(model, shopper["id"], shopper["loyalty"], events["product"],
                                        events["kind"], events["ts"]) if len(events) else None)
    pushed = cfg.get("kv_profiles", S)
    for prof in profiles[:pushed]:
        if prof is not None:
            put(keys.profile(prof["id"]), "profile", prof, generation=None)

    n_seg, n_nb = cfg["segment_list"], cfg["neighbours"]
    popular_ix = top_k(popularity, n_seg, oos)
    put(keys.popular(gen), "popular", {"name": "popular", "cards": [cards[i] for i in popular_ix]})
    segment_ids = sorted({g for prof in profiles if prof for g in prof["segments"]})
    for seg in segment_ids:
        members = np.array([prof is not None and seg in prof["segments"] for prof in profiles])
        top = top_k(X[members].sum(0), n_seg, oos)
        banners = [f"seg-{seg[6:]}"] if seg.startswith("likes-") else []
        put(keys.segment(gen, seg), "segment", {"name": seg, "cards": [cards[i] for i in top], "banners": banners})
    pop_norm = 1e-4 * popularity / (popularity.max() + 1e-9)
    for i in range(P):
        also = top_k(co[i] + 1e-3 * sim[i], n_nb, oos)
        comp_mask = np.isin(cat_of, [cats.index(c) for c in COMPLEMENTS[shop.products[i]["category"]]])
        comp = top_k(np.where(comp_mask, co[i] + pop_norm, 0), n_nb, oos)
        put(keys.item(gen, cards[i][0]), "item", {"item": cards[i][0], "also_bought": [cards[j] for j in also],
                                                  "complements": [cards[j] for j in comp]})
    put(keys.banners(gen), "banners", {"rules": banner_rules(cats)})

    # Prices: a drop on a slice of products, including ones sitting in carts, so price_drop fires.
    rng = np.random.default_rng(cfg["seed"] + 1)
    in_carts = sorted({prof["cart"][0][0] for prof in profiles if prof and prof["cart"]})
    index = model.index
    dropped = sorted({index[c] for c in in_carts[::4]} | set(rng.choice(P, P // 50).tolist()))
    prices = {cards[i][0]: int(cards[i][4] * 0.8) // 100 * 100 + 99 for i in dropped if in_stock[i]}
    put(keys.INVENTORY, "inventory", {"out_of_stock": [cards[i][0] for i in np.flatnonzero(oos)],
                                      "prices": prices}, generation=None)
    put(keys.MANIFEST, "manifest", {"generation": gen, "built_at": now, "segments": segment_ids,
                                    "settings": {"category_cap": 4, "cart_reminder_after_s": 6 * 3600,
                                                 "shared_ttl_s": 300}}, generation=None)
    generic = next(r for r in banner_rules(cats) if r["kind"] == "generic")
    return Built(gen, rec, model, [cards[i] for i in popular_ix], generic)
