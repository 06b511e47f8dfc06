"""`personalizer evaluate`: the project's lists against the baselines a recommender engineer runs first.

One split for every list (``holdout_split``): each person's last ``holdout`` interactions are hidden, in
their own time order, and the targets are the hidden products that are new to the person (a list may not
re-recommend what the person already saw, so neither may the target). Everything is built from the rest.
Each list is then scored on the same people with precision@k, recall@k, NDCG@k (binary relevance) and
catalog coverage, with the seconds it took (fit plus ranking everyone):

- the project: the personal list (``profile_payload``, the user tier) with today's fixed constants and, with
  ``tune``, with the constants the build's tuning chooses (``tuning.search``, run on this split's training part
  only: its validation slice is cut from that, never from the held-out slice scored here), the person's
  segment list and the global popular list, exactly as the build would push them;
- baselines: interaction-count popularity, cosine item-kNN, EASE (Steck 2019; when the catalog is at most
  ``EASE_MAX_ITEMS``) and ALS (the ``implicit`` library, when installed);
- on the seed shop, whose shoppers' latent tastes are known, the ranking by those tastes (an oracle).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from personalizer import codec, keys
from personalizer_adapters.batch.build import build, by_shopper, fit_model
from personalizer_adapters.batch.model import profile_payload
from personalizer_adapters.batch.seedgen import CATEGORIES, Shop
from personalizer_adapters.tuning import BUDGET_S
from personalizer_adapters.tuning.search import Tuning
from personalizer_adapters.tuning.search import tune as tune_on

from .holdout import Score, holdout_split

EASE_MAX_ITEMS = 20_000   # EASE inverts a dense items x items matrix
EASE_LAMBDA = 200.0
ALS_FACTORS = 64

Ranker = Callable[[int, npt.NDArray[np.int64]], list[int]]  # (shopper, products seen) -> ranked products


def _unseen(scores: npt.NDArray[Any], seen: npt.NDArray[np.int64], k: int) -> list[int]:
    """The ``k`` best-scored products not in ``seen``, best first, ties by index."""
    s = scores.astype(np.float64, copy=True)
    s[seen] = -np.inf
    k = min(k, len(s))
    part = np.argpartition(-s, k - 1)[:k]
    ranked = part[np.lexsort((part, -s[part]))]
    return [int(p) for p in ranked if np.isfinite(s[p])]


def interactions(train: Shop) -> sparse.csr_matrix:
    """Person x product, 1 where the person interacted (any kind), as the baselines see the data."""
    ev = train.events
    X = sparse.csr_matrix((np.ones(len(ev)), (ev["shopper"], ev["product"])),
                          shape=(len(train.shoppers), len(train.products)))
    X.data[:] = 1.0
    return X


def count_popularity(X: sparse.csr_matrix, train: Shop, k: int) -> Ranker:
    counts = np.bincount(train.events["product"], minlength=X.shape[1]).astype(np.float64)
    return lambda s, seen: _unseen(counts, seen, k)


def item_knn(X: sparse.csr_matrix, train: Shop, k: int) -> Ranker:
    norms = np.sqrt(np.asarray(X.sum(0)).ravel())
    Xn = (X @ sparse.diags(1.0 / np.maximum(norms, 1e-12))).tocsr()
    sim = (Xn.T @ Xn).tocsr()
    sim.setdiag(0)
    return lambda s, seen: _unseen(np.asarray((X[s] @ sim).todense()).ravel(), seen, k)


def ease(X: sparse.csr_matrix, train: Shop, k: int, lam: float = EASE_LAMBDA) -> Ranker:
    G = (X.T @ X).toarray()
    G[np.diag_indices_from(G)] += lam
    P = np.linalg.inv(G)
    B = P / -np.diag(P)
    B[np.diag_indices_from(B)] = 0.0
    return lambda s, seen: _unseen(np.asarray(X[s] @ B).ravel(), seen, k)


def als(X: sparse.csr_matrix, train: Shop, k: int) -> Ranker:
    from implicit.als import AlternatingLeastSquares  # optional: the `eval` extra
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):  # implicit parallelises itself; a threaded BLAS under it only contends
        model = AlternatingLeastSquares(factors=ALS_FACTORS, iterations=15, regularization=0.05, random_state=0)
        model.fit(X, show_progress=False)
    users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda s, seen: _unseen(items @ users[s], seen, k)


BASELINES: dict[str, Callable[[sparse.csr_matrix, Shop, int], Ranker]] = {
    "count popularity": count_popularity, "item-kNN (cosine)": item_knn, "EASE": ease, "ALS (implicit)": als,
}


@dataclass(frozen=True)
class Evaluation:
    k: int
    holdout: int
    people: int
    short: int
    nothing_new: int
    catalog: int
    rows: list[dict[str, Any]]
    skipped: dict[str, str]  # list -> why it was not run
    split_note: str = ""     # how the split was made, when not the last-interactions one
    tuning: Tuning | None = None  # what the tuning chose on its validation slice
    # event positions in the shop given: the slice held out here, and the tuning's validation slice
    slices: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)

    def table(self) -> str:
        note = self.split_note or (
            f"last {self.holdout} interaction(s) held out (left out: {self.short} with too short a history, "
            f"{self.nothing_new} whose held-out items were all seen before)")
        lines = [f"evaluate: {self.people} people, k={self.k}, {note}",
                 f"{'list':26} {'precision@k':>11} {'recall@k':>9} {'NDCG@k':>7} {'± 95%':>7} {'coverage':>8} "
                 f"{'seconds':>8}"]
        lines += [f"{r['list']:26} {r['precision']:11.4f} {r['recall']:9.4f} {r['ndcg']:7.4f} {r['ndcg_ci95']:7.4f} "
                  f"{r['coverage']:8.3f} {r['seconds']:8.2f}" for r in self.rows]
        lines += [f"{name:26} not run: {why}" for name, why in self.skipped.items()]
        if self.tuning is not None:
            lines += self.tuning.summary()
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {"k": self.k, "holdout": self.holdout, "people": self.people, "left_out": {
            "short_history": self.short, "nothing_new": self.nothing_new}, "catalog": self.catalog,
                "lists": self.rows, "not_run": self.skipped,
                **({"tuning": self.tuning.as_json()} if self.tuning is not None else {})}

    def ndcg(self, name: str) -> float:
        return float(next(r["ndcg"] for r in self.rows if r["list"] == name))


def evaluate(shop: Shop, cfg: dict[str, Any], *, k: int = 12, holdout: int = 3, min_events: int = 6,
             baselines: tuple[str, ...] = tuple(BASELINES), tune: bool = False, tune_budget: float | None = None,
             progress: Callable[[str], None] = lambda _: None) -> Evaluation:
    """Score the project's lists and the ``baselines`` on one held-out split of ``shop``; ``tune``: also the
    personal list as a tuned build would serve it (``tune_budget``: the search's seconds)."""
    split = holdout_split(shop, holdout, min_events)
    train, S, P = split.train, len(shop.shoppers), len(shop.products)
    people = sorted(split.targets)
    train_per = by_shopper(train.events, S)
    seen = {s: np.unique(train_per[s]["product"]).astype(np.int64) for s in people}
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}

    def run(name: str, fit: Callable[[], Ranker]) -> None:
        progress(f"evaluate: {name}")
        score = Score(name)
        started = time.perf_counter()
        rank = fit()
        for s in people:
            score.add(rank(s, seen[s]), split.targets[s], k)
        score.seconds = time.perf_counter() - started
        rows.append(score.row(P))

    # The project's lists, as the build makes them.
    progress("evaluate: building the project's lists")
    started = time.perf_counter()
    built = build(train, {**cfg, "kv_profiles": 0})
    build_s = time.perf_counter() - started
    model, index = built.model, built.model.index
    popular = np.array([index[c[0]] for c in codec.decode(built.records[keys.popular(built.generation)],
                                                         expect="popular").data["cards"]], dtype=np.int64)
    prefix = len(keys.generation_prefix(built.generation)) + len("seg:")
    segment_lists = {key[prefix:]: np.array([index[c[0]] for c in codec.decode(v, expect="segment").data["cards"]],
                                            dtype=np.int64)
                     for key, v in built.records.items() if keys.parse(key)[0] == "segment"}
    profiles: dict[int, dict[str, Any]] = {}

    def profile(s: int) -> dict[str, Any]:
        if s not in profiles:
            events = train_per[s]
            shopper = shop.shoppers[s]
            profiles[s] = profile_payload(model, shopper["id"], shopper.get("loyalty"), events["product"],
                                          events["kind"], events["ts"])
        return profiles[s]

    def listed(cards: npt.NDArray[np.int64]) -> Ranker:
        return lambda s, seen_: [int(p) for p in cards[~np.isin(cards, seen_)][:k]]

    def segment(s: int, seen_: npt.NDArray[np.int64]) -> list[int]:
        first = next((g for g in profile(s)["segments"] if g in segment_lists), None)
        return listed(segment_lists[first] if first else popular)(s, seen_)

    run("personal (user tier)", lambda: lambda s, _: [index[c[0]] for c in profile(s)["cards"]])
    rows[-1]["seconds"] += build_s
    tuning, slices = None, {"evaluation": np.setdiff1d(np.arange(len(shop.events)), split.kept)}
    if tune:
        started = time.perf_counter()
        tuned = tune_on(train, cfg, budget_s=BUDGET_S if tune_budget is None else tune_budget, progress=progress)
        tuned_model = fit_model(train, {**cfg, **tuned.chosen}).model
        tune_s = time.perf_counter() - started
        tuning, slices["validation"] = tuned, split.kept[tuned.validation_rows]

        def tuned_list(s: int, _: npt.NDArray[np.int64]) -> list[int]:
            e = train_per[s]
            return [tuned_model.index[c[0]] for c in profile_payload(
                tuned_model, shop.shoppers[s]["id"], shop.shoppers[s].get("loyalty"), e["product"], e["kind"],
                e["ts"])["cards"]]

        run(f"personal, tuned ({tuned.served})", lambda: tuned_list)
        rows[-1]["seconds"] += tune_s
    run("segment", lambda: segment)
    run("popular", lambda: listed(popular))
    X = interactions(train)
    for name in baselines:
        if name == "EASE" and P > EASE_MAX_ITEMS:
            skipped[name] = f"{P:,} products (EASE inverts a dense matrix; at most {EASE_MAX_ITEMS:,})"
            continue
        try:
            run(name, lambda fit=BASELINES[name]: fit(X, train, k))  # type: ignore[misc]
        except ImportError as exc:
            skipped[name] = f"{exc.name} is not installed (pip install '.[eval]')"
    tastes = [s.get("taste") for s in shop.shoppers]
    if all(t is not None for t in tastes):
        taste_order = [list(CATEGORIES).index(c) for c in model.categories]
        counts = np.bincount(train.events["product"], minlength=P).astype(float)
        within = counts / np.maximum(np.bincount(model.category_of, weights=counts)[model.category_of], 1.0)
        run("latent taste (oracle)", lambda: lambda s, seen_: _unseen(
            np.asarray(tastes[s])[taste_order][model.category_of] * within, seen_, k))
    return Evaluation(k, holdout, len(people), split.short, split.nothing_new, P, rows, skipped, tuning=tuning,
                      slices=slices)
