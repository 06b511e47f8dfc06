"""The batch engines: one suite for every engine (DuckDB in process, Spark in local mode), and the build's
records compared between them byte for byte.

Spark runs as ``local[2]`` in one session for the whole file (``make test`` installs Java and PySpark; the
suite keeps this file on one worker, so it starts once).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from personalizer_adapters.batch.build import build
from personalizer_adapters.batch.inputs import load_shop
from personalizer_adapters.batch.seed import load_config
from personalizer_adapters.batch.seedgen import Shop, generate
from personalizer_adapters.engine.base import Engine, EngineMissing, open_engine
from personalizer_adapters.engine.stages import FIXED, item_stages
from personalizer_adapters.store.base import NO_ORDER
from personalizer_adapters.tuning.search import tune
from tests.test_build import CFG, run_build
from tests.test_build import inputs as build_inputs
from tests.test_lake import log as lake_log
from tests.test_tune import drifting_shop

DAY = 86_400
NOW = 100 * DAY


@pytest.fixture(scope="module", params=["duckdb", "spark"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    e = open_engine(request.param)
    yield e
    e.close()


def events(rows: list[tuple[int, ...]]) -> np.ndarray:  # type: ignore[type-arg]
    """(shopper, product, kind, ts[, order]) rows as the build's event array."""
    full = [(*r, NO_ORDER) if len(r) == 4 else r for r in rows]
    return np.array(full, dtype=[("shopper", "i4"), ("product", "i4"), ("kind", "i1"), ("ts", "i8"), ("order", "i8")])


def stages(engine: Engine, ev: np.ndarray, products: int, oos: tuple[int, ...] = (),  # type: ignore[type-arg]
           cat_of: list[int] | None = None, knn_k: int | None = 5) -> Any:
    out_of_stock = np.zeros(products, dtype=bool)
    out_of_stock[list(oos)] = True
    cats = np.array(cat_of if cat_of is not None else [0] * products, dtype=np.int32)
    return item_stages(engine, ev, cats, out_of_stock, now=NOW, half_life_s=10.0 * DAY, also_k=3, knn_k=knn_k,
                       co_k=4)


def test_repurchase_stats_by_hand(engine: Engine) -> None:
    """p0: a buys it on days 0, 10 and 30, b once: rate 1/2, median interval 10 days (lower median of 10, 20).
    p1: bought twice in one basket (30 minutes apart) is not a re-buy: rate 0, interval 0. p2: two orders
    30 minutes apart (order ids known) are two baskets: a re-buy."""
    ev = events([(0, 0, 2, 0), (0, 0, 2, 10 * DAY), (0, 0, 2, 30 * DAY), (1, 0, 2, 5 * DAY),
                 (0, 1, 2, 0), (0, 1, 2, 1800), (1, 1, 0, 0), (2, 2, 2, 0, 7), (2, 2, 2, 1800, 8)])
    s = stages(engine, ev, 4)
    assert s.repeat_rate.tolist() == [0.5, 0.0, 1.0, 0.0]
    assert s.repeat_interval.tolist() == [10 * DAY, 0, 1800, 0]


def test_popularity_is_the_decayed_sum_of_weights(engine: Engine) -> None:
    ev = events([(0, 0, 0, NOW), (1, 0, 2, NOW - 10 * DAY), (0, 1, 1, NOW - 20 * DAY), (2, 1, 0, 0)])
    s = stages(engine, ev, 3)
    expected = [1 + 5 * 0.5, 3 * 0.25 + 2.0 ** -10, 0.0]
    assert s.popularity.tolist() == pytest.approx(expected, abs=1 / FIXED)


def test_neighbours_also_bought_and_complements_by_hand(engine: Engine) -> None:
    """Three people: a touched {0, 1, 2}, b {0, 1}, c {1, 3} (c bought 1 and 3, a bought 0 and 2).
    Cosine over touches: 0-1 = 2/sqrt(2*3), 0-2 = 1/sqrt(2*1), 1-3 = 1/sqrt(3*1); over purchases: 0-2 = 1,
    1-3 = 1. Item 2 is out of stock: never an also-bought. Categories: 0,1 -> 0; 2 -> 1; 3 -> 2."""
    ev = events([(0, 0, 2, 10), (0, 1, 0, 11), (0, 2, 2, 12), (1, 0, 0, 13), (1, 1, 0, 14),
                 (2, 1, 2, 15), (2, 3, 2, 16)])
    s = stages(engine, ev, 4, oos=(2,), cat_of=[0, 0, 1, 2])
    assert s.neighbours is not None and s.weights is not None
    assert s.neighbours[0, :2].tolist() == [1, 2] and s.neighbours[0, 2:].tolist() == [0, 0, 0]
    assert s.weights[0].tolist() == pytest.approx([2 / math.sqrt(6), 1 / math.sqrt(2), 0, 0, 0])
    assert s.neighbours[1, :3].tolist() == [0, 2, 3]  # 2 and 3 tie at 1/sqrt(3): by index
    assert [a.tolist() for a in s.also] == [[1], [3, 0], [0, 1], [1]]
    assert [c.tolist() for c, _ in s.co_rows] == [[2], [3], [0], [1]]
    assert [v.tolist() for _, v in s.co_rows] == [[1.0]] * 4
    assert [c.tolist() for c in s.complement_categories] == [[1, 2], [0], [0]]


def test_co_occurrence_counts_each_persons_most_recent_items_only(engine: Engine) -> None:
    """With a history cap of 2: a touched 0 (t 10, again at 20), 1 (t 11), 2 (t 12): their two most recent are
    0 and 2, so 0-2 co-occur and 1 pairs with nothing of theirs; b touched 1 and 3 (one pair). Purchases are
    capped the same way: a bought 1, 2, 3 (t 30-32): 2-3 only. Popularity still counts every event."""
    ev = events([(0, 0, 0, 10), (0, 1, 0, 11), (0, 2, 0, 12), (0, 0, 0, 20), (1, 1, 0, 13), (1, 3, 0, 14),
                 (0, 1, 2, 30), (0, 2, 2, 31), (0, 3, 2, 32)])
    out_of_stock = np.zeros(4, dtype=bool)
    cats = np.zeros(4, dtype=np.int32)
    s = item_stages(engine, ev, cats, out_of_stock, now=NOW, half_life_s=10.0 * DAY, also_k=3, knn_k=3, co_k=3,
                    history_cap=2)
    assert s.neighbours is not None and s.weights is not None
    # touched, capped: a {2, 3} (purchases at 31, 32 are their latest), b {1, 3}: 2-3 and 1-3, each
    # 1 / sqrt(n3 * n) = 1 / sqrt(2 * 1)
    assert s.neighbours[3, :2].tolist() == [1, 2]
    assert s.weights[3, :2].tolist() == pytest.approx([1 / math.sqrt(2)] * 2)
    assert s.weights[0].tolist() == [0, 0, 0]  # a's item 0 fell out of their two most recent
    assert [c.tolist() for c, _ in s.co_rows] == [[], [], [3], [2]]  # purchases {1, 2, 3} capped to {2, 3}
    assert s.popularity[0] > 0
    uncapped = stages(engine, ev, 4, knn_k=3)
    assert uncapped.weights is not None and uncapped.weights[0].max() > 0


def test_no_events_gives_empty_lists_and_the_engine_keeps_nothing(engine: Engine) -> None:
    s = stages(engine, events([]), 3)
    assert s.popularity.tolist() == [0, 0, 0] and [a.tolist() for a in s.also] == [[], [], []]
    assert s.repeat_rate.tolist() == [0, 0, 0]
    for table in ("ev", "touched", "item_stats"):  # what the stages made is let go: the profiles need the memory
        with pytest.raises(Exception, match=table):
            engine.fetch(f"SELECT * FROM {table}")


def seed_shop() -> tuple[Shop, dict[str, Any]]:
    cfg = {**load_config(CFG), "products": 600, "shoppers": 1500, "kv_profiles": 1500, "ease_max_items": 100}
    return generate(cfg), cfg


def real_shop() -> tuple[Shop, dict[str, Any]]:
    """A small real set: the first 150 people of MovieLens 100K (tests/data/realdata.py)."""
    from tests.data import realdata

    catalog, ratings = realdata.load("movielens-100k")
    shop, _ = load_shop(catalog, ratings, None, strict=False, now=None)
    keep = shop.events["shopper"] < 150
    cfg = {k: v for k, v in load_config(CFG).items() if k != "kv_profiles"}
    return Shop(shop.products, shop.shoppers[:150], shop.events[keep], shop.now), cfg


@pytest.mark.parametrize("make", [seed_shop, real_shop], ids=["seed", "movielens-150"])
def test_duckdb_and_spark_build_the_same_records(make: Any) -> None:
    """Every record, byte for byte after the push's encoding: shared lists, items, segments, profiles."""
    shop, cfg = make()
    records = {}
    for name in ("duckdb", "spark"):
        e = open_engine(name)
        try:
            records[name] = build(shop, cfg, engine=e).records
        finally:
            e.close()
    assert len(records["duckdb"]) > 100
    assert records["duckdb"].keys() == records["spark"].keys()
    differ = [k for k in records["duckdb"] if records["duckdb"][k] != records["spark"][k]]
    assert differ == []


def test_tuning_on_spark_chooses_what_it_chooses_on_duckdb() -> None:
    """The tuning's refits run on the build's engine: the same trials, scores and choice on either."""
    shop = drifting_shop(4.0, people=600)
    cfg = {**load_config(CFG), "ease_max_items": 0}  # item-kNN: the similarity the engine computes
    grid = {"recency_half_life": (2.0, 4.0, 8.0), "half_life_days": (7.0, 90.0), "similarity": ("knn:25", "knn:50")}
    results = {}
    for name in ("duckdb", "spark"):
        e = open_engine(name)
        try:
            results[name] = tune(shop, cfg, engine=e, grid=grid, budget_s=600).as_json()
        finally:
            e.close()
        results[name].pop("seconds")
    assert results["duckdb"]["trials"] >= 6
    assert results["duckdb"] == results["spark"]


def test_a_missing_engine_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(EngineMissing, match=r"pip install '\.\[spark\]' and Java 17"):
        open_engine("spark")
    with pytest.raises(ValueError, match="unknown engine 'flink'"):
        open_engine("flink")


def test_spark_without_java_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from personalizer_adapters.engine.spark import session

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineMissing, match="needs Java"):
        session()


inputs = pytest.fixture(build_inputs.__wrapped__)  # type: ignore[attr-defined]  # test_build's small shop


def test_build_on_spark_writes_what_duckdb_writes(inputs: dict[str, Path], tmp_path: Path) -> None:
    """`personalizer build --engine spark`: the same kv.json as the default engine, with its stages shown."""
    outs = {}
    for name in ("duckdb", "spark"):
        done = run_build("--catalog", str(inputs["catalog"]), "--events", str(inputs["csv"]), "--out",
                         str(tmp_path / name), "--config", str(CFG), "--engine", name)
        assert done.returncode == 0, done.stderr
        assert f"build [{name}]: events and item statistics" in done.stderr
        outs[name] = (tmp_path / name / "kv.json").read_bytes()
    assert outs["duckdb"] == outs["spark"]
    gone = run_build("--catalog", str(inputs["catalog"]), "--events", str(inputs["csv"]), "--out",
                     str(tmp_path / "x"), "--config", str(CFG), "--engine", "flink")
    assert gone.returncode == 2 and "invalid choice: 'flink'" in gone.stderr


log = pytest.fixture(lake_log.__wrapped__)  # type: ignore[attr-defined]  # test_lake's event log


def test_spark_reads_the_event_lake_as_duckdb_does(log: Any, tmp_path: Path) -> None:
    """The lake's clean-up statement on both engines: the same events, each once (a file delivered twice)."""
    import shutil

    from personalizer_adapters.store.export import export_events
    from tests.test_imports import HEADER, catalog_rows

    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3.49"] * 8))
    lake = tmp_path / "lake"
    export_events(log, str(lake))
    day = sorted(lake.iterdir())[0]
    shutil.copy(sorted(day.glob("*.parquet"))[0], day / "events-again.parquet")
    here, report = load_shop(catalog, lake, None, strict=True, now=None)
    spark = open_engine("spark")
    try:
        there, spark_report = load_shop(catalog, lake, None, strict=True, now=None, engine=spark)
    finally:
        spark.close()
    assert spark_report.formats[str(lake)] == report.formats[str(lake)] == "Parquet event directory (3 files)"
    assert len(here.events) == 9 and here.events.tolist() == there.events.tolist()
    assert here.shoppers == there.shoppers
