"""The campaigns file: the demo's compiles to the seed's banners; broken files name every problem's line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from personalizer import codec, keys
from personalizer_adapters.batch.build import Built
from personalizer_adapters.campaigns import CampaignsError, check_text, load_campaigns
from tests.runtime.harness import ROOT

DEMO = ROOT / "kv-seed" / "campaigns.toml"

GOOD = """\
[[campaigns]]
id = "cart"
priority = 100
kind = "cart_reminder"

  [[campaigns.variants]]
  id = "cart-a"
  weight = 2
  title = "Your {item} is waiting"
  body = "Finish your order."
  cta = "Back to cart"
  url = "/cart"
  image = "https://img.shop.example/cart.jpg"

[[campaigns]]
id = "everyone"
priority = 0
kind = "generic"

  [[campaigns.variants]]
  id = "season"
  title = "The winter edit"
  body = "Warm things."
  cta = "Shop now"
  url = "/c/winter"
  image = "/img/winter.jpg"
"""


def test_the_demo_file_is_the_seeds_banner_record(built: Built) -> None:
    """kv-seed/campaigns.toml, compiled, is exactly the banner record the seed pushes."""
    rules = codec.decode(built.records[keys.banners(built.generation)], expect="banners").data["rules"]
    assert load_campaigns(DEMO) == rules
    assert {r["kind"] for r in rules} == {"cart_reminder", "restock", "price_drop", "loyalty", "returning_category",
                                          "segment", "new_visitor", "generic"}


def test_a_good_file_compiles_to_rules() -> None:
    rules, problems = check_text(GOOD)
    assert problems == []
    assert rules[0] == {"id": "cart", "kind": "cart_reminder", "priority": 100, "match": "", "variants": [
        {"id": "cart-a", "weight": 2, "title": "Your {item} is waiting", "body": "Finish your order.",
         "cta": "Back to cart", "url": "/cart", "image": "https://img.shop.example/cart.jpg"}]}
    assert rules[1]["variants"][0]["weight"] == 1  # weight defaults to 1


@pytest.mark.parametrize("change,line,where,field,says", [
    pytest.param(('kind = "cart_reminder"', 'kind = "cart_remind"'), 4, "campaign 'cart'", "kind",
                 "unknown trigger 'cart_remind'", id="unknown-trigger"),
    pytest.param(("weight = 2", "weight = 0"), 8, "campaign 'cart' variant 'cart-a'", "weight", "above 0",
                 id="weight-zero"),
    pytest.param(("weight = 2", "weight = -3"), 8, "campaign 'cart' variant 'cart-a'", "weight", "above 0",
                 id="weight-negative"),
    pytest.param(('title = "Your {item} is waiting"', 'title = "Hi {name}"'), 9, "campaign 'cart' variant 'cart-a'",
                 "title", "placeholder {name} is not filled", id="unknown-placeholder"),
    pytest.param(('title = "The winter edit"', 'title = "For {tier} members"'), 22,
                 "campaign 'everyone' variant 'season'", "title", "placeholder {tier} is not filled for a generic",
                 id="placeholder-of-another-trigger"),
    pytest.param(('url = "/cart"', 'url = "javascript:alert(1)"'), 12, "campaign 'cart' variant 'cart-a'", "url",
                 "must be an https://", id="url-not-allowed"),
    pytest.param(('image = "/img/winter.jpg"', 'image = "//evil.example/x.jpg"'), 26,
                 "campaign 'everyone' variant 'season'", "image", "must be an https://", id="image-not-allowed"),
    pytest.param(('id = "everyone"', 'id = "cart"'), 16, "campaign 'cart'", "id", "used twice (first at line 2)",
                 id="duplicate-id"),
    pytest.param(('id = "season"', 'id = "cart-a"'), 21, "campaign 'everyone' variant 'cart-a'", "id",
                 "already a variant of 'cart'", id="duplicate-variant-id"),
    pytest.param(("priority = 100", "priority = 100\nfatigue = 3"), 4, "campaign 'cart'", "fatigue",
                 "unknown field", id="unknown-field"),
    pytest.param(('kind = "generic"', 'kind = "loyalty"'), 15, "campaign 'everyone'", "tier",
                 "a loyalty campaign needs its tier", id="missing-parameter"),
    pytest.param(("priority = 0", "priority = 200"), 3, "campaign 'cart'", "priority",
                 "can never win: 'everyone'", id="shadowed-by-generic"),
    pytest.param(('cta = "Shop now"', 'cta = ""'), 24, "campaign 'everyone' variant 'season'", "cta",
                 "1 to 300 characters", id="empty-text"),
    pytest.param(("priority = 100", 'priority = "high"'), 3, "campaign 'cart'", "priority", "whole number",
                 id="priority-not-a-number"),
])
def test_every_problem_has_its_line_and_field(change: tuple[str, str], line: int, where: str, field: str,
                                              says: str) -> None:
    """The field's own line; a missing field, its table's header; a campaign that can never win, its priority."""
    text = GOOD.replace(*change, 1)
    assert text != GOOD
    _, problems = check_text(text)
    found = [p for p in problems if p.field == field and says in p.message]
    assert found, problems
    assert (found[0].line, found[0].where) == (line, where), found[0]


def test_file_level_problems() -> None:
    _, problems = check_text("[[campaigns]\nid =")
    assert problems[0].where == "file" and problems[0].line == 1 and "not TOML" in problems[0].message
    _, problems = check_text("")
    assert "no [[campaigns]] table" in problems[0].message
    no_generic = GOOD[:GOOD.index('[[campaigns]]\nid = "everyone"')]
    _, problems = check_text(no_generic)
    assert any("no campaign of kind 'generic'" in p.message for p in problems)


def test_the_check_command(tmp_path: Path) -> None:
    """`personalizer campaigns check`: every problem on its own line with file:line, exit 2; a good file: 0."""
    def check(text: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "campaigns.toml"
        path.write_text(text)
        return subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", "campaigns", "check", str(path)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    ok = check(GOOD)
    assert ok.returncode == 0 and "2 campaigns, 2 variants: ok" in ok.stdout
    bad = check(GOOD.replace("weight = 2", "weight = 0").replace('url = "/cart"', 'url = "ftp://x"'))
    assert bad.returncode == 2
    lines = bad.stderr.splitlines()
    assert f"{tmp_path / 'campaigns.toml'}:8: campaign 'cart' variant 'cart-a' weight: must be" in lines[0]
    assert ":12: campaign 'cart' variant 'cart-a' url:" in lines[1]
    assert "2 problem(s)" in lines[-1]
    with pytest.raises(CampaignsError):
        load_campaigns(tmp_path / "campaigns.toml")


TARGETED = GOOD.replace('''[[campaigns]]
id = "everyone"''', '''[[campaigns]]
id = "xmas-de"
priority = 30
kind = "generic"
countries = ["DE", "AT"]
regions = ["DE-BY"]
device = "mobile"
start = 2026-12-01T00:00:00+01:00
end = "2026-12-27T00:00:00Z"
utm_campaign = ["Xmas"]
segments = ["likes-ski"]
tiers = ["gold"]

  [[campaigns.variants]]
  id = "xmas-a"
  title = "Merry Christmas"
  body = "Gifts delivered by the 24th."
  cta = "Shop gifts"
  url = "/c/gifts"
  image = "/img/xmas.jpg"

[[campaigns]]
id = "everyone"''')


def test_targeting_compiles_to_the_record_in_epoch_seconds() -> None:
    rules, problems = check_text(TARGETED)
    assert problems == []
    target = next(r for r in rules if r["id"] == "xmas-de")["target"]
    assert target == {"segments": ["likes-ski"], "tiers": ["gold"], "countries": ["DE", "AT"], "regions": ["DE-BY"],
                      "utm_campaign": ["xmas"], "device": "mobile", "start": 1796079600, "end": 1798329600}
    assert "target" not in next(r for r in rules if r["id"] == "everyone")  # no targeting: the record as before


@pytest.mark.parametrize("change,field,says", [
    pytest.param(('countries = ["DE", "AT"]', 'countries = ["DE", "XX"]'), "countries", "not an ISO 3166-1",
                 id="bad-country"),
    pytest.param(('countries = ["DE", "AT"]', 'countries = ["de"]'), "countries", "upper case", id="lower-country"),
    pytest.param(('regions = ["DE-BY"]', 'regions = ["Bavaria"]'), "regions", "ISO 3166-2", id="bad-region"),
    pytest.param(('device = "mobile"', 'device = "tablet"'), "device", "mobile or desktop", id="bad-device"),
    pytest.param(('end = "2026-12-27T00:00:00Z"', 'end = "2026-11-27T00:00:00Z"'), "end", "not after start",
                 id="end-before-start"),
    pytest.param(("start = 2026-12-01T00:00:00+01:00", "start = 2026-12-01T00:00:00"), "start", "with its offset",
                 id="start-without-offset"),
    pytest.param(('utm_campaign = ["Xmas"]', 'utm_campaign = "xmas"'), "utm_campaign", "a list", id="utm-not-a-list"),
    pytest.param(('tiers = ["gold"]', 'tiers = ["gold tier"]'), "tiers", "letters, digits", id="bad-tier"),
])
def test_targeting_problems_name_their_line_and_field(change: tuple[str, str], field: str, says: str) -> None:
    text = TARGETED.replace(*change, 1)
    assert text != TARGETED
    _, problems = check_text(text)
    found = [p for p in problems if p.field == field and says in p.message]
    assert found, problems
    line = next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith(f"{field} ="))
    assert found[0].line == line and found[0].where == "campaign 'xmas-de'"


def test_a_targeted_campaign_shadows_nothing() -> None:
    """A generic campaign with targeting does not always match, so the ones below it can still win."""
    _, problems = check_text(TARGETED.replace("priority = 30", "priority = 300"))
    assert problems == []


def test_local_hours_and_weekdays_compile_and_are_checked() -> None:
    local = 'weekdays = ["Sat", "sun"]\nhours = ["09:00-12:30", "22:00-02:00"]'
    text = TARGETED.replace('tiers = ["gold"]', 'tiers = ["gold"]\n' + local)
    rules, problems = check_text(text)
    assert problems == []
    target = next(r for r in rules if r["id"] == "xmas-de")["target"]
    assert target["weekdays"] == [5, 6] and target["hours"] == [[540, 750], [1320, 120]]
    for bad_days in ('["someday"]', '"sat"', "[]"):
        _, problems = check_text(text.replace('weekdays = ["Sat", "sun"]', f"weekdays = {bad_days}"))
        assert [p.field for p in problems] == ["weekdays"], bad_days
    for bad_hours in ('["9-17"]', '["25:00-26:00"]', '["10:00-10:00"]', '"09:00-12:00"'):
        _, problems = check_text(text.replace('hours = ["09:00-12:30", "22:00-02:00"]', f"hours = {bad_hours}"))
        assert [p.field for p in problems] == ["hours"], bad_hours


def test_preview_names_the_winner_and_why_each_campaign_did_not(built: Built, seed_dir: Path,
                                                                tmp_path: Path) -> None:
    """`campaigns preview`: the campaigns in the edge's order, each with why it matched or not, the winner's copy;
    the winner is the one the edge's core chooses for the same shopper and facts."""
    import asyncio
    import json

    from personalizer import InMemoryKV, Personalizer
    from tests.conftest import CONFIG, FixedClock, uid_cookie

    aimed = tmp_path / "campaigns.toml"
    aimed.write_text(DEMO.read_text() + """
[[campaigns]]
id = "de-mobile"
priority = 200
kind = "generic"
countries = ["DE"]
device = "mobile"
  [[campaigns.variants]]
  id = "de-mobile-a"
  title = "Hallo von unterwegs"
  body = "b"
  cta = "c"
  url = "/de"
  image = "/de.jpg"
""")
    at = "2026-11-01T12:00:00+00:00"

    def preview(*flags: str) -> str:
        run = subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", "campaigns", "preview", str(aimed),
                              "--build", str(seed_dir), "--at", at, *flags], capture_output=True, text=True,
                             cwd=ROOT, timeout=120)
        assert run.returncode == 0, run.stderr
        return run.stdout

    out = preview("--as", "c00001", "--country", "DE", "--device", "mobile")
    assert "MATCH de-mobile (priority 200): wins" in out and "title: Hallo von unterwegs" in out
    out = preview("--as", "c00001", "--country", "FR", "--device", "mobile")
    assert "no    de-mobile (priority 200): another country" in out
    winner = out.split("the winner: ")[1].split(",")[0]
    records = {**built.records, keys.banners(built.generation): codec.encode(
        "banners", {"rules": load_campaigns(aimed)}, generation=built.generation)}
    clock = FixedClock(1793534400)  # the --at above
    core = Personalizer(CONFIG, InMemoryKV(records), clock, lambda: "vnew")
    page = asyncio.run(core.handle("GET", "/v1/banner", "slot=hero", {
        "cookie": uid_cookie("c00001", issued_at=1793534400), "cf-ipcountry": "FR", "sec-ch-ua-mobile": "?1"}))
    assert json.loads(page.body)["banner"]["id"] == winner
    out = preview("--country", "DE", "--device", "desktop", "--no-consent")
    assert "no    de-mobile (priority 200): another device" in out and "not for a visitor who declined" in out


def _as_json(doc: object) -> object:
    """A TOML document as JSON Schema sees it: date-times as their RFC 3339 text."""
    from datetime import datetime

    if isinstance(doc, dict):
        return {k: _as_json(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_as_json(v) for v in doc]
    return doc.isoformat() if isinstance(doc, datetime) else doc


@pytest.mark.parametrize("change", [
    pytest.param(None, id="good"),
    pytest.param(('kind = "cart_reminder"', 'kind = "cart_remind"'), id="unknown-trigger"),
    pytest.param(("weight = 2", "weight = 0"), id="weight-zero"),
    pytest.param(("priority = 100", "priority = 100\nfatigue = 3"), id="unknown-field"),
    pytest.param(('device = "mobile"', 'device = "tablet"'), id="bad-device"),
    pytest.param(('regions = ["DE-BY"]', 'regions = ["Bavaria"]'), id="bad-region"),
    pytest.param(("start = 2026-12-01T00:00:00+01:00", "start = 2026-12-01T00:00:00"), id="start-without-offset"),
    pytest.param(('title = "Merry Christmas"', 'title = ""'), id="empty-title"),
    pytest.param(('url = "/c/gifts"', 'url = "//evil.example"'), id="url-not-allowed"),
    pytest.param(('kind = "generic"\ncountries', 'kind = "loyalty"\ncountries'), id="loyalty-without-tier"),
])
def test_the_published_schema_agrees_with_the_checker(change: tuple[str, str] | None) -> None:
    """docs/campaigns.schema.json (for editors and other tools) accepts what `campaigns check` accepts and refuses
    what it refuses, on the demo's file and a table of broken ones."""
    import json
    import tomllib

    import jsonschema

    schema = json.loads((ROOT / "docs" / "campaigns.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(_as_json(tomllib.loads(DEMO.read_text())))) == []
    text = TARGETED if change is None else TARGETED.replace(*change, 1)
    assert change is None or text != TARGETED
    _, problems = check_text(text)
    schema_errors = list(validator.iter_errors(_as_json(tomllib.loads(text))))
    assert bool(problems) == bool(schema_errors) == (change is not None), (problems, schema_errors)
