"""``campaigns.toml``: the shop's banners, as a file its marketers edit, checked before anything is built.

One ``[[campaigns]]`` table per campaign, each with one ``[[campaigns.variants]]`` table per A/B variant::

    [[campaigns]]
    id = "cart-reminder"          # letters, digits, . _ : - (at most 64)
    priority = 100                # the highest-priority campaign that matches a visitor wins
    kind = "cart_reminder"        # the trigger, see TRIGGERS

      [[campaigns.variants]]
      id = "cart-a"
      weight = 50                 # a visitor's variant is sticky, drawn by weight
      title = "Still thinking about the {item}?"
      body = "Your cart is saved."
      cta = "Back to cart"
      url = "/cart"
      image = "https://img.shop.example/banners/cart-a.jpg"

``check_text`` reports every problem at once, each with its line and field; ``load_campaigns`` gives the
banner record's rules or raises ``CampaignsError`` with them. The edge reads the record as before.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from personalizer.keys import is_valid_id
from personalizer.render import safe_url

# trigger -> (the parameter it takes, if any; the placeholders its copy may use: what the edge fills in)
TRIGGERS: dict[str, tuple[str | None, frozenset[str]]] = {
    "cart_reminder": (None, frozenset({"item"})),          # a cart left for the manifest's reminder delay
    "restock": (None, frozenset({"item"})),                # something they re-buy is due again
    "price_drop": (None, frozenset({"item"})),             # something in their cart or watched got cheaper
    "loyalty": ("tier", frozenset({"tier"})),              # their loyalty tier is `tier`
    "returning_category": ("category", frozenset({"category"})),  # their latest category is `category`
    "segment": ("segment", frozenset()),                   # their best segment is `segment`
    "new_visitor": (None, frozenset()),                    # consenting, with no profile yet
    "generic": (None, frozenset()),                        # everyone, consenting or not
}
TARGETING = ("segments", "tiers", "countries", "regions", "device", "start", "end", "weekdays", "hours",
             "utm_campaign", "utm_source", "utm_medium")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")
CAMPAIGN_FIELDS = frozenset({"id", "priority", "kind", "variants", "tier", "category", "segment", *TARGETING})
# ISO 3166-1 alpha-2: the codes Cloudflare's request.cf.country gives.
_ISO_3166_1 = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC
CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD
GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH
KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW
MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC
SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY
UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"""
COUNTRIES = frozenset(_ISO_3166_1.split())
_REGION = re.compile(r"([A-Z]{2})-[A-Z0-9]{1,3}")
VARIANT_FIELDS = frozenset({"id", "weight", "title", "body", "cta", "url", "image"})
TEXT_FIELDS = ("title", "body", "cta")
MAX_TEXT = 300
MAX_PRIORITY = 1_000_000
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_AT_LINE = re.compile(r"at line (\d+)")


@dataclass(frozen=True, slots=True)
class Problem:
    line: int          # 1-based; 0 when the file as a whole is at fault
    where: str         # "campaign 'x'", "campaign 'x' variant 'y'", or "file"
    field: str | None
    message: str

    def text(self, path: str) -> str:
        spot = f"{path}:{self.line}" if self.line else path
        return f"{spot}: {self.where}" + (f" {self.field}" if self.field else "") + f": {self.message}"


class CampaignsError(ValueError):
    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(p.text(path) for p in problems))


class _Lines:
    """Where tables and fields stand in the text (tomllib gives values, not positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.campaigns: list[int] = []           # the header line of each [[campaigns]]
        self.variants: list[list[int]] = []      # per campaign, the header line of each [[campaigns.variants]]
        for n, line in enumerate(self.lines, 1):
            stripped = line.strip()
            if re.fullmatch(r"\[\[\s*campaigns\s*\]\](\s*#.*)?", stripped):
                self.campaigns.append(n)
                self.variants.append([])
            elif re.fullmatch(r"\[\[\s*campaigns\s*\.\s*variants\s*\]\](\s*#.*)?", stripped) and self.variants:
                self.variants[-1].append(n)

    def _end(self, start: int) -> int:
        for n in range(start + 1, len(self.lines) + 1):
            if self.lines[n - 1].lstrip().startswith("["):
                return n
        return len(self.lines) + 1

    def of(self, campaign: int, variant: int | None = None, field: str | None = None) -> int:
        if campaign >= len(self.campaigns):
            return 0
        start = self.campaigns[campaign] if variant is None else \
            (self.variants[campaign][variant] if variant < len(self.variants[campaign]) else 0)
        if not start or field is None:
            return start
        for n in range(start + 1, self._end(start)):
            if re.match(rf"\s*{re.escape(field)}\s*=", self.lines[n - 1]):
                return n
        return start


def check_text(text: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The banner rules a campaigns file compiles to, and every problem found in it (none: it is good)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = _AT_LINE.search(str(exc))
        return [], [Problem(int(at.group(1)) if at else 0, "file", None, f"not TOML: {exc}")]
    where = _Lines(text)
    problems: list[Problem] = []
    unknown = sorted(set(doc) - {"campaigns"})
    if unknown:
        problems.append(Problem(0, "file", None, f"unknown top-level key(s) {', '.join(unknown)}: only "
                                                 "[[campaigns]] tables are read"))
    campaigns = doc.get("campaigns")
    if not isinstance(campaigns, list) or not campaigns:
        problems.append(Problem(0, "file", None, "no [[campaigns]] table: at least the generic one is needed"))
        return [], problems
    rules: list[dict[str, Any]] = []
    ids: dict[str, int] = {}
    variant_ids: dict[str, str] = {}
    for n, raw in enumerate(campaigns):
        rule = _campaign(n, raw, where, problems, ids, variant_ids)
        if rule is not None:
            rules.append(rule)
    if rules and len(rules) == len(campaigns):
        problems += _never_win(rules, where)
    if not any(r["kind"] == "generic" for r in rules) and not any(p.field == "kind" for p in problems):
        problems.append(Problem(0, "file", None, "no campaign of kind 'generic': the visitors no other campaign "
                                                 "matches (and everyone who declined consent) would see none"))
    return rules, problems


def _campaign(n: int, raw: Any, where: _Lines, problems: list[Problem], ids: dict[str, int],
              variant_ids: dict[str, str]) -> dict[str, Any] | None:
    before = len(problems)
    name = raw.get("id") if isinstance(raw, dict) else None
    label = f"campaign {name!r}" if isinstance(name, str) else f"campaign #{n + 1}"

    def bad(field: str | None, message: str, variant: int | None = None, vlabel: str = "") -> None:
        problems.append(Problem(where.of(n, variant, field), label + vlabel, field, message))

    if not isinstance(raw, dict):
        bad(None, "is not a table")
        return None
    for field in sorted(set(raw) - CAMPAIGN_FIELDS):
        bad(field, f"unknown field (a campaign has: {', '.join(sorted(CAMPAIGN_FIELDS))})")
    if not isinstance(name, str) or not is_valid_id(name):
        bad("id", "must be 1 to 64 letters, digits or . _ : -")
    elif name in ids:
        bad("id", f"used twice (first at line {where.of(ids[name], None, 'id')})")
    else:
        ids[name] = n
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        bad("priority", f"must be a whole number from 0 to {MAX_PRIORITY:,}")
    kind = raw.get("kind")
    if kind not in TRIGGERS:
        bad("kind", f"unknown trigger {kind!r}; one of: {', '.join(TRIGGERS)}")
        return None
    param, placeholders = TRIGGERS[kind]
    for other in ("tier", "category", "segment"):
        if other != param and other in raw:
            bad(other, f"a {kind} campaign takes no {other}")
    match = ""
    if param is not None:
        value = raw.get(param)
        if not isinstance(value, str) or not value.strip():
            bad(param, f"a {kind} campaign needs its {param}")
        else:
            match = value
            if param in ("tier", "segment") and not is_valid_id(value):
                bad(param, "must be 1 to 64 letters, digits or . _ : -")
    target = _target(raw, bad)
    variants = raw.get("variants")
    if not isinstance(variants, list) or not variants:
        bad("variants", "at least one [[campaigns.variants]] is needed")
        return None
    out_variants = []
    for v, var in enumerate(variants):
        vname = var.get("id") if isinstance(var, dict) else None
        vlabel = f" variant {vname!r}" if isinstance(vname, str) else f" variant #{v + 1}"
        if not isinstance(var, dict):
            bad(None, "is not a table", v, vlabel)
            continue
        for field in sorted(set(var) - VARIANT_FIELDS):
            bad(field, f"unknown field (a variant has: {', '.join(sorted(VARIANT_FIELDS))})", v, vlabel)
        if not isinstance(vname, str) or not is_valid_id(vname):
            bad("id", "must be 1 to 64 letters, digits or . _ : -", v, vlabel)
        elif vname in variant_ids:
            bad("id", f"already a variant of {variant_ids[vname]!r}: variant ids are reported in the "
                      "experiment results and must be unique in the file", v, vlabel)
        else:
            variant_ids[vname] = str(name)
        weight = var.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
            bad("weight", "must be a whole number above 0", v, vlabel)
        for field in TEXT_FIELDS:
            text = var.get(field)
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
                bad(field, f"must be text of 1 to {MAX_TEXT} characters", v, vlabel)
                continue
            for found in _PLACEHOLDER.findall(text):
                if found not in placeholders:
                    allowed = ", ".join("{" + p + "}" for p in sorted(placeholders)) or "none"
                    bad(field, f"placeholder {{{found}}} is not filled for a {kind} campaign (allowed: {allowed})",
                        v, vlabel)
            if "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text):
                bad(field, "an unmatched { or }", v, vlabel)
        for field in ("url", "image"):
            link = var.get(field)
            if not isinstance(link, str) or safe_url(link) != link:
                bad(field, "must be an https:// or http:// URL with a host, or a path starting with one /, with "
                           "no spaces, control characters or backslashes", v, vlabel)
        out_variants.append({f: var.get(f) for f in ("id", "weight", "title", "body", "cta", "url", "image")}
                            | {"weight": weight})
    if len(problems) > before:
        return None
    rule = {"id": name, "kind": kind, "priority": priority, "match": match, "variants": out_variants}
    return {**rule, "target": target} if target else rule


def _target(raw: dict[str, Any], bad: Any) -> dict[str, Any]:
    """The campaign's targeting as the banner record carries it (only what is given; schedule in epoch seconds)."""
    out: dict[str, Any] = {}
    for field in ("segments", "tiers", "countries", "regions", "utm_campaign", "utm_source", "utm_medium"):
        if field not in raw:
            continue
        values = raw[field]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            bad(field, "must be a list of one or more texts")
            continue
        if field in ("segments", "tiers") and not all(is_valid_id(v) for v in values):
            bad(field, "each must be 1 to 64 letters, digits or . _ : -")
        elif field == "countries" and not COUNTRIES.issuperset(values):
            wrong = sorted(set(values) - COUNTRIES)
            bad(field, f"not an ISO 3166-1 country code (upper case, two letters): {', '.join(wrong)}")
        elif field == "regions" and not all((m := _REGION.fullmatch(v)) and m.group(1) in COUNTRIES for v in values):
            bad(field, "each must be an ISO 3166-2 code: country, dash, subdivision (DE-BY, US-CA)")
        elif field.startswith("utm_") and not all(len(v) <= 100 for v in values):
            bad(field, "each must be at most 100 characters")
        else:
            out[field] = [v.lower() for v in values] if field.startswith("utm_") else list(values)
    if "device" in raw:
        if raw["device"] not in ("mobile", "desktop"):
            bad("device", "must be mobile or desktop")
        else:
            out["device"] = raw["device"]
    for field in ("start", "end"):
        if field in raw:
            at = instant(raw[field])
            if at is None:
                bad(field, "must be an RFC 3339 instant with its offset: 2026-12-24T18:00:00+01:00 (or Z)")
            else:
                out[field] = at
    if "start" in out and "end" in out and out["end"] <= out["start"]:
        bad("end", "is not after start")
    if "weekdays" in raw:
        days = raw["weekdays"]
        if not isinstance(days, list) or not days or not all(isinstance(d, str) and d.lower() in WEEKDAYS
                                                              for d in days):
            bad("weekdays", f"must be a list of days from: {', '.join(WEEKDAYS)}")
        else:
            out["weekdays"] = sorted({WEEKDAYS.index(d.lower()) for d in days})
    if "hours" in raw:
        spans = raw["hours"]
        windows = [_window(h) for h in spans] if isinstance(spans, list) and spans else [None]
        if any(w is None for w in windows):
            bad("hours", 'must be a list of local times "HH:MM-HH:MM" (24-hour; "22:00-02:00" runs past '
                         "midnight; the two ends differ)")
        else:
            out["hours"] = [list(w) for w in windows if w is not None]
    return out


def _window(text: Any) -> tuple[int, int] | None:
    """``"08:30-20:00"`` as minutes of the day [from, until); ``None`` when it is not one."""
    m = _HOURS.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        return None
    start, end = int(m.group(1)) * 60 + int(m.group(2)), int(m.group(3)) * 60 + int(m.group(4))
    return None if start == end or end > 1440 else (start, end)


def instant(value: Any) -> int | None:
    """Epoch seconds of a TOML offset date-time or an RFC 3339 text; ``None`` without an offset (ambiguous)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        return None
    return int(value.timestamp())


def _never_win(rules: list[dict[str, Any]], where: _Lines) -> list[Problem]:
    """Campaigns that can never be shown: below a generic one (it matches everyone), or below another with the
    same trigger and parameter. (Among equal priorities the earlier in the file wins.)"""
    problems = []
    index = {r["id"]: n for n, r in enumerate(rules)}
    ranked = sorted(rules, key=lambda r: -r["priority"])  # stable: file order among equals, as the edge ranks
    for i, rule in enumerate(ranked):
        for better in ranked[:i]:
            if "target" in better:
                continue  # a targeted campaign does not always match: it shadows nothing
            if better["kind"] == "generic" or (better["kind"], better["match"]) == (rule["kind"], rule["match"]):
                problems.append(Problem(where.of(index[rule["id"]], None, "priority"), f"campaign {rule['id']!r}",
                                        "priority", f"can never win: {better['id']!r} (line "
                                        f"{where.of(index[better['id']])}, priority {better['priority']}) always "
                                        "matches first"))
                break
    return problems


def load_campaigns(path: Path) -> list[dict[str, Any]]:
    """The banner rules of the campaigns file at ``path``; ``CampaignsError`` listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CampaignsError(str(path), [Problem(0, "file", None, "not UTF-8 text")]) from None
    rules, problems = check_text(text)
    if problems:
        raise CampaignsError(str(path), problems)
    return rules
