"""The model artifacts of a generation and the one function that turns a shopper's history into a profile.

Shared by the batch build (every shopper) and the origin (one shopper, on an edge miss), so a profile
computed on a miss has exactly the form and the logic of one pushed by a batch.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from personalizer_adapters.store.base import NO_ORDER  # a purchase whose order is not known: baskets by time

ARTIFACT_META, ARTIFACT_ARRAYS = "model.json", "model.npz"  # a model's artifacts (files, or in the store)
EVENT_WEIGHT = np.array([1.0, 3.0, 5.0])  # view, add_to_cart, purchase
VIEW, CART, PURCHASE = 0, 1, 2
MAX_BOUGHT = 500  # distinct purchases a profile keeps (the most recent)
MAX_AGAIN = 24    # items a profile keeps for "buy it again": bounded, every page decodes them
BASKET_GAP_S = 3600  # purchases further apart than this are separate baskets (orders)
AGAIN_HALF_LIFE = 5.0  # baskets: a purchase's weight for "buy it again" halves every this many orders back


MAX_QTY_WEIGHT = 10  # a line's quantity weighs its "buy it again" signal up to this many units


def quantities(events: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Each event's quantity (1 where the source gave none)."""
    names = events.dtype.names or ()
    return events["qty"].astype(np.int64) if "qty" in names else np.ones(len(events), dtype=np.int64)


def order_keys(events: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Each event's order key (``NO_ORDER`` where the source gave none)."""
    names = events.dtype.names or ()
    return events["order"].astype(np.int64) if "order" in names else np.full(len(events), NO_ORDER, dtype=np.int64)


def new_basket(t: npt.NDArray[np.int64], keys: npt.NDArray[np.int64] | None) -> npt.NDArray[np.bool_]:
    """For each consecutive pair of purchases (in time order): whether the second starts another basket: another
    order when both orders are known, else a gap over ``BASKET_GAP_S``."""
    gap = (t[1:] - t[:-1]) > BASKET_GAP_S
    if keys is None:
        return gap
    known = (keys[1:] != NO_ORDER) & (keys[:-1] != NO_ORDER)
    result: npt.NDArray[np.bool_] = np.where(known, keys[1:] != keys[:-1], gap)
    return result


def baskets_of(ts: npt.NDArray[Any], keys: npt.NDArray[Any] | None = None) -> npt.NDArray[np.int64]:
    """Basket (order) number of each purchase, times in order: a new basket at another order (both known),
    else after a gap over ``BASKET_GAP_S``."""
    t = ts.astype(np.int64)
    k = None if keys is None else keys.astype(np.int64)
    return np.concatenate([[0], np.cumsum(new_basket(t, k))]).astype(np.int64)


def _rebuys(events: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.int64],
                                                npt.NDArray[np.bool_]]:
    """Purchases ordered by (person, product, time): persons, products, and for each consecutive pair the
    gap and whether it is the same person re-buying the same product in a later basket."""
    buys = events[events["kind"] == PURCHASE]
    order = np.lexsort((buys["ts"], buys["product"], buys["shopper"]))
    s, p, t = buys["shopper"][order], buys["product"][order], buys["ts"][order].astype(np.int64)
    keys = order_keys(buys)[order]
    return s, p, t[1:] - t[:-1], (s[1:] == s[:-1]) & (p[1:] == p[:-1]) & new_basket(t, keys)


def rebought_pairs(events: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """``(persons, products)``: each person-product pair bought again in a later basket, once."""
    s, p, _, again = _rebuys(events)
    return _pairs(s, p, again)


def _pairs(s: npt.NDArray[Any], p: npt.NDArray[Any], again: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[Any],
                                                                                            npt.NDArray[Any]]:
    pairs = np.unique(s[1:][again].astype(np.int64) << 32 | p[1:][again].astype(np.int64))
    return (pairs >> 32).astype(np.int64), (pairs & 0xFFFFFFFF).astype(np.int64)


def again_entries(model: Model, products: npt.NDArray[Any], kinds: npt.NDArray[Any],
                  ts: npt.NDArray[Any], qty: npt.NDArray[Any] | None = None,
                  keys: npt.NDArray[Any] | None = None) -> list[list[Any]]:
    """A person's "buy it again" entries (events in time order): ``[card, weight, last, interval, rate]`` for
    the items they bought that someone re-buys, the most bought first (weighted towards their latest
    baskets, on their own clock, and by the quantity bought, up to ``MAX_QTY_WEIGHT``), at most ``MAX_AGAIN``.
    ``qty``, ``keys``: each event's quantity and order key, where the source gave them."""
    if model.repeat_rate is None or model.repeat_interval is None:
        return []
    buys = kinds == PURCHASE
    if not buys.any():
        return []
    bp, bt = products[buys], ts[buys].astype(np.int64)
    basket = baskets_of(bt, None if keys is None else keys[buys])
    units = 1.0 if qty is None else np.minimum(np.maximum(qty[buys], 1), MAX_QTY_WEIGHT)
    weight = np.exp2(-(basket[-1] - basket) / model.again_half_life) * units
    items, inverse = np.unique(bp, return_inverse=True)
    w = np.bincount(inverse, weights=weight, minlength=len(items))
    last = np.zeros(len(items), dtype=np.int64)
    np.maximum.at(last, inverse, bt)
    keep = (model.repeat_rate[items] > 0) & model.in_stock[items]
    order = np.lexsort((items, -w))
    order = order[keep[order]][:MAX_AGAIN]
    return [[model.cards[int(items[i])], round(float(w[i]), 4), int(last[i]),
             int(model.repeat_interval[items[i]]), round(float(model.repeat_rate[items[i]]), 4)] for i in order]


def again_lists(model: Model, owner: npt.NDArray[Any], products: npt.NDArray[Any], kinds: npt.NDArray[Any],
                ts: npt.NDArray[Any], qty: npt.NDArray[Any] | None, keys: npt.NDArray[Any] | None,
                people: int) -> list[list[list[Any]]]:
    """``again_entries`` for many people at once (events grouped by person, in time order within each), equal to
    the one-person function's entries (a test holds that they agree)."""
    if model.repeat_rate is None or model.repeat_interval is None:
        return [[] for _ in range(people)]
    buys = kinds == PURCHASE
    who, bp, bt = owner[buys].astype(np.int64), products[buys].astype(np.int64), ts[buys].astype(np.int64)
    if not len(who):
        return [[] for _ in range(people)]
    # Baskets counted over the whole group: a person's numbers are baskets_of's plus a constant of theirs, and only
    # the distance back from their last basket counts.
    basket = np.cumsum(np.concatenate([[0], new_basket(bt, None if keys is None else keys[buys].astype(np.int64))]))
    ends = np.flatnonzero(np.concatenate([who[1:] != who[:-1], [True]]))  # a person's last purchase
    last_basket = np.zeros(people, dtype=np.int64)
    last_basket[who[ends]] = basket[ends]
    units = 1.0 if qty is None else np.minimum(np.maximum(qty[buys], 1), MAX_QTY_WEIGHT)
    weight = np.exp2(-(last_basket[who] - basket) / model.again_half_life) * units
    P = len(model.cards)
    bought, inverse = np.unique(who * P + bp, return_inverse=True)
    w = np.bincount(inverse, weights=weight, minlength=len(bought))
    last = np.zeros(len(bought), dtype=np.int64)
    np.maximum.at(last, inverse, bt)
    mine, items = bought // P, bought % P
    keep = (model.repeat_rate[items] > 0) & model.in_stock[items]
    mine, items, w, last = mine[keep], items[keep], w[keep], last[keep]
    order = np.lexsort((items, -w, mine))  # the most bought first, ties by index, person by person
    mine, items, w, last = mine[order], items[order], w[order], last[order]
    bounds = np.searchsorted(mine, np.arange(people + 1))
    cards, rate, interval = model.cards, model.repeat_rate, model.repeat_interval
    return [[[cards[int(items[i])], round(float(w[i]), 4), int(last[i]), int(interval[items[i]]),
              round(float(rate[items[i]]), 4)] for i in range(bounds[r], min(bounds[r] + MAX_AGAIN, bounds[r + 1]))]
            for r in range(people)]


CATEGORY_ID_MAX = 48  # "likes-" + this stays within the 64 characters of an id


def category_ids(categories: list[str]) -> list[str]:
    """A safe, distinct id for each category name, in order: ``"Dairy Eggs"`` -> ``"dairy-eggs"``.

    Real catalogs name categories freely (spaces, apostrophes, accents); segment and banner ids derived from
    them must be ids. Names that slug alike get ``-2``, ``-3``... in the given order, so the mapping is stable
    for the same (sorted) category list; a name that is already a slug is kept as it is.
    """
    out: list[str] = []
    taken: set[str] = set()
    for name in categories:
        base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:CATEGORY_ID_MAX].strip("-") or "category"
        slug, n = base, 1
        while slug in taken:
            n += 1
            slug = f"{base[:CATEGORY_ID_MAX - len(str(n)) - 1]}-{n}"
        taken.add(slug)
        out.append(slug)
    return out


@dataclass(frozen=True)
class SegmentRules:
    """Segment rules from the build config ([segments] in the TOML); the origin applies the same ones."""

    new_max_events: int = 2
    cart_left_after_s: int = 6 * 3600
    affinity: bool = True
    # tier -> (minimum purchases, minimum purchase value in cents); used when no tier is given for a shopper
    loyalty: tuple[tuple[str, int, int], ...] = (("platinum", 8, 100_000), ("gold", 4, 40_000), ("silver", 2, 10_000))

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> SegmentRules:
        seg = cfg.get("segments", {})
        base = cls()
        tiers = seg.get("loyalty")
        loyalty = base.loyalty if tiers is None else tuple(sorted(
            ((name, int(t["orders"]), int(round(float(t["value"]) * 100))) for name, t in tiers.items()),
            key=lambda t: (-t[1], -t[2])))
        return cls(int(seg.get("new_max_events", base.new_max_events)),
                   int(float(seg.get("cart_left_after_hours", base.cart_left_after_s / 3600)) * 3600),
                   bool(seg.get("affinity", base.affinity)), loyalty)

    def as_json(self) -> dict[str, Any]:
        return {"new_max_events": self.new_max_events, "cart_left_after_s": self.cart_left_after_s,
                "affinity": self.affinity, "loyalty": [list(t) for t in self.loyalty]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SegmentRules:
        return cls(d["new_max_events"], d["cart_left_after_s"], d["affinity"],
                   tuple((str(t[0]), int(t[1]), int(t[2])) for t in d["loyalty"]))


@dataclass(frozen=True)
class Model:
    """What the origin needs to compute a profile: catalog cards, item neighbours, segment ids."""

    generation: str
    now: int
    half_life_s: float
    personal_list: int
    cards: list[list[Any]]                     # product index -> v1 card payload
    categories: list[str]
    category_of: npt.NDArray[np.int32]         # product index -> category index
    in_stock: npt.NDArray[np.bool_]
    neighbours: npt.NDArray[np.int32]          # (products, K) most similar items, best first
    weights: npt.NDArray[np.float32]           # (products, K) their similarity
    # Taste-aware popularity: each category's most popular items, and each item's share of its category.
    category_top: npt.NDArray[np.int32]        # (categories, depth)
    within_share: npt.NDArray[np.float32]      # (products,)
    rules: SegmentRules = SegmentRules()
    prices: dict[str, int] | None = None       # current prices that differ from the cards' (price drops)
    taste_weight: float = 0.1                  # weight of taste-aware popularity against item-to-item similarity
    recency_half_life: float = 10.0            # a person's own history: weight halves every this many interactions
    # Buy it again: each product's share of buyers who bought it again, and its typical interval (seconds).
    repeat_rate: npt.NDArray[np.float32] | None = None
    repeat_interval: npt.NDArray[np.int64] | None = None
    # What the personal list is: "model" (the scoring below), or, when the build's tuning found that a textbook
    # list beat it on the shop's own validation slice, "similarity" (the neighbour lists alone over the plain
    # history: EASE's or item-kNN's list) or "popularity" (``popular``: the most popular items, unseen first).
    personal_source: str = "model"
    popular: npt.NDArray[np.int32] | None = None  # in-stock products by popularity, best first (a bounded head)
    again_half_life: float = AGAIN_HALF_LIFE       # "buy it again": a purchase's weight halves every this many orders
    # How a history weighs an item for the personal list: "weighted" sums its events by kind (a purchase weighs
    # more than a view, and repeats add up); "distinct" counts each item once, at its latest interaction's recency.
    history: str = "weighted"

    @cached_property
    def category_ids(self) -> list[str]:
        """Each category's id (for segment and banner ids): ``categories`` are display names."""
        return category_ids(self.categories)

    @cached_property
    def similarity(self) -> Any:
        """The neighbour lists as a sparse products x products matrix of their positive weights (float64), for
        the batch's sparse products (``personal_lists``); scipy is imported here, never on the origin's path."""
        from scipy import sparse

        P = len(self.cards)
        real = self.weights > 0
        return sparse.csr_matrix((self.weights[real].astype(np.float64), self.neighbours[real],
                                  np.concatenate([[0], np.cumsum(real.sum(axis=1))])), shape=(P, P))

    @cached_property
    def index(self) -> dict[str, int]:
        """Each product id's index (computed once: the miss path asks on every call; do not mutate)."""
        return {c[0]: i for i, c in enumerate(self.cards)}

    def files(self) -> dict[str, bytes]:
        """The model's artifacts as files (``model.json``, ``model.npz``): written beside the origin's data by a
        build, and kept in the store (``ProfileData.artifacts``) so an origin may load them from the database."""
        arrays: dict[str, npt.NDArray[Any]] = {
            "category_of": self.category_of, "in_stock": self.in_stock, "neighbours": self.neighbours,
            "weights": self.weights, "category_top": self.category_top, "within_share": self.within_share}
        if self.repeat_rate is not None and self.repeat_interval is not None:
            arrays |= {"repeat_rate": self.repeat_rate, "repeat_interval": self.repeat_interval}
        if self.popular is not None:
            arrays["popular"] = self.popular
        npz = io.BytesIO()
        np.savez_compressed(npz, **arrays)  # type: ignore[arg-type]  # stubs: **kw as allow_pickle
        meta = json.dumps({
            "generation": self.generation, "now": self.now, "half_life_s": self.half_life_s,
            "personal_list": self.personal_list, "categories": self.categories, "cards": self.cards,
            "rules": self.rules.as_json(), "prices": self.prices or {}, "taste_weight": self.taste_weight,
            "recency_half_life": self.recency_half_life, "personal_source": self.personal_source,
            "again_half_life": self.again_half_life, "history": self.history})
        return {ARTIFACT_META: meta.encode(), ARTIFACT_ARRAYS: npz.getvalue()}

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> Model:
        """The model from its artifacts (``files()``); ``KeyError``/``ValueError`` when they are incomplete."""
        meta = json.loads(files[ARTIFACT_META])
        with np.load(io.BytesIO(files[ARTIFACT_ARRAYS])) as arrays:
            return cls(meta["generation"], meta["now"], meta["half_life_s"], meta["personal_list"], meta["cards"],
                       meta["categories"], arrays["category_of"], arrays["in_stock"], arrays["neighbours"],
                       arrays["weights"], arrays["category_top"], arrays["within_share"],
                       SegmentRules.from_json(meta["rules"]), meta["prices"], meta["taste_weight"],
                       meta["recency_half_life"], arrays.get("repeat_rate"), arrays.get("repeat_interval"),
                       meta.get("personal_source", "model"), arrays.get("popular"),
                       float(meta.get("again_half_life", AGAIN_HALF_LIFE)), meta.get("history", "weighted"))

    def save(self, directory: Path) -> dict[str, bytes]:
        """Write the artifacts into ``directory`` (each replaced atomically, ``model.json`` last: it names the
        generation); returns them."""
        directory.mkdir(parents=True, exist_ok=True)
        files = self.files()
        for name, value in sorted(files.items(), reverse=True):
            tmp = directory / (name + ".tmp")
            tmp.write_bytes(value)
            tmp.replace(directory / name)
        return files

    @classmethod
    def load(cls, directory: Path) -> Model:
        return cls.from_files({name: (directory / name).read_bytes() for name in (ARTIFACT_META, ARTIFACT_ARRAYS)})


def top_k(scores: npt.NDArray[Any], k: int, exclude: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` best positive scores, best first, ties by index (deterministic)."""
    s = scores.astype(np.float64, copy=True)
    if exclude is not None:
        s[exclude] = -np.inf
    k = min(k, int((s > 0).sum()))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    kth = -np.partition(-s, k - 1)[k - 1]  # the k-th best score: every tie of it competes, the lowest index wins
    part = np.flatnonzero(s >= kth)
    ranked: npt.NDArray[np.int64] = part[np.lexsort((part, -s[part]))][:k]
    return ranked


def history(model: Model, products: npt.NDArray[Any], kinds: npt.NDArray[Any]) -> tuple[
        npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    """A person's events (in time order) as ``(items, weight of each for the personal list, affinity of each
    category)``: the distinct items, sorted.

    What the person did last says most about what they want next: each interaction's weight halves every
    ``recency_half_life`` interactions back in their own history (their own clock, not the build's "now", so
    a person who was away for a month is read the same as one who was here yesterday). The category affinity
    (the segments, the taste term) always weighs events by kind; the list's weights as ``Model.history`` says."""
    items, inverse = np.unique(products, return_inverse=True)
    back = np.arange(len(products) - 1, -1, -1, dtype=np.float64)
    decay = np.exp2(-back / model.recency_half_life)
    x: npt.NDArray[Any] = np.bincount(inverse, EVENT_WEIGHT[kinds] * decay, minlength=len(items))
    affinity = np.bincount(model.category_of[items], weights=x, minlength=len(model.categories))
    if model.history == "distinct":
        x = np.zeros(len(items))
        np.maximum.at(x, inverse, decay)
    return items, x, affinity


POPULAR_DEPTH = 500  # the popularity list a model keeps: the personal list's length past what a person saw


def personal_list(model: Model, items: npt.NDArray[Any], x: npt.NDArray[Any],
                  affinity: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """The person's "for you" products, best first (``history``'s output): never one they saw, never one out of
    stock.

    Item-to-item similarity from the weighted history (item-kNN over the build's neighbour lists, EASE weights
    where the catalog allows), plus a little taste-aware popularity (the person's category affinity times
    each item's share of its category) so that a short history still fills a list. Where the build's tuning
    chose a textbook list instead (``Model.personal_source``), that list."""
    n = model.personal_list
    if model.personal_source == "popularity" and model.popular is not None:
        pool = model.popular.astype(np.int64)
        at = np.minimum(np.searchsorted(items, pool), len(items) - 1)
        popular: npt.NDArray[np.int64] = pool[(items[at] != pool) & model.in_stock[pool]][:n]
        return popular
    plain = model.personal_source == "similarity"  # the neighbour lists over who-touched-what: EASE's or kNN's list
    if plain:
        x = np.ones(len(items))
    taste_weight = 0.0 if plain else model.taste_weight
    taste = affinity / max(affinity.sum(), 1e-12)
    favourite = np.argsort(-affinity, kind="stable")[:3]
    liked = favourite[affinity[favourite] > 0]
    weights = model.weights[items]
    real = weights > 0  # a neighbour list's padding (index 0, weight 0) is no neighbour
    neighbours = model.neighbours[items][real]
    pool = np.concatenate([neighbours, model.category_top[liked].ravel()])
    contrib = np.concatenate([(x[:, None] * weights)[real], np.zeros(len(pool) - len(neighbours))])
    candidates, where = np.unique(pool, return_inverse=True)
    cf = np.bincount(where, weights=contrib, minlength=len(candidates))
    pop = taste[model.category_of[candidates]] * model.within_share[candidates]
    scores = (cf / max(cf.max(initial=0.0), 1e-12)
              + taste_weight * pop / max(pop.max(initial=0.0), 1e-12))
    # "For you" is for discovery: what the shopper already saw has the recently-viewed slot.
    # Both sorted and distinct: a binary search says which candidates the person saw (np.isin costs more).
    at = np.minimum(np.searchsorted(items, candidates), len(items) - 1)
    excluded = (items[at] == candidates) | ~model.in_stock[candidates]
    return candidates[top_k(scores, n, excluded)]


TINY = 1e-250  # a history weight below this (decayed past ~830 half-lives) could vanish in a product


def personal_lists(model: Model, owner: npt.NDArray[Any], products: npt.NDArray[Any], kinds: npt.NDArray[Any],
                   people: int) -> tuple[npt.NDArray[np.float64], list[npt.NDArray[np.int64]]]:
    """``history`` and ``personal_list`` for many people at once: ``(category affinity, a row per person;
    each person's personal list)``, equal to the one-person functions' value for value (the origin computes one
    person's on a miss; a test holds that the two agree).

    ``owner``: each event's person, ``0 .. people - 1``; the events grouped by person, in time order within
    each. Every sum adds the same numbers in the same order as the one-person code, so the floats are the same
    bits; the numpy work is a few calls for the whole group instead of a few dozen per person."""
    from scipy import sparse

    P, C = len(model.cards), len(model.categories)
    owner = owner.astype(np.int64)
    ends = np.cumsum(np.bincount(owner, minlength=people))
    back = (ends[owner] - 1 - np.arange(len(owner))).astype(np.float64)  # the person's events after this one
    decay = np.exp2(-back / model.recency_half_life)
    seen, inverse = np.unique(owner * P + products.astype(np.int64), return_inverse=True)  # by person, then item
    who, items = seen // P, seen % P
    x: npt.NDArray[Any] = np.bincount(inverse, EVENT_WEIGHT[kinds] * decay, minlength=len(seen))
    summed: npt.NDArray[Any] = np.bincount(who * C + model.category_of[items], weights=x,
                                          minlength=people * C)
    affinity = summed.reshape(people, C)
    if not len(seen):
        return affinity, [np.empty(0, dtype=np.int64) for _ in range(people)]
    bounds = np.searchsorted(who, np.arange(people + 1))  # each person's rows of ``seen``

    def one_at_a_time(x: npt.NDArray[Any]) -> tuple[npt.NDArray[np.float64], list[npt.NDArray[np.int64]]]:
        return affinity, [personal_list(model, items[bounds[r]:bounds[r + 1]], x[bounds[r]:bounds[r + 1]],
                                        affinity[r]) for r in range(people)]

    if model.personal_source == "popularity" and model.popular is not None:  # a filter of one list: per person
        return one_at_a_time(x)
    if model.history == "distinct":
        x = np.zeros(len(seen))
        np.maximum.at(x, inverse, decay)
    plain = model.personal_source == "similarity"
    if plain:
        x = np.ones(len(seen))
    if x.min() < TINY:  # a weight so small that x·w could round to 0: one person at a time
        return one_at_a_time(x)
    taste_weight = 0.0 if plain else model.taste_weight
    taste = affinity / np.maximum(affinity.sum(axis=1), 1e-12)[:, None]
    favourite = np.argsort(-affinity, axis=1, kind="stable")[:, :3]
    liked = np.take_along_axis(affinity, favourite, axis=1) > 0
    # The candidates' similarity scores as a sparse product (history x neighbour weights): for each person it adds
    # x·w over their items in order (sorted), as the one-person bincount does, so the same sums; a product of
    # positive numbers is positive, so its pattern is the neighbours' pool. Then each person's liked categories'
    # top items that are not in it, at 0.
    H = sparse.csr_matrix((x, items, bounds), shape=(people, P))
    HW = (H @ model.similarity).tocsr()
    HW.sort_indices()
    nb_key = np.repeat(np.arange(people, dtype=np.int64), np.diff(HW.indptr)) * P + HW.indices
    depth = model.category_top.shape[1]
    cat_key = np.unique(np.repeat(np.nonzero(liked)[0].astype(np.int64), depth) * P
                        + model.category_top[favourite[liked]].ravel())
    at = np.minimum(np.searchsorted(nb_key, cat_key), max(len(nb_key) - 1, 0))
    extra = cat_key[nb_key[at] != cat_key] if len(nb_key) else cat_key
    ckey = np.concatenate([nb_key, extra])
    order = np.argsort(ckey, kind="stable")  # two sorted runs: one merge
    ckey, cf = ckey[order], np.concatenate([HW.data, np.zeros(len(extra))])[order]
    c_owner, candidates = ckey // P, ckey % P
    pop = taste[c_owner, model.category_of[candidates]] * model.within_share[candidates]
    cf_max, pop_max = np.zeros(people), np.zeros(people)
    np.maximum.at(cf_max, c_owner, cf)
    np.maximum.at(pop_max, c_owner, pop)
    scores = cf / np.maximum(cf_max, 1e-12)[c_owner] + taste_weight * pop / np.maximum(pop_max, 1e-12)[c_owner]
    at = np.minimum(np.searchsorted(seen, ckey), len(seen) - 1)
    keep = (scores > 0) & (seen[at] != ckey) & model.in_stock[candidates]
    c_owner, candidates, scores = c_owner[keep], candidates[keep], scores[keep]
    at = np.searchsorted(c_owner, np.arange(people + 1))
    # Each person's candidates are sorted by index, so top_k's ties by position are ties by index.
    return affinity, [candidates[at[r]:at[r + 1]][top_k(scores[at[r]:at[r + 1]], model.personal_list)]
                      for r in range(people)]


def profile_payload(model: Model, shopper: str, loyalty: str | None, products: npt.NDArray[Any],
                    kinds: npt.NDArray[Any], ts: npt.NDArray[Any], qty: npt.NDArray[Any] | None = None,
                    keys: npt.NDArray[Any] | None = None,
                    ranked: tuple[npt.NDArray[Any], npt.NDArray[np.int64], list[list[Any]]] | None = None
                    ) -> dict[str, Any]:
    """A v1 profile payload from one shopper's events (product indices, kinds, timestamps; any order; with
    each event's quantity and order key where the source gave them: the purchase value and "buy it again" use
    them).

    Works on the shopper's own items and their neighbours only, never on catalog-sized arrays, so a build
    of a million shoppers costs a million small computations. ``loyalty`` ``None``: derived by the rules.
    """
    order = np.argsort(ts, kind="stable")
    products, kinds, ts = products[order], kinds[order], ts[order]
    qty = None if qty is None else qty[order]
    keys = None if keys is None else keys[order]
    cards, rules = model.cards, model.rules
    if ranked is None:
        items, x, affinity = history(model, products, kinds)
        personal = personal_list(model, items, x, affinity)
    else:  # computed for many people at once (``personal_lists``, ``again_lists``): the same values
        affinity, personal, again = ranked
    purchases = kinds == PURCHASE
    bought = np.unique(products[purchases]) if purchases.any() else products[:0]
    # Recently viewed, newest first, distinct; the cart is the last add-to-cart not bought.
    recent = list(dict.fromkeys(products[kinds == VIEW][::-1].tolist()))[:12]
    carts = np.flatnonzero(kinds == CART)
    cart = [int(products[carts[-1]])] if len(carts) and products[carts[-1]] not in bought else []
    cart_at = int(ts[carts[-1]]) if cart else 0
    if loyalty is None:
        units = [1] * int(purchases.sum()) if qty is None else qty[purchases].tolist()
        spent = sum(cards[i][4] * max(int(n), 1) for i, n in zip(products[purchases].tolist(), units, strict=True))
        orders = int((kinds == PURCHASE).sum())
        loyalty = next((t for t, n, v in rules.loyalty if orders >= n and spent >= v), "")
    watched = [cards[i][0] for i in recent[:5]]
    # What the edge leaves out as already bought: the most recent MAX_BOUGHT distinct purchases, so a
    # lifetime of orders cannot grow a profile without bound.
    bought_recent = (sorted(bought.tolist()) if len(bought) <= MAX_BOUGHT else
                     sorted(list(dict.fromkeys(products[purchases][::-1].tolist()))[:MAX_BOUGHT]))
    segments: list[str] = []
    if rules.affinity and affinity.max() > 0:
        segments.append(f"likes-{model.category_ids[int(affinity.argmax())]}")
    if loyalty:
        segments.append(f"loyal-{loyalty}")
    if cart and model.now - cart_at >= rules.cart_left_after_s:
        segments.append("cart-left")
    prices = model.prices or {}
    if any(prices.get(w, cards[i][4]) < cards[i][4] for w, i in zip(watched, recent, strict=False)):
        segments.append("price-watcher")
    segments.append("new" if len(products) <= rules.new_max_events else "returning")
    return {
        "id": shopper, "segments": segments, "cards": [cards[i] for i in personal],
        "recent": [cards[i] for i in recent], "bought": [cards[i][0] for i in bought_recent],
        "cart": [cards[i] for i in cart], "cart_updated_at": cart_at, "loyalty": loyalty,
        "categories": list(dict.fromkeys(cards[i][6] for i in recent))[:3], "watched": watched,
        "again": again_entries(model, products, kinds, ts, qty, keys) if ranked is None else again,
    }
