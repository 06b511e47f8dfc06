"""Typed v1 records: frozen dataclasses parsed strictly from decoded payloads, and back to payloads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .codec import Envelope
from .errors import DecodeError


def _str(d: dict[str, Any], name: str, default: str | None = None) -> str:
    v = d.get(name, default)
    if not isinstance(v, str):
        raise DecodeError(f"field {name!r} is not a string")
    return v


def _int(d: dict[str, Any], name: str, default: int | None = None) -> int:
    v = d.get(name, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise DecodeError(f"field {name!r} is not an integer")
    return v


def _fraction(d: dict[str, Any], name: str, default: float) -> float:
    v = d.get(name, default)
    if not isinstance(v, int | float) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
        raise DecodeError(f"field {name!r} is not a number from 0 to 1")
    return float(v)


def _list(d: dict[str, Any], name: str) -> list[Any]:
    v = d.get(name, [])
    if not isinstance(v, list):
        raise DecodeError(f"field {name!r} is not a list")
    return v


_STR = frozenset({str})


def _strs(d: dict[str, Any], name: str) -> tuple[str, ...]:
    out = tuple(_list(d, name))
    if not _STR.issuperset(map(type, out)):  # one C-level pass; decoded payloads hold exact types
        raise DecodeError(f"field {name!r} is not a list of strings")
    return out


class Card(NamedTuple):
    """One product as shown in a carousel. ``price`` is in minor units (cents).

    A named tuple rather than a frozen dataclass: built for every card a request decodes and hashed as the key
    of the isolate's render memo, it is three times as quick to make and twice as quick to hash.
    """

    id: str
    title: str
    url: str
    image: str
    price: int
    currency: str
    category: str

    @classmethod
    def parse(cls, d: Any) -> Card:
        # On the wire a card is a 7-element array, not a map: half the objects to decode per card, and cards
        # are most of what the hot path decodes (a profile holds ~40).
        if type(d) is not list or len(d) != 7:
            raise DecodeError("card is not a 7-element array")
        ident, title, url, image, price, currency, category = d
        if not (type(ident) is str and type(title) is str and type(url) is str and type(image) is str
                and type(currency) is str and type(category) is str):
            raise DecodeError("card field is not a string")
        if type(price) is not int:  # bool is not an int here
            raise DecodeError("card price is not an integer")
        return tuple.__new__(cls, d)  # the checked 7 fields as they are, without the generated __new__'s frame

    def payload(self) -> list[Any]:
        return list(self)


def _cards(d: dict[str, Any], name: str) -> tuple[Card, ...]:
    return tuple(map(Card.parse, _list(d, name)))


@dataclass(frozen=True, slots=True)
class Settings:
    """Tier settings carried by the manifest, so the data team tunes them without a deploy."""

    category_cap: int = 4
    cart_reminder_after_s: int = 6 * 3600
    shared_ttl_s: int = 300
    again_due_floor: float = 0.3  # "buy it again": how due a just-bought item is (again.due; the build tunes it)

    @classmethod
    def parse(cls, d: Any) -> Settings:
        if not isinstance(d, dict):
            raise DecodeError("settings is not a map")
        base = cls()
        return cls(_int(d, "category_cap", base.category_cap),
                   _int(d, "cart_reminder_after_s", base.cart_reminder_after_s),
                   _int(d, "shared_ttl_s", base.shared_ttl_s),
                   _fraction(d, "again_due_floor", base.again_due_floor))


@dataclass(frozen=True, slots=True)
class Manifest:
    generation: str
    built_at: int
    segments: tuple[str, ...]
    settings: Settings

    @classmethod
    def parse(cls, env: Envelope) -> Manifest:
        d = env.data
        return cls(_str(d, "generation"), _int(d, "built_at"), _strs(d, "segments"),
                   Settings.parse(d.get("settings", {})))


@dataclass(frozen=True, slots=True)
class CardList:
    """A ranked list of cards: a segment's, the popular list, or an item's neighbours."""

    name: str
    cards: tuple[Card, ...]
    banners: tuple[str, ...] = ()  # a segment's preferred banner rule ids, best first
    again: tuple[Card, ...] = ()   # the items its people re-buy most ("buy it again" for someone with none)

    @classmethod
    def parse(cls, env: Envelope) -> CardList:
        d = env.data
        return cls(_str(d, "name"), _cards(d, "cards"), _strs(d, "banners"),
                   _cards(d, "again") if "again" in d else ())


@dataclass(frozen=True, slots=True)
class ItemRecord:
    item: str
    also_bought: tuple[Card, ...]
    complements: tuple[Card, ...]
    card: Card | None = None  # the item itself (records built before it was added have none)

    @classmethod
    def parse(cls, env: Envelope) -> ItemRecord:
        d = env.data
        return cls(_str(d, "item"), _cards(d, "also_bought"), _cards(d, "complements"),
                   Card.parse(d["card"]) if "card" in d else None)


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    weight: int
    title: str
    body: str
    cta: str
    url: str
    image: str

    @classmethod
    def parse(cls, d: Any) -> Variant:
        if not isinstance(d, dict):
            raise DecodeError("variant is not a map")
        weight = _int(d, "weight", 1)
        if weight < 0:
            raise DecodeError("negative variant weight")
        return cls(_str(d, "id"), weight, _str(d, "title"), _str(d, "body"), _str(d, "cta"),
                   _str(d, "url"), _str(d, "image"))


RULE_FIELDS = frozenset({"id", "kind", "priority", "match", "variants", "target"})
TARGET_SETS = ("segments", "tiers", "countries", "regions")
UTM = ("utm_campaign", "utm_source", "utm_medium")
TARGET_FIELDS = frozenset({*TARGET_SETS, *UTM, "device", "start", "end", "weekdays", "hours"})
# (time zone, epoch seconds) -> (weekday 0 = Monday, minutes since local midnight); ValueError: unknown zone.
LocalTime = Callable[[str, int], tuple[int, int]]


class Context(NamedTuple):
    """What the edge knows of the request itself, with no profile: when, where from, on what, from which link."""

    now: int
    country: str = ""              # ISO 3166-1 alpha-2, from Cloudflare's request.cf
    region: str = ""               # ISO 3166-2, "DE-BY"
    mobile: bool | None = None     # Sec-CH-UA-Mobile, else the user agent; None: cannot tell
    utm: tuple[tuple[str, str], ...] = ()  # the page's utm_campaign, utm_source, utm_medium (lower case)
    timezone: str = ""             # the visitor's IANA zone (request.cf.timezone), else the configured one
    local: LocalTime | None = None  # the runtime's clock of zones (JS Intl in the worker, zoneinfo in CPython)

    def local_time(self) -> tuple[int, int] | None:
        """(weekday, minute of the day) in the visitor's zone; ``None`` when it cannot be told."""
        if self.local is None or not self.timezone:
            return None
        try:
            return self.local(self.timezone, self.now)
        except (ValueError, KeyError):
            return None


@dataclass(frozen=True, slots=True)
class Target:
    """A campaign's targeting: every condition given must hold (each list: any of its values)."""

    segments: frozenset[str] = frozenset()
    tiers: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    device: str = ""                   # "mobile" | "desktop" | "" (any)
    start: int | None = None           # epoch seconds, from (inclusive)
    end: int | None = None             # epoch seconds, until (exclusive)
    utm: tuple[tuple[str, frozenset[str]], ...] = ()
    weekdays: frozenset[int] = frozenset()       # 0 = Monday, in the visitor's own zone
    hours: tuple[tuple[int, int], ...] = ()      # local [from, until) in minutes; until < from: across midnight

    @classmethod
    def parse(cls, d: Any) -> Target:
        """``DecodeError`` for a field this worker does not know or a value it cannot read (the rule is skipped)."""
        if not isinstance(d, dict) or not TARGET_FIELDS.issuperset(d):
            raise DecodeError("targeting this worker cannot evaluate")
        sets = {name: frozenset(_strs(d, name)) for name in TARGET_SETS}
        utm = tuple((name, frozenset(v.lower() for v in _strs(d, name))) for name in UTM if name in d)
        device = _str(d, "device", "")
        if device not in ("", "mobile", "desktop"):
            raise DecodeError(f"unknown device {device!r}")
        start, end = d.get("start"), d.get("end")
        for value in (start, end):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise DecodeError("schedule is not in epoch seconds")
        weekdays = _list(d, "weekdays")
        hours = _list(d, "hours")
        if not all(type(w) is int and 0 <= w <= 6 for w in weekdays) or not all(
                isinstance(h, list) and len(h) == 2 and all(type(m) is int and 0 <= m <= 1440 for m in h)
                for h in hours):
            raise DecodeError("local hours or weekdays this worker cannot read")
        return cls(sets["segments"], sets["tiers"], sets["countries"], sets["regions"], device, start, end, utm,
                   frozenset(weekdays), tuple((h[0], h[1]) for h in hours))

    def admits(self, ctx: Context, profile: Profile | None) -> bool:
        return self.refusal(ctx, profile) is None

    def refusal(self, ctx: Context, profile: Profile | None) -> str | None:
        """The first condition that does not admit the request (its field's name: ``start``, ``countries``...),
        or ``None``. Names, not sentences: choosing a banner asks this of every campaign it tries."""
        if self.start is not None and ctx.now < self.start:
            return "start"
        if self.end is not None and ctx.now >= self.end:
            return "end"
        if self.countries and ctx.country not in self.countries:
            return "countries"
        if self.regions and ctx.region not in self.regions:
            return "regions"
        if self.device and ctx.mobile is not (self.device == "mobile"):
            return "device"
        if self.utm:
            given = dict(ctx.utm)
            for name, values in self.utm:
                if given.get(name) not in values:
                    return name
        if self.weekdays or self.hours:
            local = ctx.local_time()
            if local is None:
                return "timezone"
            weekday, minute = local
            if self.weekdays and weekday not in self.weekdays:
                return "weekdays"
            if self.hours and not any(a <= minute < b if a <= b else minute >= a or minute < b
                                      for a, b in self.hours):
                return "hours"
        if self.segments and not (profile is not None and self.segments.intersection(profile.segments)):
            return "segments"
        if self.tiers and not (profile is not None and profile.loyalty in self.tiers):
            return "tiers"
        return None


BANNER_KINDS = (
    "cart_reminder", "restock", "price_drop", "loyalty", "returning_category", "segment", "new_visitor", "generic",
)


@dataclass(frozen=True, slots=True)
class BannerRule:
    """A banner creative with A/B variants. ``match`` is the loyalty tier or category it applies to."""

    id: str
    kind: str
    priority: int
    match: str
    variants: tuple[Variant, ...]
    target: Target | None = None

    @classmethod
    def parse(cls, d: Any) -> BannerRule:
        if not isinstance(d, dict):
            raise DecodeError("banner rule is not a map")
        kind = _str(d, "kind")
        if kind not in BANNER_KINDS:
            raise DecodeError(f"unknown banner kind {kind!r}")
        variants = tuple(Variant.parse(v) for v in _list(d, "variants"))
        if not variants:
            raise DecodeError("banner rule without variants")
        target = Target.parse(d["target"]) if "target" in d else None
        return cls(_str(d, "id"), kind, _int(d, "priority", 0), _str(d, "match", ""), variants, target)


@dataclass(frozen=True, slots=True)
class BannerSet:
    rules: tuple[BannerRule, ...]
    # The rules by priority, highest first, equal ones in their order (a stable sort): made once per decoded set,
    # so choosing a banner stops at the first rule that matches instead of weighing all of them.
    ranked: tuple[BannerRule, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranked", tuple(sorted(self.rules, key=lambda r: -r.priority)))

    @classmethod
    def parse(cls, env: Envelope) -> BannerSet:
        # A rule this worker does not fully understand (a newer build's: a kind it does not know, or a field
        # such as targeting it cannot evaluate) is skipped, so it never matches: not the whole set, never a 5xx.
        rules = []
        for r in _list(env.data, "rules"):
            if isinstance(r, dict) and (r.get("kind") not in BANNER_KINDS or not RULE_FIELDS.issuperset(r)):
                continue
            if isinstance(r, dict) and "target" in r:
                try:
                    Target.parse(r["target"])
                except DecodeError:
                    continue  # targeting of a newer build: this campaign never matches here
            rules.append(BannerRule.parse(r))
        return cls(tuple(rules))


@dataclass(frozen=True, slots=True)
class Profile:
    """One person's record: segments best first, personal cards, history, loyalty and cart."""

    id: str
    segments: tuple[str, ...]
    cards: tuple[Card, ...]
    recent: tuple[Card, ...]          # recently viewed, newest first
    bought: frozenset[str]
    cart: tuple[Card, ...]
    cart_updated_at: int
    loyalty: str                      # "" when not a member
    categories: tuple[str, ...]       # last categories browsed, newest first
    watched: tuple[str, ...] = field(default=())  # item ids whose price drop is worth a banner
    again: tuple[Any, ...] = field(default=())    # again.Rebuy entries: what they may buy again, most bought first

    @classmethod
    def parse(cls, env: Envelope) -> Profile:
        from .again import Rebuy  # again imports Card from here

        d = env.data
        again = d.get("again", [])
        if not isinstance(again, list):
            raise DecodeError("again is not a list")
        return cls(_str(d, "id"), _strs(d, "segments"), _cards(d, "cards"), _cards(d, "recent"),
                   frozenset(_strs(d, "bought")), _cards(d, "cart"), _int(d, "cart_updated_at", 0),
                   _str(d, "loyalty", ""), _strs(d, "categories"), _strs(d, "watched"),
                   tuple(Rebuy.parse(r) for r in again))


@dataclass(frozen=True, slots=True)
class Inventory:
    """Out-of-stock ids and current prices (minor units) that override the cards' prices."""

    out_of_stock: frozenset[str]
    prices: dict[str, int]

    @classmethod
    def parse(cls, env: Envelope) -> Inventory:
        d = env.data
        prices = d.get("prices", {})
        if not isinstance(prices, dict) or not all(
                isinstance(k, str) and isinstance(v, int) for k, v in prices.items()):
            raise DecodeError("prices is not a map of id to integer")
        return cls(frozenset(_strs(d, "out_of_stock")), dict(prices))


EMPTY_INVENTORY = Inventory(frozenset(), {})


@dataclass(frozen=True, slots=True)
class DefaultTier:
    """The shop's own ``default`` tier (``pz1:default``): its popular items and its untargeted generic campaign,
    what every visitor may be shown when nothing better is known, and what the isolate keeps through an outage."""

    cards: tuple[Card, ...]
    banner: BannerRule | None = None  # shown with its first variant (the control): no campaign of it, none

    @classmethod
    def parse(cls, env: Envelope) -> DefaultTier:
        d = env.data
        rule = d.get("banner")
        if rule is not None and (not isinstance(rule, dict) or rule.get("kind") != "generic"
                                 or not RULE_FIELDS.issuperset(rule) or "target" in rule):
            rule = None  # a newer build's default banner this worker cannot show as it is meant: none
        return cls(_cards(d, "cards"), BannerRule.parse(rule) if rule is not None else None)

PARSERS: dict[str, Any] = {
    "manifest": Manifest.parse, "segment": CardList.parse, "popular": CardList.parse,
    "item": ItemRecord.parse, "banners": BannerSet.parse, "profile": Profile.parse,
    "inventory": Inventory.parse, "default": DefaultTier.parse,
}
