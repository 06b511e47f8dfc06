"""Relevance benchmark: the project's lists against the baselines on real public data, in full.

Usage: python tests/bench/relevance_bench.py [NAME ...]   (default: every set in tests/data/realdata.py)
For each set: `personalizer evaluate`'s table (last 3 interactions held out, k = 12) with the tuned list beside
today's constants (the tuning runs on the training part only), the ratios the quality targets are stated in,
for order data the next-basket protocol (`--protocol next-basket`, its again list tuned too), and the time
`profile_payload` takes for one person (what the origin does on a miss). ``completejourney`` is reported
only: no default was chosen by looking at it.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from personalizer_adapters.batch.build import build, by_shopper  # noqa: E402
from personalizer_adapters.batch.inputs import load_shop  # noqa: E402
from personalizer_adapters.batch.model import profile_payload  # noqa: E402
from personalizer_adapters.batch.seed import load_config  # noqa: E402
from personalizer_adapters.batch.seedgen import Shop  # noqa: E402
from personalizer_adapters.quality.evaluate import evaluate  # noqa: E402
from personalizer_adapters.quality.nextbasket import evaluate_next_basket  # noqa: E402
from tests.data import realdata  # noqa: E402

BASELINES = ("count popularity", "item-kNN (cosine)", "EASE", "ALS (implicit)")


def profile_ms(shop: Shop, cfg: dict[str, Any]) -> tuple[float, float]:
    """Median and p99 milliseconds of one person's profile from their events, over everyone in the shop."""
    model = build(shop, {**cfg, "kv_profiles": 0}).model
    ms = []
    for s, events in enumerate(by_shopper(shop.events, len(shop.shoppers))):
        if len(events):
            t = time.perf_counter()
            profile_payload(model, shop.shoppers[s]["id"], None, events["product"], events["kind"], events["ts"])
            ms.append((time.perf_counter() - t) * 1000)
    return statistics.median(ms), statistics.quantiles(ms, n=100, method="inclusive")[98]


def main() -> None:
    cfg = load_config(ROOT / "kv-seed" / "seed.toml")
    for name in sys.argv[1:] or sorted(realdata.SOURCES):
        shop, _ = load_shop(*realdata.load(name), None, strict=False, now=None)
        print(f"relevance: {name}: {len(shop.shoppers):,} people, {len(shop.products):,} products, "
              f"{len(shop.events):,} events", flush=True)
        result = evaluate(shop, cfg, baselines=BASELINES, tune=True)
        print(result.table())
        personal = result.ndcg("personal (user tier)")
        tuned_row = next(r for r in result.rows if r["list"].startswith("personal, tuned"))
        best = max((r for r in result.rows if r["list"] in BASELINES), key=lambda r: r["ndcg"])
        print(f"relevance: {name}: personal NDCG@12 = {personal / best['ndcg']:.2f} x the best baseline "
              f"({best['list']}), {personal / result.ndcg('count popularity'):.2f} x count popularity; "
              f"{tuned_row['list']} {tuned_row['ndcg'] / best['ndcg']:.2f} x the best baseline, "
              f"{tuned_row['ndcg'] / personal:.2f} x today's constants")
        if realdata.SOURCES[name].orders:
            basket = evaluate_next_basket(shop, cfg, tune=True)
            print(basket.table())
            again, p_top, tifu, tuned = (basket.ndcg(n) for n in ("again (buy it again)", "P-TopFreq", "TIFU-KNN",
                                                                   "again, tuned"))
            print(f"relevance: {name}: next basket: again NDCG@12 = {again / p_top:.3f} x P-TopFreq, "
                  f"{again / tifu:.3f} x TIFU-KNN; tuned {tuned / p_top:.3f} x P-TopFreq, "
                  f"{tuned / tifu:.3f} x TIFU-KNN")
        median, p99 = profile_ms(shop, cfg)
        print(f"relevance: {name}: one profile (the origin's miss work) median {median:.2f} ms, p99 {p99:.2f} ms",
              flush=True)


if __name__ == "__main__":
    main()
