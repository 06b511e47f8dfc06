"""The held-out splits every relevance figure is computed on (each person's last interactions, or their last
basket), and the metrics summed over them.

Shared by ``personalizer evaluate`` (the evaluation slice) and the build's tuning (the validation slice, cut
from what the evaluation left to train on, so the two never overlap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from personalizer_adapters.batch.build import positions_by_shopper
from personalizer_adapters.batch.model import PURCHASE, baskets_of
from personalizer_adapters.batch.seedgen import Shop


@dataclass(frozen=True)
class Split:
    train: Shop
    targets: dict[int, frozenset[int]]  # evaluated shopper -> held-out products new to them
    short: int                          # people left out: fewer than min_events interactions
    nothing_new: int                    # people left out: their held-out products were all seen before
    kept: npt.NDArray[np.int64]         # positions in the shop's events that train keeps (the rest: the slice)


def holdout_split(shop: Shop, holdout: int, min_events: int) -> Split:
    """Hide each person's last ``holdout`` interactions (by time, then input order); keep the rest to train."""
    ev, S = shop.events, len(shop.shoppers)
    targets: dict[int, frozenset[int]] = {}
    keep = np.ones(len(ev), dtype=bool)
    short = nothing_new = 0
    for s, positions in enumerate(positions_by_shopper(ev, S)):
        if not len(positions):
            continue
        if len(positions) < min_events:
            short += 1
            continue
        by_time = positions[np.argsort(ev["ts"][positions], kind="stable")]
        hidden, before = by_time[-holdout:], by_time[:-holdout]
        new = frozenset(ev["product"][hidden].tolist()) - frozenset(ev["product"][before].tolist())
        if not new:
            nothing_new += 1
            continue
        targets[s] = new
        keep[hidden] = False
    return Split(replace(shop, events=ev[keep]), targets, short, nothing_new, np.flatnonzero(keep))


@dataclass
class Score:
    """Sums of per-person metrics; ``row`` turns them into means."""

    name: str
    seconds: float = 0.0
    n: int = 0
    precision: float = 0.0
    recall: float = 0.0
    ndcg: float = 0.0
    ndcg_sq: float = 0.0
    shown: set[int] = field(default_factory=set)

    def add(self, ranked: list[int], relevant: frozenset[int], k: int) -> float:
        """Count one person's ranked list; returns their NDCG@k."""
        top = ranked[:k]
        hits = [1.0 if p in relevant else 0.0 for p in top]
        dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
        ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
        self.precision += sum(hits) / k
        self.recall += sum(hits) / len(relevant)
        self.ndcg += dcg / ideal
        self.ndcg_sq += (dcg / ideal) ** 2
        self.n += 1
        self.shown.update(top)
        return dcg / ideal

    def row(self, catalog: int) -> dict[str, Any]:
        n = max(self.n, 1)
        mean = self.ndcg / n
        sd = math.sqrt(max(self.ndcg_sq / n - mean * mean, 0.0))
        return {"list": self.name, "people": self.n, "precision": self.precision / n, "recall": self.recall / n,
                "ndcg": mean, "ndcg_ci95": 1.96 * sd / math.sqrt(n), "coverage": len(self.shown) / max(catalog, 1),
                "seconds": self.seconds}


@dataclass(frozen=True)
class BasketSplit:
    train: Shop
    targets: dict[int, frozenset[int]]   # person -> products of their held-out basket
    before: dict[int, frozenset[int]]    # person -> products they bought before it
    at: dict[int, int]                   # person -> when the held-out basket started (the ranking's "now")
    too_few: int                         # people left out: fewer than two baskets
    kept: npt.NDArray[np.int64]          # positions in the shop's events that train keeps (the rest: the slice)


def last_basket_split(shop: Shop) -> BasketSplit:
    ev, S = shop.events, len(shop.shoppers)
    keep = np.ones(len(ev), dtype=bool)
    targets, before, at = {}, {}, {}
    too_few = 0
    for s, positions in enumerate(positions_by_shopper(ev, S)):
        positions = positions[np.argsort(ev["ts"][positions], kind="stable")]
        buys = positions[ev["kind"][positions] == PURCHASE]
        if not len(buys):
            continue
        basket = baskets_of(ev["ts"][buys])
        if basket[-1] < 1:
            too_few += 1
            continue
        start = int(ev["ts"][buys][basket == basket[-1]].min())
        targets[s] = frozenset(ev["product"][buys[basket == basket[-1]]].tolist())
        before[s] = frozenset(ev["product"][buys[basket < basket[-1]]].tolist())
        at[s] = start
        keep[positions[ev["ts"][positions] >= start]] = False
    return BasketSplit(replace(shop, events=ev[keep]), targets, before, at, too_few, np.flatnonzero(keep))
