"""The model artifacts of a generation and the one function that turns a shopper's history into a profile.

Shared by the batch build (every shopper) and the origin (one shopper, on an edge miss), so a profile
computed on a miss has exactly the form and the logic of one pushed by a batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

EVENT_WEIGHT = np.array([1.0, 3.0, 5.0])  # view, add_to_cart, purchase
VIEW, CART, PURCHASE = 0, 1, 2


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

    @property
    def index(self) -> dict[str, int]:
        return {c[0]: i for i, c in enumerate(self.cards)}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(directory / "model.npz", category_of=self.category_of, in_stock=self.in_stock,
                            neighbours=self.neighbours, weights=self.weights)
        (directory / "model.json").write_text(json.dumps({
            "generation": self.generation, "now": self.now, "half_life_s": self.half_life_s,
            "personal_list": self.personal_list, "categories": self.categories, "cards": self.cards}))

    @classmethod
    def load(cls, directory: Path) -> Model:
        meta = json.loads((directory / "model.json").read_text())
        with np.load(directory / "model.npz") as arrays:
            return cls(meta["generation"], meta["now"], meta["half_life_s"], meta["personal_list"], meta["cards"],
                       meta["categories"], arrays["category_of"], arrays["in_stock"], arrays["neighbours"],
                       arrays["weights"])


def top_k(scores: npt.NDArray[Any], k: int, exclude: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` best positive scores, best first, ties by index (deterministic)."""
    s = scores.astype(np.float64, copy=True)
    if exclude is not None:
        s[exclude] = -np.inf
    k = min(k, int((s > 0).sum()))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-s, k - 1)[:k]
    ranked: npt.NDArray[np.int64] = part[np.lexsort((part, -s[part]))]
    return ranked


def profile_payload(model: Model, shopper: str, loyalty: str, products: npt.NDArray[Any],
                    kinds: npt.NDArray[Any], ts: npt.NDArray[Any]) -> dict[str, Any]:
    """A v1 profile payload from one shopper's events (product indices, kinds, timestamps; any order)."""
    order = np.argsort(ts, kind="stable")
    products, kinds, ts = products[order], kinds[order], ts[order]
    P = len(model.cards)
    decay = np.exp2(-(model.now - ts) / model.half_life_s)
    x = np.bincount(products, weights=EVENT_WEIGHT[kinds] * decay, minlength=P)
    bought = np.zeros(P, dtype=bool)
    bought[products[kinds == PURCHASE]] = True
    # Personal list: the shopper's weighted history through item-to-item similarity.
    hist = np.flatnonzero(x)
    scores = np.zeros(P)
    np.add.at(scores, model.neighbours[hist].ravel(), (x[hist, None] * model.weights[hist]).ravel())
    personal = top_k(scores, model.personal_list, bought | ~model.in_stock)
    # Recently viewed, newest first, distinct; the cart is the last add-to-cart not bought.
    views = products[kinds == VIEW][::-1]
    recent = list(dict.fromkeys(views.tolist()))[:12]
    carts = np.flatnonzero(kinds == CART)
    cart = [int(products[carts[-1]])] if len(carts) and not bought[products[carts[-1]]] else []
    affinity = np.bincount(model.category_of[products], weights=EVENT_WEIGHT[kinds] * decay,
                           minlength=len(model.categories))
    segments = [f"likes-{model.categories[int(affinity.argmax())]}"] if affinity.max() > 0 else []
    if loyalty:
        segments.append(f"loyal-{loyalty}")
    segments.append("new" if len(products) <= 2 else "returning")
    cards = model.cards
    return {
        "id": shopper, "segments": segments, "cards": [cards[i] for i in personal],
        "recent": [cards[i] for i in recent], "bought": [cards[i][0] for i in np.flatnonzero(bought)],
        "cart": [cards[i] for i in cart], "cart_updated_at": int(ts[carts[-1]]) if cart else 0,
        "loyalty": loyalty, "categories": list(dict.fromkeys(cards[i][6] for i in recent))[:3],
        "watched": [cards[i][0] for i in recent[:5]],
    }
