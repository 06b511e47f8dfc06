"""`personalizer evaluate`: offline quality of the lists, on each shopper's held-out last interactions.

For every shopper with enough history, the last ``holdout`` events are hidden, the model is built from the
rest, and each list is scored against the hidden products the shopper had not touched before:
precision@k, recall@k and NDCG@k for the personal list, the shopper's segment list, the global popular
list, and (for the seed shop, whose latent tastes are known) the best achievable ranking from those tastes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from personalizer import codec, keys

from .build import build, by_shopper, positions_by_shopper
from .model import profile_payload
from .seedgen import CATEGORIES, Shop


@dataclass
class Score:
    precision: float = 0.0
    recall: float = 0.0
    ndcg: float = 0.0
    n: int = 0

    def add(self, ranked: list[int], relevant: set[int], k: int) -> None:
        hits = [1.0 if p in relevant else 0.0 for p in ranked[:k]]
        dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
        ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
        self.precision += sum(hits) / k
        self.recall += sum(hits) / len(relevant)
        self.ndcg += dcg / ideal
        self.n += 1

    def row(self, name: str) -> str:
        n = max(self.n, 1)
        return f"{name:22} {self.precision / n:12.4f} {self.recall / n:10.4f} {self.ndcg / n:8.4f}"


def evaluate(shop: Shop, cfg: dict[str, Any], *, k: int = 12, holdout: int = 3, min_events: int = 6) -> str:
    """The metrics table (text) for ``shop``."""
    ev, S, P = shop.events, len(shop.shoppers), len(shop.products)
    test: dict[int, set[int]] = {}
    keep = np.ones(len(ev), dtype=bool)
    for s, positions in enumerate(positions_by_shopper(ev, S)):
        if len(positions) >= min_events:
            events = ev[positions]
            by_time = np.argsort(events["ts"], kind="stable")
            hidden = set(events["product"][by_time[-holdout:]].tolist()) - set(
                events["product"][by_time[:-holdout]].tolist())
            if hidden:
                test[s] = hidden
                keep[positions[by_time[-holdout:]]] = False
    train = replace(shop, events=ev[keep])
    built = build(train, {**cfg, "kv_profiles": 0})
    model = built.model
    index = model.index
    popular = [index[c[0]] for c in codec.decode(built.records[keys.popular(built.generation)],
                                                  expect="popular").data["cards"]]
    segment_lists = {k_[len(keys.generation_prefix(built.generation)) + 4:]:
                     [index[c[0]] for c in codec.decode(v, expect="segment").data["cards"]]
                     for k_, v in built.records.items() if ":seg:" in k_}
    tastes = [s.get("taste") for s in shop.shoppers]
    within = np.zeros(P)
    pop = np.bincount(train.events["product"], minlength=P).astype(float)
    for c in range(len(model.categories)):
        members = model.category_of == c
        within[members] = pop[members] / max(pop[members].sum(), 1.0)
    scores = {"personal (user tier)": Score(), "segment": Score(), "popular": Score()}
    if all(t is not None for t in tastes):
        scores["latent taste (oracle)"] = Score()
        taste_order = [list(CATEGORIES).index(c) for c in model.categories]
    train_per = by_shopper(train.events, S)
    for s, hidden in sorted(test.items()):
        events = train_per[s]
        seen = set(events["product"].tolist())  # targets are new to the shopper: so must the lists be
        prof = profile_payload(model, shop.shoppers[s]["id"], shop.shoppers[s].get("loyalty"), events["product"],
                               events["kind"], events["ts"])
        personal = [index[c[0]] for c in prof["cards"]]
        first_segment = next((g for g in prof["segments"] if g in segment_lists), None)
        segment = segment_lists.get(first_segment, popular) if first_segment else popular
        scores["personal (user tier)"].add(personal, hidden, k)
        scores["segment"].add([p for p in segment if p not in seen], hidden, k)
        scores["popular"].add([p for p in popular if p not in seen], hidden, k)
        if "latent taste (oracle)" in scores:
            taste = np.asarray(tastes[s])[taste_order]  # the generator's category order -> the model's
            oracle = taste[model.category_of] * within
            oracle[list(seen)] = -1
            scores["latent taste (oracle)"].add(np.argsort(-oracle, kind="stable")[:k].tolist(), hidden, k)
    lines = [f"evaluate: {len(test)} shoppers, last {holdout} interaction(s) held out, k={k}",
             f"{'list':22} {'precision@k':>12} {'recall@k':>10} {'NDCG@k':>8}"]
    lines += [score.row(name) for name, score in scores.items()]
    return "\n".join(lines)
