"""Build a generation's v1 records from a catalog and interaction events (numpy, no per-event loops)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from personalizer import codec, keys
from personalizer.again import DUE_FLOOR
from personalizer.banners import default_record
from personalizer.records import Card
from personalizer_adapters.engine.base import Engine, borrowed
from personalizer_adapters.engine.stages import ItemStages, item_stages

from .model import (
    CART,
    EVENT_WEIGHT,
    POPULAR_DEPTH,
    PURCHASE,
    Model,
    SegmentRules,
    rebought_pairs,
    top_k,
)
from .profiles import ProfileJob, profile_outcomes
from .seedgen import Shop
from .spool import Spool

NEIGHBOURS_K = 50  # similar items kept per item: the personal list's reach
EASE_MAX_ITEMS = 20_000  # EASE inverts a dense items x items matrix (20k: 1.6 GB in float32)
EASE_LAMBDA = 200.0  # its L2 weight
CO_CANDIDATES = 256  # co-purchased items kept per item as complement candidates


@dataclass(frozen=True)
class Built:
    generation: str
    records: Spool   # key -> encoded value for KV: shared records, pushed profiles, inventory, manifest (on disk)
    model: Model
    digests: dict[str, str]     # shopper -> digest of their events: unchanged next time = profile reused
    reused: int
    warnings: tuple[str, ...] = ()  # lists that came out empty: the build is probably not what was meant


def _card(p: dict[str, Any]) -> list[Any]:
    """A product as a v1 card: [id, title, url, image, price (cents), currency, category]."""
    return Card(p["id"], p["title"], p["url"], p["image"], p["price"], p["currency"], p["category"]).payload()


def positions_by_shopper(events: npt.NDArray[Any], shoppers: int) -> list[npt.NDArray[np.int64]]:
    """For each shopper index, the positions of their events in ``events`` (one stable sort)."""
    order = np.argsort(events["shopper"], kind="stable")
    bounds = np.searchsorted(events["shopper"][order], np.arange(shoppers + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(shoppers)]


def by_shopper(events: npt.NDArray[Any], shoppers: int) -> list[npt.NDArray[Any]]:
    """Events split per shopper index, each shopper's in their order in ``events`` (no per-event Python work):
    views of one copy of the events, grouped by shopper (do not write to them)."""
    order = np.argsort(events["shopper"], kind="stable")
    grouped = events[order]
    bounds = np.searchsorted(grouped["shopper"], np.arange(shoppers + 1)).tolist()
    return [grouped[bounds[i]:bounds[i + 1]] for i in range(shoppers)]


def ease_neighbours(X: sparse.csr_matrix, k: int, lam: float,
                    chunk: int = 1024) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """Each item's ``k`` strongest positive EASE weights (Steck 2019): ``B = I - P / diag(P)``, ``P = (XᵀX + λI)⁻¹``.

    Row ``j`` of ``B`` says how much having item ``j`` in a history raises each other item's score; keeping
    its top ``k`` makes the same neighbour lists as item-kNN, so a profile is computed the same way either way.
    """
    P = X.shape[1]
    G = (X.T @ X).toarray().astype(np.float32)
    G[np.diag_indices(P)] += lam
    inv = np.linalg.inv(G)
    del G
    scale = -1.0 / np.diag(inv)
    neighbours = np.zeros((P, k), dtype=np.int32)
    weights = np.zeros((P, k), dtype=np.float32)
    for lo in range(0, P, chunk):
        rows = inv[lo:lo + chunk] * scale  # B[j, i] = -P[j, i] / P[i, i], a chunk of rows at a time
        rows[np.arange(len(rows)), np.arange(lo, lo + len(rows))] = 0.0
        top = np.argpartition(-rows, min(k, P - 1) - 1, axis=1)[:, :k]
        vals = np.take_along_axis(rows, top, axis=1)
        order = np.lexsort((top, -vals), axis=1)
        top, vals = np.take_along_axis(top, order, axis=1), np.take_along_axis(vals, order, axis=1)
        vals[vals < 0] = 0.0  # negative weights argue against an item: a neighbour list keeps only support
        neighbours[lo:lo + len(rows), :top.shape[1]] = np.where(vals > 0, top, 0)
        weights[lo:lo + len(rows), :top.shape[1]] = vals
    return neighbours, weights


def cart_products(ev: npt.NDArray[Any], products: int) -> list[int]:
    """Products sitting in a cart: each shopper's last add-to-cart that they did not buy (sorted, distinct)."""
    carts = ev[ev["kind"] == CART]
    rev = carts[np.argsort(carts["ts"], kind="stable")][::-1]
    _, first = np.unique(rev["shopper"], return_index=True)
    last = rev[first]
    purchases = ev[ev["kind"] == PURCHASE]
    bought = np.isin(last["shopper"].astype(np.int64) * products + last["product"],
                     purchases["shopper"].astype(np.int64) * products + purchases["product"])
    return sorted(set(last["product"][~bought].tolist()))


@dataclass(frozen=True)
class Fitted:
    """A generation's model and what its shared records are made from."""

    model: Model
    items: ItemStages
    X: sparse.csr_matrix                  # shopper x product, decayed interaction weights (the segments' lists)
    popularity: npt.NDArray[np.float64]   # each product's decayed popularity
    started: float                        # perf_counter at the start (progress lines give elapsed time)


EaseCache = dict[tuple[float, int], tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]]


def fit_model(shop: Shop, cfg: dict[str, Any], progress: Callable[[str], None] = lambda _: None,
              engine: Engine | None = None, ease_cache: EaseCache | None = None) -> Fitted:
    """The model of a generation (what a profile is computed with) and the item stages behind it.
    ``engine``: where the relational stages run (``engine.stages``); none, a DuckDB of its own. ``ease_cache``:
    EASE's neighbours by (λ, k) for fits of the same events (the tuning's: EASE does not change with the rest)."""
    P, S, now = len(shop.products), len(shop.shoppers), shop.now
    ev = shop.events
    cats = sorted({p["category"] for p in shop.products})
    cat_of = np.array([cats.index(p["category"]) for p in shop.products], dtype=np.int32)
    in_stock = np.array([p["stock"] > 0 for p in shop.products])
    oos = ~in_stock
    cards = [_card(p) for p in shop.products]
    half_life_s = cfg["half_life_days"] * 86400.0
    w = EVENT_WEIGHT[ev["kind"]] * np.exp2(-(now - ev["ts"]) / half_life_s)

    # Shopper x product: decayed interaction weights (the segments' lists); who touched what, 0/1 and undecayed
    # (EASE's input: item similarity must not fade with the calendar, old items would lose every neighbour).
    X = sparse.csr_matrix((w, (ev["shopper"], ev["product"])), shape=(S, P))
    del w
    started = time.perf_counter()
    progress(f"build: interaction matrices ({X.nnz:,} shopper-item pairs)")
    # The similarity: EASE where the catalog allows it (unless the config or its tuning says item-kNN).
    use_ease = int(cfg.get("ease_max_items", EASE_MAX_ITEMS)) >= P and cfg.get("similarity", "ease") != "knn"
    n_nb, k_sim = cfg["neighbours"], int(cfg.get("neighbours_k", NEIGHBOURS_K))
    # The relational stages (popularity, re-buys, co-occurrence and the lists made of it) on the engine.
    with borrowed(engine, progress) as on:
        items = item_stages(on, ev, cat_of, oos, now=now, half_life_s=half_life_s, also_k=n_nb,
                            knn_k=None if use_ease else k_sim, co_k=CO_CANDIDATES, progress=progress)
    popularity = items.popularity
    if use_ease:  # the stronger similarity where the catalog allows it (a dense inverse: numpy); item-kNN beyond
        lam = float(cfg.get("ease_lambda", EASE_LAMBDA))
        cache: EaseCache = {} if ease_cache is None else ease_cache
        if (lam, k_sim) not in cache:
            touched = X.copy()
            touched.data[:] = 1.0
            cache[(lam, k_sim)] = ease_neighbours(touched, k_sim, lam)
            del touched
        neighbours, weights = cache[(lam, k_sim)]
        progress(f"build: EASE neighbours ({time.perf_counter() - started:.0f}s)")
    else:
        assert items.neighbours is not None and items.weights is not None
        neighbours, weights = items.neighbours, items.weights

    # The generation names everything its records came from: events, config, and the catalog (a new title or
    # price is a new generation, so caches keyed by it never serve the old card).
    source = hashlib.sha256(ev.tobytes() + repr(cfg).encode() + repr((cards, in_stock.tobytes(),
                                                                     shop.current_prices)).encode())
    gen = f"g{now}-{source.hexdigest()[:8]}"
    if shop.current_prices is not None:  # a real catalog: previous_price > price marks a drop
        prices = {cards[i][0]: p for i, p in sorted(shop.current_prices.items()) if in_stock[i]}
    else:  # the demo shop: a drop on a slice of products, including ones in carts, so price_drop fires
        rng = np.random.default_rng(cfg.get("seed", 0) + 1)
        in_carts = cart_products(ev, P)
        dropped = sorted(set(in_carts[::4]) | set(rng.choice(P, P // 50).tolist()))
        prices = {cards[i][0]: int(cards[i][4] * 0.8) // 100 * 100 + 99 for i in dropped if in_stock[i]}
    cat_total = np.bincount(cat_of, weights=popularity, minlength=len(cats))
    within_share = (popularity / np.maximum(cat_total[cat_of], 1e-12)).astype(np.float32)
    depth = cfg["personal_list"] * 2
    category_top = np.full((len(cats), depth), -1, dtype=np.int32)
    for c in range(len(cats)):
        best = top_k(np.where(cat_of == c, popularity, 0), depth, oos)
        category_top[c, :len(best)] = best
        category_top[c, len(best):] = best[0] if len(best) else 0  # padding repeats: unique() removes it
    model = Model(gen, now, half_life_s, cfg["personal_list"], cards, cats, cat_of, in_stock, neighbours, weights,
                  category_top, within_share, SegmentRules.from_config(cfg), prices,
                  float(cfg.get("taste_weight", Model.taste_weight)),
                  float(cfg.get("recency_half_life", Model.recency_half_life)), items.repeat_rate,
                  items.repeat_interval, str(cfg.get("personal_source", "model")),
                  top_k(popularity, cfg["personal_list"] + POPULAR_DEPTH, oos).astype(np.int32),
                  float(cfg.get("again_half_life", Model.again_half_life)), str(cfg.get("history", "weighted")))
    return Fitted(model, items, X, popularity, started)


def build(shop: Shop, cfg: dict[str, Any], previous: dict[str, tuple[str, bytes]] | None = None,
          progress: Callable[[str], None] = lambda _: None, campaigns: list[dict[str, Any]] | None = None,
          engine: Engine | None = None) -> Built:
    """Records for a new generation. ``previous`` (shopper -> (events digest, profile bytes)) lets a shopper
    whose events did not change keep their profile record byte for byte, so a push of the next build
    touches only the profiles of people who did something (a full rebuild passes ``None``). ``campaigns``:
    the banner rules of the shop's campaigns file (``personalizer_adapters.campaigns``); none, no banners.
    ``engine``: where the relational stages run (``engine.stages``); none, a DuckDB of its own."""
    campaigns = campaigns or []
    P, S, now = len(shop.products), len(shop.shoppers), shop.now
    ev = shop.events
    fitted = fit_model(shop, cfg, progress, engine)
    model, items, X, popularity, started = fitted.model, fitted.items, fitted.X, fitted.popularity, fitted.started
    gen, cards, cats, cat_of, oos = model.generation, model.cards, model.categories, model.category_of, ~model.in_stock
    also, co_rows, n_seg, n_nb, prices = items.also, items.co_rows, cfg["segment_list"], cfg["neighbours"], model.prices
    rec = Spool()  # a million profiles are gigabytes: their values wait on disk, not in memory

    def put(key: str, kind: str, data: dict[str, Any], generation: str | None = gen) -> None:
        rec[key] = codec.encode(kind, data, generation=generation, produced_at=now)

    # Profiles first: their segments define segment membership. Only the first `kv_profiles` shoppers are
    # pushed to KV; the rest exist only in the origin's profile store (signed up since the last push).
    segments_of: list[list[str]] = []  # only the segments outlive a shopper's turn: payloads are large
    digests: dict[str, str] = {}
    reused = computed = empty = trimmed = refused = 0
    job = ProfileJob(shop, model, by_shopper(ev, S), previous or {}, cfg.get("kv_profiles", S), now)
    for lo, outcomes in profile_outcomes(job, cfg.get("workers")):
        if lo % 200_000 == 0:
            progress(f"build: profiles {lo:,}/{S:,} ({time.perf_counter() - started:.0f}s)")
        for s, o in enumerate(outcomes, lo):
            segments_of.append(o.segments)
            if o.digest is None:
                continue
            shopper_id = shop.shoppers[s]["id"]
            digests[shopper_id] = o.digest
            reused += o.reused
            computed += not o.reused
            empty += o.empty
            trimmed += o.trimmed and o.record is not None
            refused += o.trimmed and o.record is None
            if o.record is not None:
                rec[keys.profile(shopper_id)] = o.record
    del job

    # "Buy it again" for people with nothing to re-buy yet: what their segment (or everyone) re-buys most.
    rs, rp = rebought_pairs(ev)
    rebuys = sparse.csr_matrix((np.ones(len(rs)), (rs, rp)), shape=(S, P))
    popular_ix = top_k(popularity, n_seg, oos)
    put(keys.popular(gen), "popular", {"name": "popular", "cards": [cards[i] for i in popular_ix],
                                       "again": [cards[i] for i in top_k(np.asarray(rebuys.sum(0)).ravel(),
                                                                         n_seg, oos)]})
    segment_ids = sorted({g for segs in segments_of for g in segs})
    by_priority = sorted(campaigns, key=lambda r: -r["priority"])  # a segment's campaigns, best first
    member_rows: dict[str, list[int]] = {seg: [] for seg in segment_ids}
    for s, segs in enumerate(segments_of):
        for seg in segs:
            member_rows[seg].append(s)
    for seg in segment_ids:
        top = top_k(np.asarray(X[member_rows[seg]].sum(0)).ravel(), n_seg, oos)
        banners = [r["id"] for r in by_priority if r["kind"] == "segment" and r["match"] == seg]
        again = top_k(np.asarray(rebuys[member_rows[seg]].sum(0)).ravel(), n_seg, oos)
        put(keys.segment(gen, seg), "segment", {"name": seg, "cards": [cards[i] for i in top], "banners": banners,
                                                "again": [cards[i] for i in again]})

    # Also-bought: co-purchase cosine, taste similarity to break ties. Complements: items of the categories
    # most bought alongside this one (from the data), by co-purchase, backfilled by their popular items.
    comp_cats = items.complement_categories
    pop_in_cat = [top_k(np.where(cat_of == c, popularity, 0), n_nb, oos) for c in range(len(cats))]
    pop_norm = 1e-4 * popularity / (popularity.max() + 1e-9)
    progress(f"build: segments done, item records ({time.perf_counter() - started:.0f}s)")
    for i in range(P):
        targets = comp_cats[cat_of[i]]
        co_cols, co_vals = co_rows[i]
        cand = np.concatenate([co_cols, *(pop_in_cat[c] for c in targets)]).astype(np.int64)
        score = np.concatenate([co_vals, np.zeros(len(cand) - len(co_cols))])
        keep = np.isin(cat_of[cand], targets) & ~oos[cand]
        cand, score = cand[keep], score[keep] + pop_norm[cand[keep]]
        cand, first = np.unique(cand, return_index=True)
        comp = cand[top_k(score[first], n_nb)]
        put(keys.item(gen, cards[i][0]), "item", {"item": cards[i][0], "card": cards[i],
                                                  "also_bought": [cards[j] for j in also[i]],
                                                  "complements": [cards[j] for j in comp]})
    put(keys.banners(gen), "banners", {"rules": campaigns})
    rec[keys.DEFAULT] = default_record([cards[i] for i in popular_ix], campaigns, gen, now)
    put(keys.INVENTORY, "inventory", {"out_of_stock": [cards[i][0] for i in np.flatnonzero(oos)],
                                      "prices": prices}, generation=None)
    put(keys.MANIFEST, "manifest", {"generation": gen, "built_at": now, "segments": segment_ids,
                                    "settings": {"category_cap": 4, "cart_reminder_after_s": 6 * 3600,
                                                 "shared_ttl_s": 300,
                                                 "again_due_floor": float(cfg.get("again_due_floor", DUE_FLOOR))}},
        generation=None)
    warnings = []
    if not len(popular_ix):
        warnings.append(f"the popular list is empty: {int(oos.sum()):,} of {P:,} products are out of stock"
                        f"{' (check the stock column)' if oos.all() else ''}")
    if trimmed or refused:
        warnings.append(f"{trimmed:,} profile(s) over {codec.MAX_PROFILE_BYTES // 1024} KiB trimmed to fit, "
                        f"{refused:,} refused (not pushed): check catalog strings and history lengths")
    if computed and empty * 2 > computed:
        warnings.append(f"{empty:,} of {computed:,} personal lists are empty "
                        f"({int(oos.sum()):,} of {P:,} products out of stock)")
    return Built(gen, rec, model, digests, reused, tuple(warnings))
