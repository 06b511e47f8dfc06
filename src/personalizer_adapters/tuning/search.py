"""Tuning at build time: the model's constants chosen on the shop's own data, honestly, within a budget.

Constants chosen by looking at two development data sets keep failing on the third shop (a grocery repeats
weekly, a fashion shop never repeats, a DIY shop has long gaps). So the build chooses them on the shop's data:

- **The validation slice.** Each person's last ``HOLDOUT`` interactions are held out (``holdout_split``: the
  targets are the held-out products new to the person, as in ``personalizer evaluate``); the models are fit on
  the rest. For "buy it again", each person's last basket (``last_basket_split``). ``personalizer evaluate``
  tunes on its own training part only, so the validation slice is never the slice it reports
  (``Tuning.validation_rows`` says which events were held out; a test holds that they never meet).
- **The search.** Coordinate descent over a grid of each constant (``GRID``), starting at the config's
  values: each constant in turn tries every value of its grid with the others at their best so far, and
  keeps a value only if it scores strictly higher (NDCG@k on validation), until a round changes nothing.
  Changing the similarity or the popularity half-life refits the item stages on the build's engine
  (``fit_model``, cached per pair); the recency half-life and the taste weight only re-rank.
- **The guard.** The tuned list is scored against the textbook lists the build can serve in its place:
  popularity, EASE's list (where the catalog allows EASE) and item-kNN's (the neighbour lists over the plain
  history). The search sees only two thirds of the validation people; the guard is decided on the other
  third, which the search never saw (the best of many trials on the same people would look better than it
  is). The tuned list is served only if it beats the best of those lists there; otherwise that list is served
  as the personal list (``Model.personal_source``), so a shop is not served worse than the textbook answer on
  its own data. The scores reported are the guard people's, with the paired per-person gain over the best
  textbook list and its one-sided 95% lower bound (how sure the comparison is; asking for a significant gain
  instead served EASE's list on The Complete Journey where the tuned list scored 0.0310 against its 0.0247).
- **Enough people.** With fewer than ``MIN_PEOPLE`` validation people the build keeps today's constants: the
  scores of a few hundred people cannot tell the constants apart (see ``MIN_PEOPLE``).
- **Cost.** At most ``people`` shoppers (default 20,000, drawn with the config's seed) are tuned on: the
  fits and the scoring see only their events, so the cost does not grow with the shop. The search stops
  when ``budget_s`` is spent (after the trial under way) and keeps the best point so far; the guard and the
  re-buy constants are then scored regardless. Given the same data, seed and a budget that is not reached,
  the result is the same (``stopped`` says when the budget cut the search short).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from personalizer.again import DUE_FLOOR, Rebuy
from personalizer.again import rank as again_rank
from personalizer_adapters.batch.build import (
    EASE_LAMBDA,
    EASE_MAX_ITEMS,
    NEIGHBOURS_K,
    EaseCache,
    by_shopper,
    fit_model,
)
from personalizer_adapters.batch.model import (
    AGAIN_HALF_LIFE,
    Model,
    again_entries,
    history,
    order_keys,
    personal_list,
    quantities,
)
from personalizer_adapters.batch.seedgen import Shop
from personalizer_adapters.engine.base import Engine, borrowed
from personalizer_adapters.quality.holdout import Score, holdout_split, last_basket_split

from . import BUDGET_S, PEOPLE

HOLDOUT, MIN_EVENTS, K = 3, 6, 12   # the validation slice and the metric: as `personalizer evaluate`'s defaults
# Fewer validation people than this: too few to tune on, today's constants. On Instacart's 593-person sample
# (284 validation people, 94 for the guard) the guard's NDCG intervals (± 0.02) were as wide as the scores, the
# search followed noise (its list scored 0.0115 on the evaluation slice against today's 0.0159) and the guard
# could not tell.
MIN_PEOPLE = 500
GUARD_SHARE = 1 / 3                  # of the validation people: kept from the search, to decide the guard on
Z_ONE_SIDED_95 = 1.645
# In the order the search tries them: the constants that only re-rank first, then those that refit the item
# stages, the similarity last (an EASE inverse per λ), so a budget that runs out has spent it on the cheap ones.
GRID: dict[str, tuple[Any, ...]] = {
    "history": ("weighted", "distinct"),           # a history's items weighed by kind, or once each
    "recency_half_life": (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0),  # interactions back in a history
    "taste_weight": (0.0, 0.03, 0.1, 0.3, 1.0, 3.0),
    "half_life_days": (7.0, 30.0, 90.0, 365.0),       # popularity's decay (the taste term and the popular list)
    "similarity": ("ease:50", "ease:200", "ease:800", "knn:25", "knn:50", "knn:100"),
}
AGAIN_GRID: dict[str, tuple[float, ...]] = {
    "again_half_life": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),  # orders back
    "again_due_floor": (0.0, 0.3, 0.6, 1.0),
}
FIT = ("similarity", "half_life_days")  # the constants that change the item stages (a refit); the rest re-rank
BASELINES = ("popularity", "EASE", "item-kNN")


def similarity_settings(value: str) -> dict[str, Any]:
    """A grid value of the similarity as config: ``"ease:200"`` -> EASE with λ 200, ``"knn:50"`` -> item-kNN
    keeping 50 neighbours per item."""
    kind, _, param = value.partition(":")
    if kind == "ease":
        return {"similarity": "ease", "ease_lambda": float(param)}
    return {"similarity": "knn", "neighbours_k": int(param)}


def settings(point: dict[str, Any]) -> dict[str, Any]:
    """A point of the search as the config keys the build reads."""
    return {**similarity_settings(point["similarity"]), "history": point["history"],
            **{name: float(point[name]) for name in ("half_life_days", "recency_half_life", "taste_weight")}}


def ease_allowed(cfg: dict[str, Any], products: int) -> bool:
    return int(cfg.get("ease_max_items", EASE_MAX_ITEMS)) >= products


def start_point(cfg: dict[str, Any], products: int) -> dict[str, Any]:
    """The point today's constants make (``--no-tune``): where the search starts."""
    ease = ease_allowed(cfg, products) and cfg.get("similarity", "ease") != "knn"
    sim = (f"ease:{float(cfg.get('ease_lambda', EASE_LAMBDA)):g}" if ease
           else f"knn:{int(cfg.get('neighbours_k', NEIGHBOURS_K))}")
    return {"similarity": sim, "half_life_days": float(cfg["half_life_days"]),
            "history": str(cfg.get("history", Model.history)),
            "recency_half_life": float(cfg.get("recency_half_life", Model.recency_half_life)),
            "taste_weight": float(cfg.get("taste_weight", Model.taste_weight))}


def fingerprint(shop: Shop, cfg: dict[str, Any], people: int, budget_s: float) -> str:
    """What a tuning result depends on: the events, the catalog, the config, the grids, the sample and budget."""
    h = hashlib.sha256(shop.events.tobytes())
    h.update(repr([(p["id"], p["category"], p["stock"] > 0) for p in shop.products]).encode())
    h.update(repr((sorted((k, repr(v)) for k, v in cfg.items()), GRID, AGAIN_GRID, people, budget_s, HOLDOUT,
                   MIN_EVENTS, K)).encode())
    return h.hexdigest()[:24]


@dataclass
class Tuning:
    """What the tuning chose and why: ``chosen`` is what the build adds to its config."""

    chosen: dict[str, Any]
    served: str                          # "tuned", or the baseline served as the personal list (the guard)
    point: dict[str, Any]                # the tuned constants
    scores: dict[str, dict[str, Any]]    # list -> validation row (Score.row): tuned, fixed, the baselines
    trials: int
    seconds: float
    budget_s: float
    stopped: bool                        # the budget ran out before the search had finished
    people: int                          # validation people
    sampled: int                         # shoppers tuned on (after sampling)
    shoppers: int                        # shoppers with events in the data
    again: dict[str, Any]                # the re-buy constants' search (or why it was skipped)
    fingerprint: str = ""
    validation_rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    note: str = ""                       # why the search did not run
    guard: dict[str, Any] = field(default_factory=dict)  # the tuned list against the best baseline, paired

    def as_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "served": self.served, "point": self.point, "validation": self.scores,
                "k": K, "holdout": HOLDOUT, "trials": self.trials, "seconds": round(self.seconds, 2),
                "budget_s": self.budget_s, "stopped_by_budget": self.stopped, "people": self.people,
                "sampled_shoppers": self.sampled, "shoppers": self.shoppers, "again": self.again,
                "fingerprint": self.fingerprint, "note": self.note, "guard": self.guard}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Tuning:
        return cls(d["chosen"], d["served"], d["point"], d["validation"], d["trials"], d["seconds"], d["budget_s"],
                   d["stopped_by_budget"], d["people"], d["sampled_shoppers"], d["shoppers"], d["again"],
                   d["fingerprint"], note=d.get("note", ""), guard=d.get("guard", {}))

    def summary(self) -> list[str]:
        if self.note:
            return [f"tune: {self.note}: today's constants"]
        row = self.scores
        point = ", ".join(f"{k} {v}" for k, v in self.point.items())
        lines = [f"tune: {self.trials} trials in {self.seconds:.0f}s on {self.people:,} people's last {HOLDOUT} "
                 f"interactions ({self.sampled:,} of {self.shoppers:,} shoppers)"
                 f"{', stopped by the budget' if self.stopped else ''}: {point}",
                 f"tune: validation NDCG@{K} on the {self.guard['people']:,} people the search did not see: "
                 + ", ".join(f"{name} {r['ndcg']:.4f} ± {r['ndcg_ci95']:.4f}" for name, r in row.items())]
        if self.served != "tuned":
            lines.append(f"tune: the tuned list does not beat {self.served} on validation (gain "
                         f"{self.guard['gain']:+.4f}, 95% lower bound {self.guard['lower95']:+.4f}): "
                         f"{self.served}'s list is served as the personal list")
        else:
            lines.append(f"tune: the tuned list beats {self.guard['against']}, the best textbook list, by "
                         f"{self.guard['gain']:+.4f} (95% lower bound {self.guard['lower95']:+.4f}): it is served")
        if "chosen" in self.again:
            lines.append("tune: buy it again: " + ", ".join(f"{k} {v}" for k, v in self.again["chosen"].items())
                         + f" (NDCG@12 {self.again['ndcg']:.4f} against {self.again['fixed_ndcg']:.4f})")
        elif "skipped" in self.again:
            lines.append(f"tune: buy it again: {self.again['skipped']}")
        return lines


class _Validation:
    """The validation people's training histories (``per``: each shopper's training events; kept in time
    order) and targets; scores a model's personal list."""

    def __init__(self, per: list[npt.NDArray[Any]], targets: dict[int, frozenset[int]], people: list[int],
                 k: int) -> None:
        self.k, self.targets = k, targets
        self.history: dict[int, tuple[npt.NDArray[Any], npt.NDArray[Any]]] = {}
        for s in people:
            e = per[s][np.argsort(per[s]["ts"], kind="stable")]
            self.history[s] = (e["product"], e["kind"])

    def score(self, name: str, model: Model) -> tuple[dict[str, Any], npt.NDArray[np.float64]]:
        """The list's row (``Score.row``) and each person's NDCG@k, in the order of ``people``."""
        score, each = Score(name), []
        for s, (products, kinds) in self.history.items():
            if not len(products):
                ranked: list[int] = []
            else:
                items, x, affinity = history(model, products, kinds)
                ranked = personal_list(model, items, x, affinity).tolist()
            each.append(score.add(ranked, self.targets[s], self.k))
        return score.row(len(model.cards)), np.array(each)


def _sample(shop: Shop, people: int, seed: int) -> tuple[Shop, npt.NDArray[np.int64], int]:
    """At most ``people`` shoppers with events (drawn with ``seed``), their events, and how many have events."""
    ev = shop.events
    active = np.unique(ev["shopper"])
    if len(active) <= people:
        return shop, np.arange(len(ev), dtype=np.int64), len(active)
    chosen = np.sort(np.random.default_rng(seed).choice(active, people, replace=False))
    rows = np.flatnonzero(np.isin(ev["shopper"], chosen))
    return replace(shop, events=ev[rows]), rows, len(active)


def tune(shop: Shop, cfg: dict[str, Any], *, engine: Engine | None = None, budget_s: float = BUDGET_S,
         people: int = PEOPLE, grid: dict[str, tuple[Any, ...]] | None = None,
         progress: Callable[[str], None] = lambda _: None) -> Tuning:
    """Search the model's constants on ``shop``'s own validation slice; ``Tuning.chosen`` is what to build with.
    ``grid``: the constants to search and their values (default ``GRID``; one left out keeps the config's)."""
    started = time.perf_counter()
    deadline = started + budget_s
    P = len(shop.products)
    fixed = start_point(cfg, P)
    sample, rows, shoppers = _sample(shop, people, int(cfg.get("seed", 0)))
    split = holdout_split(sample, HOLDOUT, MIN_EVENTS)
    hidden = np.ones(len(sample.events), dtype=bool)
    hidden[split.kept] = False
    validation_rows = rows[hidden]
    sampled = len(np.unique(sample.events["shopper"]))
    if len(split.targets) < MIN_PEOPLE:
        note = (f"{len(split.targets)} people with {MIN_EVENTS}+ interactions and something new in their last "
                f"{HOLDOUT}: at least {MIN_PEOPLE} are needed to tune on")
        return Tuning(settings(fixed), "fixed", fixed, {}, 0, time.perf_counter() - started, budget_s, False,
                      len(split.targets), sampled, shoppers, {"skipped": "not run"},
                      fingerprint(shop, cfg, people, budget_s), validation_rows, note)
    people_order = np.random.default_rng(int(cfg.get("seed", 0)) + 1).permutation(sorted(split.targets)).tolist()
    n_guard = max(MIN_PEOPLE // 2, int(len(people_order) * GUARD_SHARE))
    per = by_shopper(split.train.events, len(split.train.shoppers))  # each training history, split once for both
    search = _Validation(per, split.targets, sorted(people_order[n_guard:]), K)
    guard = _Validation(per, split.targets, sorted(people_order[:n_guard]), K)
    del per
    progress(f"tune: {len(split.targets):,} validation people ({sampled:,} of {shoppers:,} shoppers; "
             f"{len(guard.history):,} kept for the guard), budget {budget_s:.0f}s")
    with borrowed(engine, progress) as on:
        fits: dict[tuple[str, float], Model] = {}
        ease: EaseCache = {}  # EASE's inverse does not depend on the popularity half-life: once per λ

        def model_at(point: dict[str, Any], **change: Any) -> Model:
            key = (point["similarity"], float(point["half_life_days"]))
            if key not in fits:
                fits[key] = fit_model(split.train, {**cfg, **settings(point), "personal_source": "model"},
                                      engine=on, ease_cache=ease).model
            return replace(fits[key], taste_weight=float(point["taste_weight"]), history=str(point["history"]),
                           recency_half_life=float(point["recency_half_life"]), **change)

        tried: dict[tuple[Any, ...], float] = {}  # coordinate descent comes back to points: each is scored once

        def trial(point: dict[str, Any]) -> float:
            key = tuple(point[name] for name in GRID)
            if key in tried:
                return tried[key]
            trials = len(tried) + 1
            ndcg = tried[key] = float(search.score("tuned", model_at(point))[0]["ndcg"])
            progress(f"tune: trial {trials}: {point} -> NDCG@{K} {ndcg:.4f} "
                     f"({time.perf_counter() - started:.0f}s)")
            return ndcg

        best, best_ndcg = dict(fixed), trial(fixed)
        stopped = False
        search_grid = {name: tuple(v for v in values if name != "similarity" or not str(v).startswith("ease")
                                   or ease_allowed(cfg, P)) for name, values in (grid or GRID).items()}
        changed = True
        while changed and not stopped:
            changed = False
            for name, values in search_grid.items():
                for value in values:
                    if value == best[name]:
                        continue
                    if time.perf_counter() >= deadline:
                        stopped = True
                        break
                    point = {**best, name: value}
                    ndcg = trial(point)
                    if ndcg > best_ndcg:
                        best, best_ndcg, changed = point, ndcg, True
                if stopped:
                    break
        trials = len(tried)
        plain = {"EASE": f"ease:{EASE_LAMBDA:g}", "item-kNN": f"knn:{NEIGHBOURS_K}"}
        candidates = {"tuned": model_at(best), "fixed": model_at(fixed),
                      "popularity": model_at(best, personal_source="popularity")}
        for name, sim in plain.items():
            if name != "EASE" or ease_allowed(cfg, P):
                candidates[name] = model_at({**best, "similarity": sim}, personal_source="similarity")
        scored = {name: guard.score(name, model) for name, model in candidates.items()}
        scores = {name: row for name, (row, _) in scored.items()}
        baseline = max((n for n in BASELINES if n in scores), key=lambda n: (scores[n]["ndcg"], -BASELINES.index(n)))
        gain = scored["tuned"][1] - scored[baseline][1]
        lower = float(gain.mean() - Z_ONE_SIDED_95 * gain.std() / np.sqrt(max(len(gain), 1)))
        chosen = settings(best)
        served = "tuned"
        if not scores["tuned"]["ndcg"] > scores[baseline]["ndcg"]:
            served = baseline
            chosen["personal_source"] = "popularity" if baseline == "popularity" else "similarity"
            if baseline in plain:
                chosen |= similarity_settings(plain[baseline])
        again, again_rows = _tune_again(sample, {**cfg, **chosen}, on, progress)
    chosen |= again.get("chosen", {})
    validation_rows = np.union1d(validation_rows, rows[again_rows])
    result = Tuning(chosen, served, best, scores, trials, time.perf_counter() - started, budget_s, stopped,
                    len(split.targets), sampled, shoppers, again, fingerprint(shop, cfg, people, budget_s),
                    validation_rows, guard={"against": baseline, "people": len(gain), "gain": float(gain.mean()),
                                            "lower95": lower, "search_ndcg": tried[tuple(best[n] for n in GRID)]})
    for line in result.summary():
        progress(line)
    return result


def _tune_again(sample: Shop, cfg: dict[str, Any], engine: Engine,
                progress: Callable[[str], None]) -> tuple[dict[str, Any], npt.NDArray[np.int64]]:
    """The "buy it again" constants (the weight's half-life in orders, the due floor), on each person's last
    basket: the targets are the products in it they had bought before, ranked as the edge ranks them at the
    basket's time. Returns the search's summary (``chosen`` when it ran) and the held-out event positions."""
    split = last_basket_split(sample)
    hidden = np.ones(len(sample.events), dtype=bool)
    hidden[split.kept] = False
    people = sorted(s for s, t in split.targets.items() if t & split.before[s])
    if len(people) < MIN_PEOPLE:
        return {"skipped": f"{len(people)} people re-bought something in their last basket "
                           f"(at least {MIN_PEOPLE} are needed): today's constants"}, np.flatnonzero(hidden)
    model = fit_model(split.train, cfg, engine=engine).model
    index = model.index
    per = by_shopper(split.train.events, len(sample.shoppers))
    events = {s: per[s][np.argsort(per[s]["ts"], kind="stable")] for s in people}
    results: dict[tuple[float, float], float] = {}
    for half_life in AGAIN_GRID["again_half_life"]:
        m = replace(model, again_half_life=half_life)
        entries = {s: [Rebuy.parse(x) for x in again_entries(m, e["product"], e["kind"], e["ts"], quantities(e),
                                                             order_keys(e))] for s, e in events.items()}
        for floor in AGAIN_GRID["again_due_floor"]:
            score = Score("again")
            for s in people:
                ranked = [index[c.id] for c in again_rank(entries[s], split.at[s], floor)]
                score.add(ranked, split.targets[s] & split.before[s], K)
            results[(half_life, floor)] = float(score.row(len(model.cards))["ndcg"])
    fixed = (AGAIN_HALF_LIFE, DUE_FLOOR)
    best = max(results, key=lambda key: (results[key], key == fixed))  # today's constants win a tie
    progress(f"tune: buy it again on {len(people):,} people's last baskets: half-life {best[0]:g} orders, "
             f"due floor {best[1]:g}")
    return {"chosen": {"again_half_life": best[0], "again_due_floor": best[1]}, "people": len(people),
            "ndcg": results[best], "fixed_ndcg": results.get(fixed, 0.0)}, np.flatnonzero(hidden)
