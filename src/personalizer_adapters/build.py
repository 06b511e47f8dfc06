"""Build a generation's v1 records from a catalog and interaction events (numpy, no per-event loops)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from personalizer import codec, keys
from personalizer.records import Card

from .seedgen import COMPLEMENTS, Shop

EVENT_WEIGHT = np.array([1.0, 3.0, 5.0])  # view, add_to_cart, purchase


@dataclass(frozen=True)
class Built:
    generation: str
    records: dict[str, bytes]   # key -> encoded value (shared records, profiles, inventory, manifest)
    fallback_cards: list[list[Any]]
    fallback_banner: dict[str, Any]


def _card(p: dict[str, Any]) -> list[Any]:
    """A product as a v1 card: [id, title, url, image, price (cents), currency, category]."""
    return Card(p["id"], p["title"], p["url"], p["image"], p["price"], p["currency"], p["category"]).payload()


def _top(scores: npt.NDArray[Any], k: int, exclude: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int64]:
    s = scores.astype(np.float64, copy=True)
    if exclude is not None:
        s[exclude] = -np.inf
    k = min(k, int(np.isfinite(s).sum()), len(s))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-s, k - 1)[:k]
    part = part[s[part] > 0]
    ranked: npt.NDArray[np.int64] = part[np.lexsort((part, -s[part]))]  # by score desc, then index
    return ranked


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
    cat_of = np.array([cats.index(p["category"]) for p in shop.products])
    in_stock = np.array([p["stock"] > 0 for p in shop.products])
    cards = [_card(p) for p in shop.products]
    decay = np.exp2(-(now - ev["ts"]) / (cfg["half_life_days"] * 86400.0))
    w = EVENT_WEIGHT[ev["kind"]] * decay

    # Shopper x product interaction weights (dense is fine at seed scale: 6,000 x 2,400 float32).
    X = np.zeros((S, P), dtype=np.float32)
    np.add.at(X, (ev["shopper"], ev["product"]), w)
    bought = np.zeros((S, P), dtype=bool)
    pur = ev[ev["kind"] == 2]
    bought[pur["shopper"], pur["product"]] = True
    # Item-item: cosine co-occurrence over purchases+carts for also-bought, over all weights for taste.
    B = np.zeros((S, P), dtype=np.float32)
    strong = ev[ev["kind"] >= 1]
    np.add.at(B, (strong["shopper"], strong["product"]), 1.0)
    Bb = np.minimum(B, 1.0)
    norms = np.sqrt((Bb * Bb).sum(0)) + 1e-9
    co = (Bb.T @ Bb) / np.outer(norms, norms)
    np.fill_diagonal(co, 0)
    xn = np.sqrt((X * X).sum(0)) + 1e-9
    sim = (X.T @ X) / np.outer(xn, xn)
    np.fill_diagonal(sim, 0)
    popularity = X.sum(0)

    # Segments: dominant category affinity, loyalty, newness.
    cat_aff = np.stack([X[:, cat_of == c].sum(1) for c in range(len(cats))], axis=1)
    counts = np.bincount(ev["shopper"], minlength=S)
    segs_of: list[list[str]] = []
    for s in range(S):
        segs: list[str] = []
        if cat_aff[s].max() > 0:
            segs.append(f"likes-{cats[int(cat_aff[s].argmax())]}")
        if shop.shoppers[s]["loyalty"]:
            segs.append(f"loyal-{shop.shoppers[s]['loyalty']}")
        segs.append("new" if counts[s] <= 2 else "returning")
        segs_of.append(segs)
    segment_ids = sorted({g for segs in segs_of for g in segs})

    gen_hash = hashlib.sha256(ev.tobytes() + repr(cfg).encode()).hexdigest()[:8]
    gen = f"g{now}-{gen_hash}"
    rec: dict[str, bytes] = {}

    def put(key: str, kind: str, data: dict[str, Any], generation: str | None = gen) -> None:
        rec[key] = codec.encode(kind, data, generation=generation, produced_at=now)

    oos = ~in_stock
    n_seg, n_nb, n_pers = cfg["segment_list"], cfg["neighbours"], cfg["personal_list"]
    popular_ix = _top(popularity, n_seg, oos)
    put(keys.popular(gen), "popular", {"name": "popular", "cards": [cards[i] for i in popular_ix]})
    for seg in segment_ids:
        members = np.array([seg in segs for segs in segs_of])
        top = _top(X[members].sum(0), n_seg, oos)
        banners = [f"seg-{seg[6:]}"] if seg.startswith("likes-") else []
        put(keys.segment(gen, seg), "segment", {"name": seg, "cards": [cards[i] for i in top],
                                                "banners": banners})
    for i in range(P):
        also = _top(co[i] + 1e-3 * sim[i], n_nb, oos)
        comp_cats = [cats.index(c) for c in COMPLEMENTS[shop.products[i]["category"]]]
        comp_mask = np.isin(cat_of, comp_cats)
        comp_score = np.where(comp_mask, co[i] + 1e-4 * popularity / (popularity.max() + 1e-9), 0)
        comp = _top(comp_score, n_nb, oos)
        put(keys.item(gen, cards[i][0]), "item", {"item": cards[i][0],
                                                    "also_bought": [cards[j] for j in also],
                                                    "complements": [cards[j] for j in comp]})
    put(keys.banners(gen), "banners", {"rules": banner_rules(cats)})

    # A cart is the last add_to_cart that was not bought afterwards.
    # Prices: a drop on a slice of products, including ones sitting in carts, so price_drop fires.
    rng = np.random.default_rng(cfg["seed"] + 1)
    last_cart: dict[int, tuple[int, int]] = {}
    for s_, p_, ts_ in zip(ev["shopper"][ev["kind"] == 1].tolist(), ev["product"][ev["kind"] == 1].tolist(),
                           ev["ts"][ev["kind"] == 1].tolist(), strict=True):
        last_cart[s_] = (p_, ts_)
    cart_holders = sorted(s for s, (p, _) in last_cart.items() if not bought[s, p])
    dropped = sorted({last_cart[s][0] for s in cart_holders[::4]} | set(rng.choice(P, P // 50).tolist()))
    prices = {cards[i][0]: int(cards[i][4] * 0.8) // 100 * 100 + 99 for i in dropped if in_stock[i]}
    put(keys.INVENTORY, "inventory", {"out_of_stock": [cards[i][0] for i in np.flatnonzero(oos)],
                                      "prices": prices}, generation=None)

    # Profiles: personal list through item similarity, excluding what was bought.
    in_cart = set(cart_holders)
    order = np.argsort(ev["ts"], kind="stable")[::-1]  # newest first
    recent: dict[int, list[int]] = {}
    for s_, p_, k_ in zip(ev["shopper"][order].tolist(), ev["product"][order].tolist(),
                          ev["kind"][order].tolist(), strict=True):
        lst = recent.setdefault(s_, [])
        if k_ == 0 and p_ not in lst and len(lst) < 12:
            lst.append(p_)
    personal = X @ sim  # (S, P) taste scores
    for s in range(S):
        if counts[s] == 0:
            continue
        sid = shop.shoppers[s]["id"]
        top = _top(personal[s], n_pers, bought[s] | oos)
        rv = recent.get(s, [])
        cart = [last_cart[s][0]] if s in in_cart else []
        put(keys.profile(sid), "profile", {
            "id": sid, "segments": segs_of[s], "cards": [cards[i] for i in top],
            "recent": [cards[i] for i in rv], "bought": [cards[i][0] for i in np.flatnonzero(bought[s])],
            "cart": [cards[i] for i in cart], "cart_updated_at": last_cart[s][1] if cart else 0,
            "loyalty": shop.shoppers[s]["loyalty"],
            "categories": list(dict.fromkeys(cards[i][6] for i in rv))[:3],
            "watched": [cards[i][0] for i in rv[:5]],
        }, generation=None)

    put(keys.MANIFEST, "manifest", {"generation": gen, "built_at": now, "segments": segment_ids,
                                    "settings": {"category_cap": 4, "cart_reminder_after_s": 6 * 3600,
                                                 "shared_ttl_s": 300}}, generation=None)
    generic = next(r for r in banner_rules(cats) if r["kind"] == "generic")
    return Built(gen, rec, [cards[i] for i in popular_ix], generic)
