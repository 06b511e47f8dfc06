"""Banner choice: the highest-priority rule that matches the visitor, and a sticky weighted variant."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import codec
from .again import most_due
from .records import BannerRule, BannerSet, Card, Context, Inventory, LocalTime, Profile, Settings, Variant

# Rule kind -> tier reported when it is chosen.
_TIER = {"cart_reminder": "user", "restock": "user", "price_drop": "user", "loyalty": "user",
         "returning_category": "user", "segment": "segment", "new_visitor": "popular", "generic": "popular"}


@dataclass(frozen=True, slots=True)
class BannerChoice:
    tier: str
    rule: BannerRule
    variant: Variant
    fill: tuple[tuple[str, str], ...] = ()  # placeholder -> text, e.g. ("{item}", "Trail shoe")


def pick_variant(rule: BannerRule, bucket_key: str | None) -> Variant:
    """Deterministic weighted A/B: the same visitor always sees the same variant of a rule.

    Without a key (no consent, no id) everyone gets the first variant: the control.
    """
    live = [v for v in rule.variants if v.weight > 0] or list(rule.variants)
    if bucket_key is None:
        return live[0]
    total = sum(v.weight for v in live)
    if total <= 0:
        return live[0]
    digest = hashlib.sha256(f"{bucket_key}|{rule.id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for v in live:
        point -= v.weight
        if point < 0:
            return v
    return live[-1]  # pragma: no cover - unreachable, the weights sum to total


def _price_drop(profile: Profile, inventory: Inventory) -> Card | None:
    watched = (*profile.cart, *(c for c in profile.recent if c.id in profile.watched))
    for card in watched:
        now_price = inventory.prices.get(card.id)
        if now_price is not None and now_price < card.price and card.id not in inventory.out_of_stock:
            return card
    return None


def _once(local: LocalTime) -> LocalTime:
    """``local`` remembering its answer (or its error) for the one request it serves."""
    memo: dict[tuple[str, int], tuple[int, int] | Exception] = {}

    def ask(zone: str, now: int) -> tuple[int, int]:
        if (zone, now) not in memo:
            try:
                memo[zone, now] = local(zone, now)
            except (ValueError, KeyError) as exc:
                memo[zone, now] = exc
        answer = memo[zone, now]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return ask


def choose(banner_set: BannerSet | None, profile: Profile | None, segment: str | None, *, consented: bool,
           inventory: Inventory, settings: Settings, now: int, bucket_key: str | None,
           context: Context | None = None) -> BannerChoice | None:
    """The banner for this visitor, or ``None`` when no rule applies (the caller uses the default).

    ``context``: the request's own facts for targeting (when, country, device, landing parameters); targeting
    on segments or tiers needs the profile, so it never matches a visitor who did not consent.
    """
    if banner_set is None:
        return None
    ctx = context if context is not None else Context(now)
    if ctx.local is not None:  # the visitor's local time is asked once per request, however many campaigns need it
        ctx = ctx._replace(local=_once(ctx.local))
    # Highest priority first (equal ones in the set's order): the first rule that matches is the one that wins.
    for rule in banner_set.ranked:
        if rule.target is not None and not rule.target.admits(ctx, profile):
            continue
        fill: tuple[tuple[str, str], ...] | None = None
        if rule.kind == "generic":
            fill = ()
        elif not consented:
            continue
        elif rule.kind == "new_visitor" and profile is None:
            fill = ()
        elif profile is None:
            continue
        elif rule.kind == "cart_reminder":
            if profile.cart and now - profile.cart_updated_at >= settings.cart_reminder_after_s:
                fill = (("{item}", profile.cart[0].title),)
        elif rule.kind == "restock":
            due = most_due(profile.again, now)
            if due is not None and due.card.id not in inventory.out_of_stock:
                fill = (("{item}", due.card.title),)
        elif rule.kind == "price_drop":
            dropped = _price_drop(profile, inventory)
            if dropped is not None:
                fill = (("{item}", dropped.title),)
        elif rule.kind == "loyalty":
            if profile.loyalty and profile.loyalty == rule.match:
                fill = (("{tier}", profile.loyalty),)
        elif rule.kind == "returning_category":
            if profile.categories and profile.categories[0] == rule.match:
                fill = (("{category}", rule.match),)
        elif rule.kind == "segment" and segment is not None and segment == rule.match:
            fill = ()
        if fill is not None:
            return BannerChoice(_TIER[rule.kind], rule, pick_variant(rule, bucket_key if consented else None), fill)
    return None


def default_rule(rules: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Of a compiled campaigns list, the one the shop's default tier shows: its highest-priority ``generic``
    campaign without targeting (one that wins for anybody, anywhere, any time), the first of a tie; else none."""
    best: dict[str, Any] | None = None
    for rule in rules:
        if rule.get("kind") == "generic" and "target" not in rule and (
                best is None or rule.get("priority", 0) > best.get("priority", 0)):
            best = rule
    return best


def default_record(cards: list[Any], rules: list[dict[str, Any]], generation: str, produced_at: int) -> bytes:
    """The ``pz1:default`` record: the shop's popular ``cards`` and its default campaign (``default_rule``)."""
    rule = default_rule(rules)
    data: dict[str, Any] = {"generation": generation, "cards": cards}
    if rule is not None:
        data["banner"] = rule
    return codec.encode("default", data, produced_at=produced_at)


# What each targeting condition's refusal means, in words a marketer reads (the trace of a preview).
WHY = {"start": "its schedule has not started", "end": "its schedule has ended", "countries": "another country",
       "regions": "another region", "device": "another device", "utm_campaign": "another utm_campaign",
       "utm_source": "another utm_source", "utm_medium": "another utm_medium",
       "timezone": "the visitor's local time cannot be told", "weekdays": "not one of its weekdays",
       "hours": "outside its local hours", "segments": "not in its segments", "tiers": "not its loyalty tier"}


class Tried(NamedTuple):
    """One campaign as a preview's trace shows it: whether it matched the visitor, and why (or why not)."""

    campaign: str
    priority: int
    matched: bool
    why: str


def trace(banner_set: BannerSet, profile: Profile | None, segment: str | None, *, consented: bool,
          inventory: Inventory, settings: Settings, bucket_key: str | None,
          context: Context) -> tuple[BannerChoice | None, list[Tried]]:
    """``choose``'s answer, with every campaign tried in its order and why it matched or not: each campaign is
    chosen alone (``choose`` on it), its targeting asked for the first condition that refuses."""
    ctx = context if context.local is None else context._replace(local=_once(context.local))
    person = profile if consented else None
    tried, winner = [], None
    for rule in banner_set.ranked:
        why = ""
        refusal = rule.target.refusal(ctx, person) if rule.target else None
        if refusal is not None:
            why = WHY.get(refusal, refusal)
            choice = None
        else:
            choice = choose(BannerSet((rule,)), person, segment, consented=consented, inventory=inventory,
                            settings=settings, now=ctx.now, bucket_key=bucket_key, context=ctx)
            if choice is None:
                why = "not for a visitor who declined consent" if not consented and rule.kind != "generic" \
                    else f"its trigger ({rule.kind}) does not hold for this visitor"
        if choice is not None and winner is None:
            winner = choice
            why = "wins" + (f" (fills {', '.join(f'{k}={v}' for k, v in choice.fill)})" if choice.fill else "")
        elif choice is not None:
            why = "would match, but a campaign above won"
        tried.append(Tried(rule.id, rule.priority, choice is not None, why))
    return winner, tried


def force(rule: BannerRule, variant_id: str | None, profile: Profile | None, bucket_key: str | None,
          sample_item: str) -> BannerChoice:
    """``rule`` shown whatever its trigger and targeting (a preview link's campaign): the named variant, else the
    visitor's own; its placeholders filled from the profile where it can tell, else ``sample_item`` for
    ``{item}`` and the campaign's own match for ``{category}`` and ``{tier}``."""
    variant = next((v for v in rule.variants if v.id == variant_id), None) or pick_variant(rule, bucket_key)
    item = profile.cart[0].title if profile is not None and profile.cart else sample_item
    fill = (("{item}", item),
            ("{category}", rule.match or (profile.categories[0] if profile is not None and profile.categories else "")),
            ("{tier}", rule.match or (profile.loyalty if profile is not None else "")))
    return BannerChoice(_TIER[rule.kind], rule, variant, fill)
