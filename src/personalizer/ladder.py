"""Carousel assembly: walk the degradation ladder's sources, apply render-time rules, backfill."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from .records import Card, Inventory

TIERS = ("user", "item", "segment", "popular", "default")


@dataclass(frozen=True, slots=True)
class Carousel:
    """The decision for one slot: which tier answered and the cards, in order."""

    slot: str
    tier: str
    cards: tuple[Card, ...]


def interleave(lists: Iterable[Sequence[Card]]) -> tuple[Card, ...]:
    """Round-robin merge (cart complements: one from each cart item in turn), first occurrence wins."""
    lists = [list(x) for x in lists]
    out: list[Card] = []
    seen: set[str] = set()
    for i in range(max((len(x) for x in lists), default=0)):
        for lst in lists:
            if i < len(lst) and lst[i].id not in seen:
                seen.add(lst[i].id)
                out.append(lst[i])
    return tuple(out)


def assemble(slot: str, sources: Sequence[tuple[str, Sequence[Card]]], *, limit: int,
             exclude: frozenset[str] | set[str], inventory: Inventory, category_cap: int) -> Carousel:
    """Fill ``limit`` cards from ``sources`` (best tier first).

    Rules: drop ids in ``exclude`` (bought, in cart, already shown on the page), out of stock, and
    duplicates; at most ``category_cap`` per category. When the cap leaves the carousel short, a second
    pass relaxes only the cap, so a carousel is never short while candidates exist. The tier reported
    is the best source that contributed a card.
    """
    chosen: list[Card] = []
    taken: set[str] = set()
    per_category: dict[str, int] = {}
    tier: str | None = None
    for capped in (True, False):
        for source_tier, cards in sources:
            for card in cards:
                if len(chosen) >= limit:
                    break
                if card.id in taken or card.id in exclude or card.id in inventory.out_of_stock:
                    continue
                if capped and per_category.get(card.category, 0) >= category_cap:
                    continue
                price = inventory.prices.get(card.id)
                chosen.append(card if price is None else replace(card, price=price))
                taken.add(card.id)
                per_category[card.category] = per_category.get(card.category, 0) + 1
                if tier is None or TIERS.index(source_tier) < TIERS.index(tier):
                    tier = source_tier
        if len(chosen) >= limit:
            break
    return Carousel(slot, tier or sources[-1][0], tuple(chosen))
