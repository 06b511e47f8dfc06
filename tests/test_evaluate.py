"""personalizer evaluate: one honest split for every list, metrics checked by hand, quality on real data."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from personalizer_adapters.batch.inputs import load_shop
from personalizer_adapters.batch.seed import load_config
from personalizer_adapters.batch.seedgen import generate
from personalizer_adapters.quality.evaluate import evaluate
from personalizer_adapters.quality.holdout import Score, holdout_split
from tests.data import realdata
from tests.runtime.harness import ROOT

CFG = ROOT / "kv-seed" / "seed.toml"
# person -> products in time order: a has two new items at the end; b one new and one seen again; c is too
# short; d only re-visits what it saw.
HISTORIES = {"a": ["p1", "p2", "p3", "p4", "p5", "p6"], "b": ["p1", "p2", "p1"], "c": ["p3", "p4"],
             "d": ["p1", "p2", "p1", "p2"]}


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("id,category,title,price,url,image\n" + "".join(
        f"p{i},cat {i % 2},Item {i},1.00,/p/p{i},https://i/p{i}.jpg\n" for i in range(1, 8)))
    events = tmp_path / "events.csv"
    # Written newest first: the split must order by time, not by input order.
    rows = [f"{who},{p},view,{1_790_000_000 + 100 * n + t}" for n, (who, items) in enumerate(HISTORIES.items())
            for t, p in enumerate(items)]
    events.write_text("shopper,product,kind,ts\n" + "\n".join(reversed(rows)) + "\n")
    return catalog, events


def test_holdout_split_hides_each_persons_last_new_interactions(tiny: tuple[Path, Path]) -> None:
    """The last N by time are hidden; targets are the hidden items new to the person; who is left out is counted."""
    shop, _ = load_shop(*tiny, None, strict=False, now=None)
    split = holdout_split(shop, holdout=2, min_events=3)
    ids = [s["id"] for s in shop.shoppers]
    products = [p["id"] for p in shop.products]
    targets = {ids[s]: sorted(products[p] for p in t) for s, t in split.targets.items()}
    assert targets == {"a": ["p5", "p6"], "b": ["p2"]}
    assert (split.short, split.nothing_new) == (1, 1)  # c too short; d saw everything before
    kept: dict[str, list[str]] = {}
    for e in np.sort(split.train.events, order="ts"):
        kept.setdefault(ids[e["shopper"]], []).append(products[e["product"]])
    assert kept == {"a": ["p1", "p2", "p3", "p4"], "b": ["p1"], "c": ["p3", "p4"], "d": ["p1", "p2", "p1", "p2"]}


def test_score_matches_hand_computed_metrics() -> None:
    """precision@3, recall@3 and NDCG@3 of [5, 9, 6] against {5, 6}; coverage counts distinct items shown."""
    score = Score("x")
    score.add([5, 9, 6, 7], frozenset({5, 6}), 3)
    score.add([1, 2, 3], frozenset({4}), 3)
    row = score.row(catalog=10)
    ndcg_first = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert row["people"] == 2
    assert row["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert row["recall"] == pytest.approx((1 + 0) / 2)
    assert row["ndcg"] == pytest.approx(ndcg_first / 2)
    assert row["coverage"] == pytest.approx(6 / 10)  # 5, 9, 6, 1, 2, 3
    assert row["ndcg_ci95"] == pytest.approx(1.96 * (ndcg_first / 2) / math.sqrt(2))


def test_every_list_is_scored_on_the_same_people(tiny: tuple[Path, Path]) -> None:
    """Project lists and baselines alike are scored on the split's people, and never recommend what they saw."""
    shop, _ = load_shop(*tiny, None, strict=False, now=None)
    result = evaluate(shop, load_config(CFG), k=3, holdout=2, min_events=3)
    assert result.people == 2 and not result.skipped
    assert [r["list"] for r in result.rows] == ["personal (user tier)", "segment", "popular", "count popularity",
                                                "item-kNN (cosine)", "EASE", "ALS (implicit)"]
    assert all(r["people"] == 2 for r in result.rows)
    # b's held-out p2 is the most counted item b has not seen (a once, d twice), so count popularity ranks it
    # first; a has only three unseen items, so any ranking of k=3 finds both of a's.
    assert next(r for r in result.rows if r["list"] == "count popularity")["recall"] == pytest.approx(1.0)


def test_seed_keeps_oracle_over_personal_over_segment_over_popular() -> None:
    """On the seed: the latent-taste oracle beats personal, which beats segment, which beats popular."""
    cfg = load_config(CFG)
    result = evaluate(generate(cfg), cfg, baselines=())
    ndcg = {r["list"]: r["ndcg"] for r in result.rows}
    assert ndcg["latent taste (oracle)"] > ndcg["personal (user tier)"] > ndcg["segment"] > ndcg["popular"] > 0


def test_personal_beats_the_baselines_on_real_movielens_data() -> None:
    """MovieLens 100K (real people, never tuned on the seed): personal ≥ 2× count popularity and beats EASE."""
    catalog, events = realdata.load("movielens-100k")
    shop, report = load_shop(catalog, events, None, strict=False, now=None)
    assert not report.bad  # the converter writes only valid rows
    result = evaluate(shop, load_config(CFG), baselines=("count popularity", "EASE"))
    assert result.people > 900
    assert result.ndcg("personal (user tier)") > 2 * result.ndcg("count popularity")
    assert result.ndcg("personal (user tier)") > 1.1 * result.ndcg("EASE")


def test_evaluate_cli_prints_json_for_machines(tiny: tuple[Path, Path]) -> None:
    """--json: the same rows as the table, parseable; an unknown baseline is exit 2."""
    base = [sys.executable, "-m", "personalizer_adapters.cli", "evaluate", "--catalog", str(tiny[0]), "--events",
            str(tiny[1]), "--holdout", "2", "--min-events", "3", "--k", "3"]
    done = subprocess.run([*base, "--json", "--baselines", "EASE"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["people"] == 2 and [r["list"] for r in result["lists"]][-1] == "EASE"
    bad = subprocess.run([*base, "--baselines", "magic"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "unknown baseline(s) 'magic'" in bad.stderr
