"""banners: each rule kind, priority order, sticky weighted variants, consent."""

from collections import Counter

import pytest

from personalizer.banners import choose, pick_variant
from personalizer.records import BannerRule, BannerSet, Card, Inventory, Profile, Settings, Variant

NOW = 1_800_000_000
SETTINGS = Settings(cart_reminder_after_s=3600)


def variant(vid: str, weight: int = 1) -> Variant:
    return Variant(vid, weight, f"T {vid} {{item}}{{category}}{{tier}}", "b", "c", "/u", "/i.jpg")


def rule(rid: str, kind: str, prio: int, match: str = "", *variants: Variant) -> BannerRule:
    return BannerRule(rid, kind, prio, match, variants or (variant(rid),))


RULES = BannerSet((
    rule("cart", "cart_reminder", 100), rule("drop", "price_drop", 90), rule("gold", "loyalty", 75, "gold"),
    rule("back-ski", "returning_category", 60, "ski"), rule("seg-ski", "segment", 50, "likes-ski"),
    rule("intro", "new_visitor", 40), rule("generic", "generic", 0)))
SKI = Card("p1", "Ski Jacket", "/p/1", "/i.jpg", 10000, "EUR", "ski")


def profile(**kw: object) -> Profile:
    base: dict[str, object] = dict(id="c1", segments=("likes-ski",), cards=(), recent=(), bought=frozenset(),
                                   cart=(), cart_updated_at=0, loyalty="", categories=(), watched=())
    base.update(kw)
    return Profile(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("prof,inventory,segment,expected,tier", [
    pytest.param(profile(cart=(SKI,), cart_updated_at=NOW - 7200), None, None, "cart", "user", id="cart-reminder"),
    pytest.param(profile(cart=(SKI,), cart_updated_at=NOW - 60), Inventory(frozenset(), {"p1": 8000}), None,
                 "drop", "user", id="fresh-cart-price-drop"),
    pytest.param(profile(recent=(SKI,), watched=("p1",)), Inventory(frozenset(), {"p1": 8000}), None, "drop",
                 "user", id="watched-price-drop"),
    pytest.param(profile(loyalty="gold", categories=("ski",)), None, None, "gold", "user", id="loyalty"),
    pytest.param(profile(categories=("ski",)), None, None, "back-ski", "user", id="returning-category"),
    pytest.param(profile(categories=("golf",)), None, "likes-ski", "seg-ski", "segment", id="segment"),
    pytest.param(None, None, None, "intro", "popular", id="new-visitor"),
    pytest.param(profile(), None, None, "generic", "popular", id="known-but-nothing-matches"),
])
def test_choose_applies_rules_by_priority(prof: Profile | None, inventory: Inventory | None, segment: str | None,
                                          expected: str, tier: str) -> None:
    """The highest-priority matching rule wins and reports its tier."""
    got = choose(RULES, prof, segment, consented=True, inventory=inventory or Inventory(frozenset(), {}),
                 settings=SETTINGS, now=NOW, bucket_key="c1")
    assert got is not None and (got.rule.id, got.tier) == (expected, tier)



def test_choose_takes_the_highest_priority_whatever_the_order_and_the_first_of_a_tie() -> None:
    """Rules listed in any order: the highest priority that matches wins; of equal ones, the one listed first."""
    def pick(*rules: BannerRule) -> str:
        got = choose(BannerSet(rules), profile(categories=("ski",)), "likes-ski", consented=True,
                     inventory=Inventory(frozenset(), {}), settings=SETTINGS, now=NOW, bucket_key="c1")
        assert got is not None
        return got.rule.id

    low, high = rule("seg-ski", "segment", 50, "likes-ski"), rule("back-ski", "returning_category", 60, "ski")
    assert pick(rule("generic", "generic", 0), low, high) == "back-ski"
    assert pick(high, low) == "back-ski"
    tie_a, tie_b = rule("a", "segment", 50, "likes-ski"), rule("b", "returning_category", 50, "ski")
    assert pick(rule("generic", "generic", 0), tie_a, tie_b) == "a" and pick(tie_b, tie_a) == "b"
    assert pick(rule("gold", "loyalty", 99, "gold"), tie_b, tie_a) == "b"  # a higher rule that does not match

def test_choose_without_consent_is_generic_and_the_control_variant() -> None:
    """Denied consent: only the generic rule, first variant, whatever the profile says."""
    rules = BannerSet((rule("cart", "cart_reminder", 100),
                       rule("generic", "generic", 0, "", variant("control"), variant("other", 99))))
    got = choose(rules, profile(cart=(SKI,)), None, consented=False, inventory=Inventory(frozenset(), {}),
                 settings=SETTINGS, now=NOW, bucket_key="c1")
    assert got is not None and (got.rule.id, got.variant.id) == ("generic", "control")


def test_choose_fills_placeholders_from_the_profile() -> None:
    """{item} is the cart item's title."""
    got = choose(RULES, profile(cart=(SKI,), cart_updated_at=NOW - 7200), None, consented=True,
                 inventory=Inventory(frozenset(), {}), settings=SETTINGS, now=NOW, bucket_key="c1")
    assert got is not None and ("{item}", "Ski Jacket") in got.fill


def test_pick_variant_is_sticky_and_follows_the_weights() -> None:
    """Same visitor, same variant; over many visitors the split follows the weights; weight 0 never shows."""
    r = rule("r", "generic", 0, "", variant("a", 75), variant("b", 25), variant("off", 0))
    assert all(pick_variant(r, "c42") == pick_variant(r, "c42") for _ in range(3))
    counts = Counter(pick_variant(r, f"c{i}").id for i in range(8000))
    assert counts["off"] == 0
    assert 0.72 < counts["a"] / 8000 < 0.78


def test_a_newer_builds_rule_is_skipped_not_the_whole_set() -> None:
    """A rule with a field or a targeting key this worker cannot evaluate (a newer build's), or a kind it does not
    know, never matches; the rest of the record works as before."""
    from personalizer import codec

    def as_dict(r: BannerRule) -> dict[str, object]:
        return {"id": r.id, "kind": r.kind, "priority": r.priority, "match": r.match, "variants": [
            {"id": v.id, "weight": v.weight, "title": v.title, "body": v.body, "cta": v.cta, "url": v.url,
             "image": v.image} for v in r.variants]}

    newer = [{**as_dict(rule("sunny", "generic", 500)), "target": {"weather": ["sun"]}},
             {**as_dict(rule("future", "generic", 400)), "kind": "weather"},
             {**as_dict(rule("odd", "generic", 300)), "target": {"device": "watch"}},
             {**as_dict(rule("later", "generic", 200)), "fatigue": 3},
             *(as_dict(r) for r in RULES.rules)]
    parsed = BannerSet.parse(codec.decode(codec.encode("banners", {"rules": newer}), expect="banners"))
    assert [r.id for r in parsed.rules] == [r.id for r in RULES.rules]
    chosen = choose(parsed, None, None, consented=False, inventory=Inventory(frozenset(), {}), settings=SETTINGS,
                    now=NOW, bucket_key=None)
    assert chosen is not None and chosen.rule.id == "generic"


def targeted(rid: str, prio: int, **target: object) -> BannerRule:
    from personalizer.records import Target

    return BannerRule(rid, "generic", prio, "", (variant(rid),), Target.parse(target))


@pytest.mark.parametrize("target,context,matches", [
    pytest.param({"countries": ["DE", "AT"]}, {"country": "DE"}, True, id="country"),
    pytest.param({"countries": ["DE"]}, {"country": "FR"}, False, id="other-country"),
    pytest.param({"countries": ["DE"]}, {}, False, id="country-unknown"),
    pytest.param({"regions": ["DE-BY"]}, {"country": "DE", "region": "DE-BY"}, True, id="region"),
    pytest.param({"regions": ["DE-BY"]}, {"country": "DE", "region": "DE-BE"}, False, id="other-region"),
    pytest.param({"device": "mobile"}, {"mobile": True}, True, id="mobile"),
    pytest.param({"device": "mobile"}, {"mobile": False}, False, id="desktop-is-not-mobile"),
    pytest.param({"device": "desktop"}, {"mobile": None}, False, id="device-unknown"),
    pytest.param({"start": NOW, "end": NOW + 10}, {}, True, id="schedule-starts-now"),
    pytest.param({"start": NOW + 1}, {}, False, id="schedule-not-yet"),
    pytest.param({"end": NOW}, {}, False, id="schedule-ended-now"),
    pytest.param({"utm_campaign": ["Xmas"]}, {"utm": (("utm_campaign", "xmas"),)}, True, id="utm"),
    pytest.param({"utm_campaign": ["xmas"]}, {"utm": (("utm_source", "xmas"),)}, False, id="utm-other-param"),
    pytest.param({"countries": ["DE"], "device": "mobile"}, {"country": "DE", "mobile": False}, False,
                 id="all-must-hold"),
])
def test_targeting_is_evaluated_at_the_edge(target: dict[str, object], context: dict[str, object],
                                             matches: bool) -> None:
    """Each condition of a campaign's targeting, with the request's own facts; all given must hold; what cannot
    be told (no country, no device hint) does not match."""
    from personalizer.records import Context

    rules = BannerSet((targeted("aimed", 10, **target), rule("generic", "generic", 0)))
    chosen = choose(rules, None, None, consented=False, inventory=Inventory(frozenset(), {}), settings=SETTINGS,
                    now=NOW, bucket_key=None, context=Context(NOW, **context))  # type: ignore[arg-type]
    assert chosen is not None and (chosen.rule.id == "aimed") is matches


def test_segment_and_tier_targeting_need_the_profile() -> None:
    from personalizer.records import Context

    rules = BannerSet((targeted("gold-ski", 10, tiers=["gold"], segments=["likes-ski"]), rule("generic", "generic", 0)))
    ctx = Context(NOW)
    pick = lambda p: choose(rules, p, None, consented=p is not None, inventory=Inventory(frozenset(), {}),  # noqa: E731
                            settings=SETTINGS, now=NOW, bucket_key="c1", context=ctx).rule.id  # type: ignore[union-attr]
    assert pick(profile(loyalty="gold")) == "gold-ski"
    assert pick(profile(loyalty="silver")) == "generic"
    assert pick(profile(loyalty="gold", segments=("likes-golf",))) == "generic"
    assert pick(None) == "generic"


@pytest.mark.parametrize("utc,matches", [
    pytest.param("2026-03-22T08:30:00+00:00", True, id="sunday-before-dst-09:30-cet"),
    pytest.param("2026-03-29T08:30:00+00:00", False, id="sunday-dst-started-10:30-cest"),
    pytest.param("2026-03-29T07:30:00+00:00", True, id="sunday-dst-started-09:30-cest"),
    pytest.param("2026-03-28T08:30:00+00:00", False, id="saturday"),
    pytest.param("2026-10-25T08:30:00+00:00", True, id="sunday-dst-ended-09:30-cet"),
    pytest.param("2026-10-25T07:30:00+00:00", False, id="sunday-dst-ended-08:30-cet"),
])
def test_local_hours_follow_the_visitors_zone_across_daylight_saving(utc: str, matches: bool) -> None:
    """Sundays 09:00-10:00 in Berlin: the same UTC time matches before the clocks change and not after."""
    from datetime import datetime

    from personalizer.records import Context
    from personalizer.service import zoneinfo_local

    now = int(datetime.fromisoformat(utc).timestamp())
    rules = BannerSet((targeted("brunch", 10, weekdays=[6], hours=[[540, 600]]), rule("generic", "generic", 0)))
    ctx = Context(now, timezone="Europe/Berlin", local=zoneinfo_local)
    chosen = choose(rules, None, None, consented=False, inventory=Inventory(frozenset(), {}), settings=SETTINGS,
                    now=now, bucket_key=None, context=ctx)
    assert chosen is not None and (chosen.rule.id == "brunch") is matches
    across = BannerSet((targeted("late", 10, hours=[[1320, 120]]), rule("generic", "generic", 0)))  # 22:00-02:00
    at = lambda hhmm: choose(across, None, None, consented=False, inventory=Inventory(frozenset(), {}),  # noqa: E731
                             settings=SETTINGS, now=NOW, bucket_key=None,
                             context=Context(NOW, timezone="UTC", local=lambda z, n: (0, hhmm))).rule.id  # type: ignore[union-attr]
    assert [at(m) for m in (1319, 1320, 0, 119, 120)] == ["generic", "late", "late", "late", "generic"]
    unknown = Context(now, timezone="Not/A_Zone", local=zoneinfo_local)
    assert choose(rules, None, None, consented=False, inventory=Inventory(frozenset(), {}), settings=SETTINGS,
                  now=now, bucket_key=None, context=unknown).rule.id == "generic"  # type: ignore[union-attr]
