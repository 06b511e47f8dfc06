"""Tuning benchmark: the build's time with tuning against without, side by side in one run, on the engine.

Usage: python tests/bench/tune_bench.py [SHOPPERS PRODUCTS EVENTS ...] [--engine duckdb|spark]
(default: 100,000 10,000 2,000,000 then 1,000,000 100,000 20,000,000; a multiple of three numbers, one shop per
three). For each shop: the build with today's constants (``--no-tune``), the tuning (``tuning.search.tune``, its
default budget and sample), and the build with the constants it chose; the ratio is (tuning + tuned build) /
plain build. The shop is batch_bench's generated one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from personalizer_adapters.batch.build import build  # noqa: E402
from personalizer_adapters.batch.seed import load_config  # noqa: E402
from personalizer_adapters.engine.base import open_engine  # noqa: E402
from personalizer_adapters.tuning.search import tune  # noqa: E402
from tests.bench.batch_bench import peak_rss_gib, shop_at_scale  # noqa: E402


def main() -> None:
    args = [int(a) for a in sys.argv[1:] if not a.startswith("--engine")]
    engine_name = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--engine=")), "duckdb")
    scales = [tuple(args[i:i + 3]) for i in range(0, len(args) - 2, 3)] or [(100_000, 10_000, 2_000_000),
                                                                           (1_000_000, 100_000, 20_000_000)]
    for S, P, E in scales:
        cfg = {**load_config(ROOT / "kv-seed" / "seed.toml"), "kv_profiles": 0}
        shop = shop_at_scale(S, P, E)
        print(f"tune: {S:,} shoppers, {P:,} products, {len(shop.events):,} events on {engine_name}", flush=True)
        engine = open_engine(engine_name)
        t0 = time.perf_counter()
        build(shop, cfg, engine=engine)
        plain = time.perf_counter() - t0
        print(f"tune: build with today's constants {plain:.1f}s (peak {peak_rss_gib():.2f} GiB)", flush=True)
        t1 = time.perf_counter()
        tuned = tune(shop, cfg, engine=engine)
        tuning = time.perf_counter() - t1
        for line in tuned.summary():
            print(f"  {line}", flush=True)
        t2 = time.perf_counter()
        build(shop, {**cfg, **tuned.chosen}, engine=engine)
        after = time.perf_counter() - t2
        engine.close()
        print(f"tune: tuning {tuning:.1f}s ({tuned.trials} trials{', stopped by the budget' if tuned.stopped else ''})"
              f" + build with its constants {after:.1f}s = {(tuning + after) / plain:.2f} x the plain build "
              f"{plain:.1f}s (peak {peak_rss_gib():.2f} GiB)", flush=True)


if __name__ == "__main__":
    main()
