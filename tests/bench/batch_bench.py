"""Batch benchmark: build and push-planning time and peak memory for a generated shop at scale.

Usage: python tests/bench/batch_bench.py [SHOPPERS PRODUCTS EVENTS] [--engine duckdb|spark]
(default: 1,000,000 100,000 20,000,000 on DuckDB; Spark runs in local mode, local[2], its JVM not counted in the
peaks, which are this process's)
The generator here is vectorised (the seed's is per event, fine for 90k events, not for 20M); the shop has the
same shape: latent category tastes per shopper, Zipf popularity within each category, views, carts, purchases.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src")]

from personalizer_adapters.batch.build import build  # noqa: E402
from personalizer_adapters.batch.seed import load_config, write_outputs  # noqa: E402
from personalizer_adapters.batch.seedgen import CATEGORIES, Shop  # noqa: E402
from personalizer_adapters.engine.base import open_engine  # noqa: E402
from personalizer_adapters.kv.plan import Build, TargetState, make_plan  # noqa: E402

NOW = 1_793_491_200


def shop_at_scale(S: int, P: int, E: int, seed: int = 1) -> Shop:
    rng = np.random.default_rng(seed)
    cats = list(CATEGORIES)
    C = len(cats)
    products = [{"id": f"p{i:07d}", "category": cats[i % C], "title": f"Product {i}", "price": 999 + (i * 37) % 30000,
                 "url": f"/p/p{i:07d}", "image": f"https://img.example/p{i:07d}.jpg", "currency": "EUR",
                 "stock": 0 if i % 33 == 0 else 10} for i in range(P)]
    per_cat = P // C
    zipf = 1.0 / np.arange(1, per_cat + 1) ** 0.9
    zipf_cdf = np.cumsum(zipf) / zipf.sum()
    counts = rng.pareto(1.6, S) + 1
    counts = np.maximum(1, np.round(counts / counts.sum() * E)).astype(np.int64)
    shopper = np.repeat(np.arange(S, dtype=np.int32), counts)[:E]
    n = len(shopper)
    category = np.empty(n, dtype=np.int64)
    chunk = 1 << 20
    for lo in range(0, S, chunk // 8):  # tastes in chunks: S x C floats at once would be large
        hi = min(S, lo + chunk // 8)
        cdf = np.cumsum(rng.dirichlet(np.full(C, 0.15), hi - lo), axis=1)
        sel = (shopper >= lo) & (shopper < hi)
        u = rng.random(int(sel.sum()))
        category[sel] = (u[:, None] > cdf[shopper[sel] - lo]).sum(1).clip(0, C - 1)
    rank = np.searchsorted(zipf_cdf, rng.random(n)).clip(0, per_cat - 1)
    product = (rank * C + category).astype(np.int32)
    kind = np.where(rng.random(n) < 0.88, 0, np.where(rng.random(n) < 0.5, 1, 2)).astype(np.int8)
    ts = NOW - rng.integers(60, 90 * 86400, n)
    events = np.empty(n, dtype=[("shopper", "i4"), ("product", "i4"), ("kind", "i1"), ("ts", "i8")])
    events["shopper"], events["product"], events["kind"], events["ts"] = shopper, product, kind, ts
    events.sort(order=["ts", "shopper"], kind="stable")
    return Shop(products, [{"id": f"c{s:07d}", "loyalty": None} for s in range(S)], events, NOW, {})


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def peak_worker_gib() -> float:
    """The largest forked worker's peak (similarity, profiles, the origin store's writer; the pages it shares with
    the parent copy-on-write included)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 / 1024


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--engine")]
    engine_name = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--engine=")), "duckdb")
    S, P, E = (int(x) for x in args[:3]) if len(args) >= 3 else (1_000_000, 100_000, 20_000_000)
    cfg = {**load_config(ROOT / "kv-seed" / "seed.toml"), "kv_profiles": S}
    t0 = time.perf_counter()
    shop = shop_at_scale(S, P, E)
    t1 = time.perf_counter()
    print(f"batch: generated {S:,} shoppers, {P:,} products, {len(shop.events):,} events in {t1 - t0:.1f}s "
          f"(peak {peak_rss_gib():.2f} GiB)", flush=True)
    engine = open_engine(engine_name)
    t1 = time.perf_counter()
    built = build(shop, cfg, progress=lambda line: print(f"  {line} (peak {peak_rss_gib():.2f} GiB)", flush=True),
                  engine=engine)
    engine.close()
    t2 = time.perf_counter()
    size = sum(len(v) for v in built.records.values())
    print(f"batch: build on {engine_name} {t2 - t1:.1f}s -> {len(built.records):,} records, {size / 1e9:.2f} GB "
          f"(peak {peak_rss_gib():.2f} GiB; largest forked worker {peak_worker_gib():.2f} GiB)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        write_outputs(shop, built, Path(tmp))
        t3 = time.perf_counter()
        print(f"batch: outputs written {t3 - t2:.1f}s (kv.json, manifest.json, origin/ with the events) "
              f"(peak {peak_rss_gib():.2f} GiB; largest forked worker {peak_worker_gib():.2f} GiB)", flush=True)
        del built
        loaded = Build.load(Path(tmp))
        plan = make_plan(loaded, TargetState())
        batches = sum(1 for _ in plan.batches(loaded))
    t4 = time.perf_counter()
    print(f"batch: push plan from the written build {t4 - t3:.1f}s -> {len(plan.writes):,} writes in {batches:,} "
          f"bulk requests (peak {peak_rss_gib():.2f} GiB)", flush=True)


if __name__ == "__main__":
    main()
