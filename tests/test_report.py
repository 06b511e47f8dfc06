"""report: hand-computed numbers on a tiny log; the seed's known effect recovered, and its absence too."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from personalizer import keys
from personalizer_adapters.batch.build import Built
from personalizer_adapters.events.report import (
    Rate,
    analyse,
    banner_rules,
    parse_since,
    rate_diff,
    render_html,
    render_text,
    wilson,
)
from personalizer_adapters.store.eventlog import EventLog
from personalizer_adapters.store.profiles import ProfileStore
from tests.test_push_local import cli

DAY = 86400
RULES = {"promo": ("segment", ["a", "b"])}


def ev(person: str, kind: str, ts: float, robot: bool = False, who: str = "visitor", **f: Any) -> dict[str, Any]:
    return {"who": who, "person": person, "robot": robot, "flags": ["bot"] if robot else [], "received": int(ts),
            "id": f"{person}-{kind}-{ts}", "type": kind, "ts": float(ts), **f}


def hero(person: str, variant: str, ts: float, **kw: Any) -> dict[str, Any]:
    return ev(person, "impression", ts, slot="hero", tier="segment", generation="g1", banner="promo",
              variant=variant, **kw)


TINY = [
    hero("v1", "a", 1000), hero("v1", "a", 2000),                       # one exposure: same person, variant, day
    ev("v1", "click", 1500, slot="hero", item="banner", position=0),    # credited to v1's exposure
    ev("v1", "purchase", 3000, order="o1", items=[{"item": "p1", "quantity": 2, "price": "10.00"}]),
    hero("v1", "a", 1000 + DAY),                                        # the next day: a second exposure
    hero("v2", "b", 1000),
    ev("v2", "add_to_cart", 1000 + DAY + 10, item="p1", quantity=1),    # past the 24 h window: not credited
    hero("v3", "a", 1000),
    hero("v4", "b", 1000, robot=True),                                  # a robot: never an exposure
    ev("v4", "click", 1010, robot=True, slot="hero", item="banner", position=0),
    hero("", "b", 1000, who="anonymous"),                               # no one to count
    ev("v1", "impression", 1100, slot="home", tier="user", generation="g1", items=["p1", "p2"]),
    ev("v2", "impression", 1100, slot="home", tier="segment", generation="g1", items=["p3"]),
    ev("v3", "impression", 1100, slot="home", tier="segment", generation="g1", items=["p3"]),
    ev("v2", "click", 1200, slot="home", item="p3", position=0),
]


def test_the_numbers_of_a_tiny_log_are_the_hand_computed_ones() -> None:
    r = analyse(TINY, RULES)
    a, b = r.variants
    assert (a.variant, a.control, a.exposures, a.clicks, a.carts, a.purchases) == \
        ("a", True, 3, Rate(1, 3), Rate(0, 3), Rate(1, 3))
    assert sorted(a.revenue) == [0.0, 0.0, 20.0] and a.revenue_total == 20.0
    assert (b.variant, b.control, b.exposures, b.clicks, b.carts, b.purchases) == \
        ("b", False, 1, Rate(0, 1), Rate(0, 1), Rate(0, 1))
    assert b.vs_control["ctr"].value == pytest.approx(-1 / 3)
    assert r.robots == 2 and r.events == len(TINY) - 3
    hero_slot, home = r.slots
    assert (hero_slot.slot, hero_slot.impressions, hero_slot.clicks, hero_slot.tiers) == ("hero", 5, 1, {"segment": 5})
    assert (home.slot, home.impressions, home.clicks, home.tiers) == ("home", 3, 1, {"user": 1, "segment": 2})


def test_intervals_and_p_values_match_hand_computation() -> None:
    low, high = wilson(1, 3)  # p = 1/3, n = 3, z = 1.96
    assert (round(low, 4), round(high, 4)) == (0.0615, 0.7923)
    d = rate_diff(Rate(20, 100), Rate(10, 100))  # pooled p 0.15, se 0.0505, z 1.980
    assert d.value == pytest.approx(0.10) and round(d.p, 4) == 0.0477
    assert d.low < 0.10 < d.high and d.low > 0  # Newcombe: excludes 0 at p < 0.05
    assert wilson(0, 0) == (0.0, 1.0)  # nothing seen: the whole range, never a zero-width interval


def test_the_seed_effect_is_recovered_and_the_null_shows_none(built: Built, seed_dir: Path) -> None:
    data = seed_dir / "origin"
    rules = banner_rules(ProfileStore(data / "store.sqlite").record(keys.banners(built.generation)))
    report = analyse(EventLog(data / "events.sqlite").events(), rules)
    by = {(v.rule, v.variant): v for v in report.variants}
    effect = by[("cart-reminder", "cart-b")].vs_control["ctr"]  # simulated: 6% against 4%
    assert by[("cart-reminder", "cart-a")].control
    assert effect.low <= 0.02 <= effect.high and effect.low > 0 and effect.p < 0.05
    null = by[("restock", "restock-b")].vs_control["ctr"]  # simulated: 5% and 5%
    assert null.low <= 0 <= null.high and null.p > 0.05


def test_since_filters_and_parses() -> None:
    assert analyse(TINY, RULES, since=1000 + DAY).variants[0].exposures == 1
    assert parse_since("7d", 10 * DAY) == 3 * DAY and parse_since("12h", DAY) == DAY / 2
    assert parse_since("1970-01-02", 0) == DAY and parse_since(None, 0) is None
    with pytest.raises(ValueError, match="--since"):
        parse_since("last tuesday", 0)


def test_the_html_page_is_self_contained_with_charts(tmp_path: Path, built: Built, seed_dir: Path) -> None:
    page = render_html(analyse(TINY, RULES))
    assert page.count("<svg") == 2 and "<script" not in page  # one experiment, the tiers
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    out = cli("report", "--data", str(seed_dir / "origin"), "--html", str(tmp_path / "r.html"))
    assert out.returncode == 0, out.stderr
    assert "cart-reminder" in out.stdout and "stopping when p < 0.05" in out.stdout  # the peeking warning
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") == 3  # one chart per experiment (two in the seed) and the tiers'
    assert "class=card" in page and "verdict" in page and "class=period" in page


def test_report_serve_refreshes_on_loopback(seed_dir: Path) -> None:
    """--serve: the page computed again on each request, refreshing itself, bound to 127.0.0.1."""
    import subprocess
    import sys
    import time

    import httpx

    from tests.runtime.harness import ROOT
    from tests.test_edge_events import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "personalizer_adapters.cli", "report", "--data",
                             str(seed_dir / "origin"), "--serve", "--port", str(port), "--refresh", "30"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.3)
        assert page.status_code == 200 and 'http-equiv="refresh" content="30"' in page.text
        assert "cart-reminder" in page.text and page.headers["cache-control"] == "no-store"
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=30).status_code == 404
        listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]  # 0A: LISTEN
        assert listening == [f"0100007F:{port:04X}"], listening  # 127.0.0.1 only, never every address
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()


def experiment(exposures: dict[str, int], clicks: dict[str, int]) -> list[dict[str, Any]]:
    """A log with so many exposures of each variant of "promo", the first ``clicks`` of them clicked."""
    out = []
    for variant, n in exposures.items():
        for i in range(n):
            person = f"{variant}{i}"
            out.append(hero(person, variant, 1000 + i))
            if i < clicks.get(variant, 0):
                out.append(ev(person, "click", 1001 + i, slot="hero", item="banner", position=0))
    return out


def test_the_seeds_experiments_get_their_verdicts(built: Built, seed_dir: Path) -> None:
    """Always valid (mSPRT): the simulated 4% -> 6% is a winner, the simulated 5% / 5% no difference (with the
    smallest effect worth finding at 2 points); both splits as configured."""
    data = seed_dir / "origin"
    rules = banner_rules(ProfileStore(data / "store.sqlite").record(keys.banners(built.generation)))
    report = analyse(EventLog(data / "events.sqlite").events(), rules, mde=0.02)
    by = {(v.rule, v.variant): v for v in report.variants}
    assert by[("cart-reminder", "cart-b")].verdict[0] == "winner"
    assert by[("restock", "restock-b")].verdict[0] == "no difference"
    assert not any(x.srm for x in report.experiments if x.rule in ("cart-reminder", "restock"))
    effect = by[("cart-reminder", "cart-b")].sequential
    fixed = by[("cart-reminder", "cart-b")].vs_control["ctr"]
    assert effect is not None and effect.low > 0 and effect.high - effect.low > fixed.high - fixed.low  # the price
    out = cli("report", "--data", str(data), "--mde", "2")
    assert out.returncode == 0 and "verdict cart-reminder / cart-b: winner" in out.stdout, out.stderr


def test_a_skewed_split_is_a_sample_ratio_mismatch_with_no_verdict() -> None:
    r = analyse(experiment({"a": 1000, "b": 800}, {"a": 40, "b": 80}), RULES)
    (x,) = r.experiments
    assert x.srm and x.srm_p < 1e-5
    b = r.variants[1]
    assert b.verdict[0] == "invalid" and "sample ratio mismatch" in b.verdict[1]
    assert "SAMPLE RATIO MISMATCH in promo" in render_text(r).splitlines()[1]  # first, after the period
    even = analyse(experiment({"a": 1000, "b": 1000}, {"a": 40, "b": 80}), RULES).experiments[0]
    assert not even.srm
    weighted = analyse(experiment({"a": 1000, "b": 250}, {}), {"promo": ("segment", ["a", "b"], [80.0, 20.0])})
    assert not weighted.experiments[0].srm  # 80/20 configured: 1000/250 is right


@pytest.mark.parametrize("n", [0, 1, 4])
def test_tiny_samples_get_no_verdict_and_real_intervals(n: int) -> None:
    """The old report called 4 exposures "significant" and gave 0 exposures a zero-width interval."""
    log = experiment({"a": 4, "b": n}, {"a": 0, "b": n})  # b: every exposure clicked
    r = analyse(log, RULES)
    b = r.variants[1]
    assert b.exposures == n and b.verdict[0] == "too few"
    low, high = b.clicks.interval
    assert 0 <= low < high <= 1
    q = b.sequential
    assert q is not None and q.low < q.diff < q.high and all(map(math.isfinite, (q.low, q.high, q.p)))
    assert q.p > 0.05  # so little data is evidence of nothing, however it is read


def test_the_always_valid_p_value_keeps_its_error_rate_under_daily_peeking() -> None:
    """Simulated A/A tests looked at after every 200 exposures, stopped at the first p < 0.05: the fixed-horizon
    test finds 'effects' far more often than 5%; the mSPRT stays under it."""
    import random

    from personalizer_adapters.events.sequential import msprt

    rng = random.Random(7)
    fixed = valid = 0
    runs = 300
    for _ in range(runs):
        ha = hb = na = nb = 0
        stop_fixed = stop_valid = False
        for _look in range(20):
            for _ in range(200):
                ha += rng.random() < 0.05
                hb += rng.random() < 0.05
            na += 200
            nb += 200
            stop_fixed = stop_fixed or rate_diff(Rate(hb, nb), Rate(ha, na)).p < 0.05
            stop_valid = stop_valid or msprt(hb, nb, ha, na, 0.01).p < 0.05
        fixed += stop_fixed
        valid += stop_valid
    assert fixed / runs > 0.12 and valid / runs < 0.05, (fixed, valid)


def test_the_lift_of_personalization_against_the_holdout(built: Built, seed_dir: Path) -> None:
    """The seed's home-carousel visitors: a fifth held out (8% vs 5% clicks, 5% vs 3% carts); the lift per
    visitor is found, randomized, with revenue and conversion that are not all zero; the hero variants get
    purchases and revenue attributed too."""
    data = seed_dir / "origin"
    rules = banner_rules(ProfileStore(data / "store.sqlite").record(keys.banners(built.generation)))
    report = analyse(EventLog(data / "events.sqlite").events(), rules)
    lift = report.lift
    assert lift is not None and lift.randomized and lift.baseline.name == "holdout"
    assert lift.personalized.visitors > 3 * lift.baseline.visitors > 0
    ctr = lift.vs["ctr"]
    assert ctr.low > 0 and ctr.low <= 0.03 <= ctr.high  # the simulated +3 points, found
    assert lift.personalized.converted.hits > 0 and lift.personalized.revenue_per_visitor[0] > 0
    assert any(v.purchases.hits > 0 and v.revenue_total > 0 for v in report.variants if v.rule == "cart-reminder")
    text = render_text(report)
    assert "personalization lift, per visitor, randomized: the global holdout" in text


def test_without_a_holdout_the_lift_is_observational_and_says_so() -> None:
    def visitor(person: str, tier: str, clicked: bool) -> list[dict[str, Any]]:
        shown = ev(person, "impression", 1000, slot="home", tier=tier, generation="g1", items=["p1"])
        return [shown] + ([ev(person, "click", 1010, slot="home", item="p1", position=0)] if clicked else [])

    log = [e for i in range(60) for e in visitor(f"u{i}", "user", i % 5 == 0)] + \
          [e for i in range(40) for e in visitor(f"q{i}", "popular", i % 10 == 0)]
    lift = analyse(log, RULES).lift
    assert lift is not None and not lift.randomized and lift.baseline.name == "popular/default only"
    assert (lift.personalized.clicked, lift.baseline.clicked) == (Rate(12, 60), Rate(4, 40))
    assert "observational" in render_text(analyse(log, RULES))
    only_personal = [e for i in range(10) for e in visitor(f"u{i}", "user", True)]
    assert analyse(only_personal, RULES).lift is None
    assert "no comparison possible yet" in render_text(analyse(only_personal, RULES))
