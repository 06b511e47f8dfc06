"""The build's tuning (``tuning.search``): it finds what a shop's data says, guards against doing worse than
a textbook list, never looks at the evaluation's slice, and gives the same answer twice."""

from __future__ import annotations

import base64
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from personalizer import codec, keys
from personalizer_adapters.batch.build import build
from personalizer_adapters.batch.seed import load_config
from personalizer_adapters.batch.seedgen import Shop
from personalizer_adapters.quality.evaluate import evaluate
from personalizer_adapters.tuning.search import GRID, settings, start_point, tune

ROOT = Path(__file__).resolve().parents[1]
CFG = {**load_config(ROOT / "kv-seed" / "seed.toml"), "kv_profiles": 10**9}
NOW = 1_800_000_000
CATEGORIES = 12


def _shop(histories: list[list[int]], products: int) -> Shop:
    catalog = [{"id": f"q{i:04d}", "category": f"cat{i % CATEGORIES:02d}", "title": f"Item {i}", "price": 1000 + i,
                "currency": "EUR", "url": f"/p/q{i:04d}", "image": f"https://img.example.test/q{i:04d}.jpg",
                "stock": 5} for i in range(products)]
    rows = [(s, item, 0, NOW - (len(h) - t) * 3600 - s) for s, h in enumerate(histories) for t, item in enumerate(h)]
    events = np.array(rows, dtype=[("shopper", "i4"), ("product", "i4"), ("kind", "i1"), ("ts", "i8")])
    events.sort(order=["ts", "shopper"], kind="stable")
    return Shop(catalog, [{"id": f"u{s:05d}", "loyalty": ""} for s in range(len(histories))], events, NOW)


def drifting_shop(half_life: float, people: int = 1200, products: int = 240, length: int = 24,
                  seed: int = 3) -> Shop:
    """People whose next item follows one of their earlier items, that item drawn with a weight halving every
    ``half_life`` interactions back: the decay the personal list's ``recency_half_life`` models, known here."""
    rng = np.random.default_rng(seed)
    successors = np.stack([(np.arange(products) + d) % products for d in (1, 7, 31)], axis=1)
    histories = []
    for _ in range(people):
        h = [int(rng.integers(products))]
        for _ in range(length - 1):
            w = np.exp2(-np.arange(len(h) - 1, -1, -1) / half_life)
            parent = h[int(rng.choice(len(h), p=w / w.sum()))]
            h.append(int(successors[parent, rng.integers(successors.shape[1])]))
        histories.append(h)
    return _shop(histories, products)


def popular_shop(people: int = 1200, products: int = 1000, length: int = 7, seed: int = 5) -> Shop:
    """Everyone draws from the same skewed popularity, whatever they did before: popularity is the truth."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, products + 1) ** 1.1
    order = rng.permutation(products)
    return _shop([order[rng.choice(products, length, p=p / p.sum())].tolist() for _ in range(people)], products)


def _step(grid: tuple[float, ...], value: float) -> int:
    return grid.index(value)


@pytest.mark.parametrize("truth", [2.0, 16.0])
def test_tuning_recovers_the_generators_recency_half_life_within_one_grid_step(truth: float) -> None:
    """Two known decays, far apart, each found within one step of the grid (histories of 24: a half-life far
    beyond the history's length is not identifiable from it, and 32 is taken for 8 or 16)."""
    result = tune(drifting_shop(truth), CFG, budget_s=600)
    grid = GRID["recency_half_life"]
    assert not result.stopped
    assert abs(_step(grid, result.point["recency_half_life"]) - _step(grid, truth)) <= 1, result.point


def test_on_a_shop_where_popularity_is_the_truth_the_guard_serves_popularity() -> None:
    """What anyone does next is drawn from one popularity: the tuned list cannot beat it on the people the
    search did not see, so the build serves the popularity list as everyone's personal list, the profile
    record and the origin's model (a miss) alike."""
    shop = popular_shop()
    result = tune(shop, CFG, budget_s=600)
    assert result.served == "popularity" and result.chosen["personal_source"] == "popularity"
    assert result.guard["against"] == "popularity" and not result.guard["lower95"] > 0
    assert "popularity's list is served as the personal list" in "\n".join(result.summary())
    built = build(shop, {**CFG, **result.chosen})
    model = built.model
    assert model.popular is not None and model.personal_source == "popularity"
    again = type(model).from_files(model.files())  # what the origin loads
    assert again.personal_source == "popularity" and np.array_equal(again.popular, model.popular)
    checked = 0
    for s, shopper in enumerate(shop.shoppers[:50]):
        record = built.records.get(keys.profile(shopper["id"]))
        if record is None:
            continue
        seen = set(shop.events["product"][shop.events["shopper"] == s].tolist())
        expected = [model.cards[i][0] for i in model.popular.tolist() if i not in seen][:model.personal_list]
        assert [c[0] for c in codec.decode(record, expect="profile").data["cards"]] == expected
        checked += 1
    assert checked >= 40


def test_where_the_tuned_list_wins_it_is_served() -> None:
    result = tune(drifting_shop(2.0), CFG, budget_s=600)
    assert result.served == "tuned" and "personal_source" not in result.chosen
    assert result.guard["lower95"] > 0 and result.scores["tuned"]["ndcg"] > result.scores["EASE"]["ndcg"]
    assert result.scores["tuned"]["ndcg"] > result.scores["fixed"]["ndcg"]  # today's 10 interactions: far from 2


def test_tuning_is_deterministic_for_the_same_data_and_seed() -> None:
    shop = drifting_shop(4.0, people=600)
    first, second = tune(shop, CFG, budget_s=600), tune(shop, CFG, budget_s=600)
    a, b = first.as_json(), second.as_json()
    for result in (a, b):
        result.pop("seconds")
    assert a == b and np.array_equal(first.validation_rows, second.validation_rows)
    other = tune(shop, {**CFG, "seed": CFG["seed"] + 1}, budget_s=600)  # another draw of the guard's people
    assert other.fingerprint != first.fingerprint


def test_the_validation_slice_never_meets_the_evaluation_slice() -> None:
    """evaluate tunes on its own training part: the events the tuning held out are not the ones scored."""
    shop = drifting_shop(4.0, people=600)
    result = evaluate(shop, CFG, tune=True, tune_budget=600, baselines=())
    evaluation, validation = result.slices["evaluation"], result.slices["validation"]
    assert len(evaluation) and len(validation)
    assert not np.intersect1d(evaluation, validation).size
    # and they are what they say: each person's last 3 interactions, then the 3 before those
    ev = shop.events
    for s in np.unique(ev["shopper"][evaluation])[:20]:
        mine = np.flatnonzero(ev["shopper"] == s)
        by_time = mine[np.argsort(ev["ts"][mine], kind="stable")]
        assert set(evaluation[np.isin(evaluation, mine)].tolist()) == set(by_time[-3:].tolist())
        held = validation[np.isin(validation, mine)]
        assert not len(held) or set(held.tolist()) <= set(by_time[-6:-3].tolist())
    names = [r["list"] for r in result.rows]
    assert "personal, tuned (tuned)" in names and result.tuning is not None
    assert "tune: validation NDCG@12" in result.table()


def _write_inputs(shop: Shop, where: Path) -> tuple[Path, Path]:
    catalog, events = where / "catalog.csv", where / "events.csv"
    with catalog.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "category", "title", "price", "url", "image", "stock"])
        w.writerows([p["id"], p["category"], p["title"], f"{p['price'] / 100:.2f}", p["url"], p["image"], p["stock"]]
                    for p in shop.products)
    with events.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["shopper", "product", "kind", "ts"])
        w.writerows([shop.shoppers[e["shopper"]]["id"], shop.products[e["product"]]["id"], "view", int(e["ts"])]
                    for e in shop.events)
    return catalog, events


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", "build", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


def test_build_tunes_by_default_keeps_the_choice_for_the_same_data_and_says_so(tmp_path: Path) -> None:
    catalog, events = _write_inputs(popular_shop(people=800), tmp_path)
    common = ("--catalog", str(catalog), "--events", str(events), "--out", str(tmp_path / "out"))
    first = _cli(*common)
    assert first.returncode == 0, first.stderr
    assert "tune: validation NDCG@12" in first.stderr and "tune: trial 1:" in first.stderr
    report: dict[str, Any] = json.loads((tmp_path / "out" / "report.json").read_text())
    tuning = report["tuning"]
    assert tuning["served"] in ("tuned", "popularity", "EASE", "item-kNN")
    assert set(tuning["validation"]) >= {"tuned", "fixed", "popularity", "EASE", "item-kNN"}
    bulk = {r["key"]: base64.b64decode(r["value"]) for r in json.loads((tmp_path / "out" / "kv.json").read_text())}
    manifest = codec.decode(bulk[keys.MANIFEST], expect="manifest").data
    assert manifest["settings"]["again_due_floor"] == tuning["chosen"].get("again_due_floor", 0.3)
    again = _cli(*common)
    assert again.returncode == 0, again.stderr
    assert "its choice is kept" in again.stderr and "tune: trial" not in again.stderr
    fixed = _cli(*common, "--no-tune", "--out", str(tmp_path / "fixed"))
    assert fixed.returncode == 0 and "tune:" not in fixed.stderr
    assert "--no-tune" in json.loads((tmp_path / "fixed" / "report.json").read_text())["tuning"]["note"]
    bad = _cli(*common, "--tune-budget", "-1")
    assert bad.returncode == 2 and "--tune-budget" in bad.stderr


def test_too_few_people_to_tune_on_keep_todays_constants() -> None:
    """A few hundred people cannot tell the constants apart: no search, today's constants, and it says so."""
    result = tune(drifting_shop(2.0, people=300), CFG, budget_s=600)
    assert result.served == "fixed" and result.trials == 0
    assert result.chosen == settings(start_point(CFG, 240))
    assert "at least 500 are needed to tune on: today's constants" in result.summary()[0]
