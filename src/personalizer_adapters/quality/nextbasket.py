"""`personalizer evaluate --protocol next-basket`: each person's last basket held out and scored whole.

The split: a person's purchases are cut into baskets (orders: purchases more than ``BASKET_GAP_S`` apart),
their last basket is hidden with everything they did from its start, and the model is built from the rest.
Targets are the whole basket; the scores are also given for its repeat part (items the person bought
before) and its explore part (new to them), as "A Next Basket Recommendation Reality Check" (Li et al.,
ACM TOIS 2023) asks. Lists are not filtered by what the person bought: re-buying is the point.

Side by side: the project's ``again`` list (ranked by ``personalizer.again.rank`` at the basket's time, as
the edge would), its ``home`` list, and ``again`` then ``home``; with ``tune``, ``again`` with the constants
the build's tuning chooses on the training part (its validation basket is each person's one before the held-out
one); baselines P-TopFreq (the person's most bought), G-TopFreq (everyone's most bought) and TIFU-KNN (Hu et
al., SIGIR 2020).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from personalizer import again as again_rank
from personalizer.again import DUE_FLOOR, Rebuy
from personalizer_adapters.batch.build import build, by_shopper
from personalizer_adapters.batch.model import PURCHASE, Model, baskets_of, profile_payload
from personalizer_adapters.batch.seedgen import Shop
from personalizer_adapters.tuning import BUDGET_S
from personalizer_adapters.tuning.search import tune as tune_on

from .evaluate import Evaluation
from .holdout import Score, last_basket_split

# TIFU-KNN's parameters, as the paper's Instacart setting: group size, within- and across-group decay,
# neighbours, and the weight of the person's own vector against their neighbours'.
TIFU_GROUP, TIFU_RB, TIFU_RG, TIFU_K, TIFU_ALPHA = 3, 0.9, 0.7, 300, 0.9


def purchases_matrix(train: Shop) -> sparse.csr_matrix:
    buys = train.events[train.events["kind"] == PURCHASE]
    return sparse.csr_matrix((np.ones(len(buys)), (buys["shopper"], buys["product"])),
                             shape=(len(train.shoppers), len(train.products)))


def _top(scores: npt.NDArray[Any], k: int, tiebreak: npt.NDArray[Any]) -> list[int]:
    order = np.lexsort((np.arange(len(scores)), -tiebreak, -scores))
    return [int(i) for i in order[:k] if scores[i] > 0 or tiebreak[i] > 0]


def tifu_vectors(train: Shop, group: int = TIFU_GROUP, rb: float = TIFU_RB, rg: float = TIFU_RG) -> sparse.csr_matrix:
    """Each person's TIFU vector: baskets decayed within groups of ``group`` (``rb``), groups decayed (``rg``)."""
    S, P = len(train.shoppers), len(train.products)
    rows, cols, vals = [], [], []
    for s, events in enumerate(by_shopper(train.events, S)):
        buys = events[events["kind"] == PURCHASE]
        if not len(buys):
            continue
        buys = buys[np.argsort(buys["ts"], kind="stable")]
        basket = baskets_of(buys["ts"])
        n = int(basket[-1]) + 1
        # groups counted from the latest basket backwards: the newest group is full
        from_end = n - 1 - basket
        grp, pos_from_end = from_end // group, from_end % group
        groups = int(grp.max()) + 1
        size = np.minimum(group, n - grp * group)  # baskets in each purchase's group
        within = rb ** pos_from_end / size
        across = rg ** grp / groups
        # one purchase counts once per basket: duplicates within a basket are summed then clipped to 1
        key = basket * P + buys["product"]
        uniq, first = np.unique(key, return_index=True)
        rows.append(np.full(len(uniq), s))
        cols.append(buys["product"][first])
        vals.append((within * across)[first])
    if not rows:
        return sparse.csr_matrix((S, P))
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(S, P))


def tifu_knn(train: Shop, k_neighbours: int = TIFU_K, alpha: float = TIFU_ALPHA, *, group: int = TIFU_GROUP,
             rb: float = TIFU_RB, rg: float = TIFU_RG) -> sparse.csr_matrix:
    """TIFU-KNN scores for everyone: ``alpha`` x own vector + (1 - alpha) x mean of the ``k`` most similar."""
    U = tifu_vectors(train, group, rb, rg)
    norms = np.sqrt(np.asarray(U.multiply(U).sum(1)).ravel())
    Un = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ U
    sim = (Un @ Un.T).toarray()
    np.fill_diagonal(sim, -np.inf)
    k = min(k_neighbours, max(U.shape[0] - 1, 1))
    nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(U.shape[0]), k)
    mean = sparse.csr_matrix((np.full(len(rows), 1.0 / k), (rows, nearest.ravel())), shape=(U.shape[0],) * 2) @ U
    return (alpha * U + (1 - alpha) * mean).tocsr()


def evaluate_next_basket(shop: Shop, cfg: dict[str, Any], *, k: int = 12, tune: bool = False,
                         tune_budget: float = BUDGET_S, progress: Callable[[str], None] = lambda _: None) -> Evaluation:
    split = last_basket_split(shop)
    train, S, P = split.train, len(shop.shoppers), len(shop.products)
    people = sorted(split.targets)
    rows: list[dict[str, Any]] = []

    def run(name: str, rank: Callable[[int], list[int]], seconds: float = 0.0) -> None:
        progress(f"evaluate: {name}")
        whole, repeat, explore = Score(name), Score("  └ repeat part"), Score("  └ explore part")
        started = time.perf_counter()
        for s in people:
            ranked = rank(s)
            target = split.targets[s]
            whole.add(ranked, target, k)
            if target & split.before[s]:
                repeat.add(ranked, target & split.before[s], k)
            if target - split.before[s]:
                explore.add(ranked, target - split.before[s], k)
        whole.seconds = repeat.seconds = explore.seconds = time.perf_counter() - started + seconds
        for part, score in (("whole", whole), ("repeat", repeat), ("explore", explore)):
            rows.append({**score.row(P), "of": name, "part": part})

    progress("evaluate: building the project's lists")
    started = time.perf_counter()
    model = build(train, {**cfg, "kv_profiles": 0}).model
    build_s = time.perf_counter() - started
    index = model.index
    per = by_shopper(train.events, S)
    B = purchases_matrix(train)
    global_counts = np.asarray(B.sum(0)).ravel()
    rebought = global_counts * (model.repeat_rate if model.repeat_rate is not None else 0)
    fallback = _top(rebought, k, global_counts)
    profiles: dict[int, dict[str, Any]] = {}

    def profile(s: int) -> dict[str, Any]:
        if s not in profiles:
            e = per[s]
            profiles[s] = profile_payload(model, shop.shoppers[s]["id"], shop.shoppers[s].get("loyalty"),
                                          e["product"], e["kind"], e["ts"])
        return profiles[s]

    def own_rebuys(s: int, m: Model = model, floor: float = DUE_FLOOR) -> list[int]:
        """The person's re-buys ranked as the edge ranks them, at the held-out basket's time."""
        e = per[s]
        payload = profile(s) if m is model else profile_payload(m, shop.shoppers[s]["id"], None, e["product"],
                                                                  e["kind"], e["ts"])
        entries = [Rebuy.parse(x) for x in payload["again"]]
        return [index[c.id] for c in again_rank.rank(entries, split.at[s], floor)]

    def home(s: int) -> list[int]:
        return [index[c[0]] for c in profile(s)["cards"]][:k]

    # again is backfilled as the edge backfills the slot (the re-buys of others); the blend by the home list
    run("again (buy it again)", lambda s: list(dict.fromkeys(own_rebuys(s) + fallback))[:k], build_s)
    run("home (for you)", home)
    run("again, then home", lambda s: list(dict.fromkeys(own_rebuys(s) + home(s)))[:k])
    tuning = None
    if tune:
        started = time.perf_counter()
        tuned = tune_on(train, cfg, budget_s=tune_budget, progress=progress)
        tuning = tuned
        chosen = tuned.chosen
        tuned_model = replace(model, again_half_life=float(chosen.get("again_half_life", model.again_half_life)))
        floor = float(chosen.get("again_due_floor", DUE_FLOOR))
        run("again, tuned", lambda s: list(dict.fromkeys(own_rebuys(s, tuned_model, floor) + fallback))[:k],
            time.perf_counter() - started)
    own = B.tocsr()
    run("P-TopFreq", lambda s: _top(own[s].toarray().ravel(), k, global_counts))
    everyone = _top(global_counts, k, global_counts)
    run("G-TopFreq", lambda s: everyone)
    started = time.perf_counter()
    tifu = tifu_knn(train)
    run("TIFU-KNN", lambda s: _top(tifu[s].toarray().ravel(), k, global_counts), time.perf_counter() - started)
    return Evaluation(k, 1, len(people), split.too_few, 0, P, rows, {},
                      split_note=f"each person's last basket held out (left out: {split.too_few} with fewer "
                                 "than two baskets); repeat = bought before, explore = new to the person",
                      tuning=tuning)
