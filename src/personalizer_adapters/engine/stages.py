"""The build's relational stages, written once in DuckDB's SQL; any engine of ``base`` runs them.

From the events (``ev``: shopper and product indices, kind, time, order key) and the catalog (``items``:
product index, category index, out of stock), per product:

- ``item_stats``: popularity (each event's weight halving every ``half_life_days``), buyers, re-buyers (people
  who bought it again in a later basket) and the median interval between one person's consecutive purchases;
- ``touch_pairs`` / ``buy_pairs``: co-occurrence of two items in people's histories (any event) and in their
  carts and purchases, as cosine similarity, over each person's ``PAIR_HISTORY`` most recent items;
- the lists the records need: item-kNN neighbours (``NEIGHBOURS_K``), also-bought (co-purchase, taste to break
  ties, in stock only), complement candidates (strongest co-purchases), and per category the categories most
  bought alongside it.

Every figure an engine sums is an integer (popularity in fixed point, ``FIXED`` units of weight), every float
is computed from integers by one correctly rounded operation, and every list is in a total order (score, then
index): the same rows on every engine, so DuckDB and Spark build the same records byte for byte.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from personalizer_adapters.batch.model import BASKET_GAP_S, CART, EVENT_WEIGHT, PURCHASE, VIEW, order_keys
from personalizer_adapters.store.base import NO_ORDER

from .base import Engine

FIXED = 1_000_000_000  # popularity's fixed point: an event of weight 1 today is 10⁹
# Each person's most recent distinct items that count for co-occurrence: a history of n items makes n² pairs,
# all on one person (one task of a distributed join). The generated 1M shop's heaviest shopper has 41,064 items,
# 1.7 billion pairs on their own; capped, a million. Items beyond the cap still count for everything else.
PAIR_HISTORY = 1_000


def _recent(where: str, cap: int) -> str:
    """Distinct (shopper, product) rows of ``ev`` matching ``where``, each person's ``cap`` most recent products
    (by their last event; ties by product)."""
    return f"""
SELECT shopper, product FROM (
  SELECT shopper, product, ROW_NUMBER() OVER (PARTITION BY shopper ORDER BY MAX(ts) DESC, product) AS rn
  FROM ev WHERE {where} GROUP BY shopper, product) AS h
WHERE rn <= {cap}"""


def _sql(now: int, half_life_s: float, cap: int = PAIR_HISTORY) -> dict[str, str]:
    # A purchase starts another basket than the one before it (same person, same product): another order when
    # both orders are known, else a gap over BASKET_GAP_S (model.new_basket).
    weight = (f"CASE kind WHEN {VIEW} THEN {EVENT_WEIGHT[VIEW]} WHEN {CART} THEN {EVENT_WEIGHT[CART]} "
              f"ELSE {EVENT_WEIGHT[PURCHASE]} END")
    return {
        "popularity": f"""
SELECT product, SUM(CAST(ROUND({weight} * POWER(2.0, -CAST({now} - ts AS DOUBLE) / {half_life_s}) * {FIXED})
                      AS BIGINT)) AS pop
FROM ev GROUP BY product""",
        "rebuys": f"""
SELECT shopper, product, ts - pts AS gap FROM (
  SELECT shopper, product, ts, okey,
         LAG(ts) OVER (PARTITION BY shopper, product ORDER BY ts, okey) AS pts,
         LAG(okey) OVER (PARTITION BY shopper, product ORDER BY ts, okey) AS pkey
  FROM ev WHERE kind = {PURCHASE}) AS b
WHERE pts IS NOT NULL
  AND CASE WHEN okey <> {NO_ORDER} AND pkey <> {NO_ORDER} THEN okey <> pkey ELSE ts - pts > {BASKET_GAP_S} END""",
        "item_stats": f"""
SELECT p.product, p.pop, COALESCE(b.buyers, 0) AS buyers, COALESCE(r.rebuyers, 0) AS rebuyers,
       COALESCE(m.gap, 0) AS median_gap
FROM popularity AS p
LEFT JOIN (SELECT product, COUNT(DISTINCT shopper) AS buyers FROM ev WHERE kind = {PURCHASE} GROUP BY product)
  AS b
  ON b.product = p.product
LEFT JOIN (SELECT product, COUNT(DISTINCT shopper) AS rebuyers FROM rebuys GROUP BY product) AS r
  ON r.product = p.product
LEFT JOIN (
  SELECT product, gap FROM (
    SELECT product, gap, ROW_NUMBER() OVER (PARTITION BY product ORDER BY gap) AS rn,
           COUNT(*) OVER (PARTITION BY product) AS n
    FROM rebuys) AS g
  WHERE rn = CAST(FLOOR((n + 1) / 2) AS BIGINT)) AS m
  ON m.product = p.product
ORDER BY p.product""",
        "touched": _recent("TRUE", cap),
        "strong": _recent(f"kind >= {CART}", cap),
    }


def pairs_sql(source: str) -> str:
    """Cosine similarity of two items over the people in ``source`` (distinct shopper-product rows)."""
    return f"""
SELECT a.product AS i, b.product AS j,
       COUNT(*) / SQRT(CAST(MIN(na.n) AS DOUBLE) * CAST(MIN(nb.n) AS DOUBLE)) AS cos
FROM {source} AS a
JOIN {source} AS b ON a.shopper = b.shopper AND a.product <> b.product
JOIN (SELECT product, COUNT(*) AS n FROM {source} GROUP BY product) AS na ON na.product = a.product
JOIN (SELECT product, COUNT(*) AS n FROM {source} GROUP BY product) AS nb ON nb.product = b.product
GROUP BY a.product, b.product"""


def _top(sql: str, score: str, k: int) -> str:
    """Each ``i``'s ``k`` best rows of ``sql`` by ``score``, ties by ``j``, with their rank."""
    return f"""
SELECT i, j, {score} AS score, rank FROM (
  SELECT i, j, {score}, ROW_NUMBER() OVER (PARTITION BY i ORDER BY {score} DESC, j) AS rank FROM ({sql}) AS s)
  AS t
WHERE rank <= {k}
ORDER BY i, rank"""


# Also-bought: co-purchase, co-occurrence at a thousandth to break ties; never an item out of stock.
ALSO_BOUGHT = """
SELECT p.i, p.j, p.s FROM (
  SELECT COALESCE(c.i, t.i) AS i, COALESCE(c.j, t.j) AS j, COALESCE(c.cos, 0.0) + 0.001 * COALESCE(t.cos, 0.0) AS s
  FROM buy_pairs AS c FULL OUTER JOIN touch_pairs AS t ON c.i = t.i AND c.j = t.j) AS p
JOIN items AS x ON x.product = p.j
WHERE NOT x.oos"""

CATEGORY_PAIRS = """
SELECT a.category AS i, b.category AS j, SUM(a.n * b.n) AS n
FROM (SELECT s.shopper, x.category, COUNT(*) AS n FROM strong AS s JOIN items AS x ON x.product = s.product
      GROUP BY s.shopper, x.category) AS a
JOIN (SELECT s.shopper, x.category, COUNT(*) AS n FROM strong AS s JOIN items AS x ON x.product = s.product
      GROUP BY s.shopper, x.category) AS b
  ON a.shopper = b.shopper AND a.category <> b.category
GROUP BY a.category, b.category"""


@dataclass
class ItemStages:
    """What the stages give the build, as arrays by product (or category) index."""

    popularity: npt.NDArray[np.float64]
    repeat_rate: npt.NDArray[np.float32]
    repeat_interval: npt.NDArray[np.int64]
    neighbours: npt.NDArray[np.int32] | None  # item-kNN, (products, k); None when EASE gives them
    weights: npt.NDArray[np.float32] | None
    also: list[npt.NDArray[np.int64]]
    co_rows: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]
    complement_categories: list[npt.NDArray[np.int64]]


def _lists(table: Any, n: int) -> tuple[list[npt.NDArray[np.int64]], list[npt.NDArray[np.float64]]]:
    """Rows ``(i, j, score)`` sorted by ``i`` then rank, as ``n`` lists (empty where ``i`` has none)."""
    i = table.column("i").to_numpy().astype(np.int64)
    j = table.column("j").to_numpy().astype(np.int64)
    s = table.column("score").to_numpy().astype(np.float64)
    bounds = np.searchsorted(i, np.arange(n + 1))
    return ([j[bounds[r]:bounds[r + 1]] for r in range(n)], [s[bounds[r]:bounds[r + 1]] for r in range(n)])


def item_stages(engine: Engine, events: npt.NDArray[Any], cat_of: npt.NDArray[Any], oos: npt.NDArray[np.bool_], *,
                now: int, half_life_s: float, also_k: int, knn_k: int | None, co_k: int, workers: int | None = None,
                history_cap: int = PAIR_HISTORY, progress: Callable[[str], None] = lambda _: None) -> ItemStages:
    """Run the stages on ``engine``. ``knn_k``: item-kNN neighbours per item, or None (EASE gives them);
    ``workers``: processes for the sparse product of an in-process engine (default: one per core);
    ``history_cap``: each person's most recent distinct items that count for co-occurrence."""
    import pyarrow as pa

    P = len(cat_of)
    started = time.perf_counter()

    def step(name: str) -> None:
        progress(f"build [{engine.name}]: {name} ({time.perf_counter() - started:.1f}s)")

    engine.load("ev", pa.table({
        "shopper": events["shopper"].astype(np.int32), "product": events["product"].astype(np.int32),
        "kind": events["kind"].astype(np.int8), "ts": events["ts"].astype(np.int64),
        "okey": order_keys(events)}))
    engine.load("items", pa.table({"product": np.arange(P, dtype=np.int32), "category": cat_of.astype(np.int32),
                                   "oos": np.asarray(oos, dtype=bool)}))
    relational = _sql(now, half_life_s, history_cap)
    for name, sql in relational.items():
        engine.stage(name, sql)
    engine.forget(["ev"])  # what follows reads the staged tables: the events' memory is the next stage's
    step(f"events and item statistics, {len(events):,} events")
    stats = engine.fetch("SELECT * FROM item_stats")
    product = stats.column("product").to_numpy()
    popularity = np.zeros(P, dtype=np.float64)
    popularity[product] = stats.column("pop").to_numpy() / FIXED
    buyers, rebuyers, gap = (np.zeros(P, dtype=np.int64) for _ in range(3))
    buyers[product] = stats.column("buyers").to_numpy()
    rebuyers[product] = stats.column("rebuyers").to_numpy()
    gap[product] = stats.column("median_gap").to_numpy()
    rate = (rebuyers / np.maximum(buyers, 1)).astype(np.float32)

    if engine.local:  # the pairs as a sparse product in this process (cooccurrence: 20x quicker than a join)
        from .cooccurrence import PairJob, incidence, pair_lists

        def distinct(name: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
            t = engine.fetch(f"SELECT shopper, product FROM {name}")
            return t.column("shopper").to_numpy().astype(np.int64), t.column("product").to_numpy().astype(np.int64)

        shape = (int(events["shopper"].max()) + 1 if len(events) else 0, P)
        job = PairJob(incidence(*distinct("touched"), shape=shape), incidence(*distinct("strong"), shape=shape),
                      np.asarray(oos, dtype=bool), also_k, knn_k, co_k)
        nb_rows, also, co_rows = pair_lists(job, P, workers)
        step("co-occurrence of items, neighbours, also-bought and complement candidates")
    else:
        engine.stage("touch_pairs", pairs_sql("touched"))
        engine.stage("buy_pairs", pairs_sql("strong"))
        step("co-occurrence of items")
        nb_rows = []
        if knn_k:
            nb_rows = list(zip(*_lists(engine.fetch(_top("SELECT i, j, cos FROM touch_pairs", "cos", knn_k)), P),
                               strict=True))
        also, _ = _lists(engine.fetch(_top(ALSO_BOUGHT, "s", also_k)), P)
        co_rows = list(zip(*_lists(engine.fetch(_top("SELECT i, j, cos FROM buy_pairs", "cos", co_k)), P),
                           strict=True))
        step("neighbours, also-bought and complement candidates")
    neighbours = weights = None
    if knn_k:
        neighbours = np.zeros((P, knn_k), dtype=np.int32)
        weights = np.zeros((P, knn_k), dtype=np.float32)
        for r, (c, v) in enumerate(nb_rows):
            neighbours[r, :len(c)], weights[r, :len(c)] = c, v
    categories = int(cat_of.max()) + 1 if len(cat_of) else 0
    best_categories, _ = _lists(engine.fetch(_top(CATEGORY_PAIRS, "n", 3)), categories)
    engine.forget(["touch_pairs", "buy_pairs", *reversed(relational), "items"])
    return ItemStages(popularity, rate, gap, neighbours, weights, also, co_rows, best_categories)
