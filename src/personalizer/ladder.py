"""Carousel assembly: walk the degradation ladder's sources, apply render-time rules, backfill."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .records import Card, Inventory

TIERS = ("user", "item", "segment", "popular", "default")
_RANK = {t: n for n, t in enumerate(TIERS)}


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
    best = len(TIERS)  # rank of the best tier that contributed
    out_of_stock, prices = inventory.out_of_stock, inventory.prices
    n = 0  # len(chosen)
    for capped in (True, False):
        for source_tier, cards in sources:
            if n >= limit:
                break
            rank = _RANK[source_tier]
            for card in cards:
                ident = card.id
                if ident in taken or ident in exclude or ident in out_of_stock:
                    continue
                count = per_category.get(card.category, 0)
                if capped and count >= category_cap:
                    continue
                price = prices.get(ident) if prices else None
                chosen.append(card if price is None or price == card.price else Card(
                    ident, card.title, card.url, card.image, price, card.currency, card.category))
                taken.add(ident)
                per_category[card.category] = count + 1
                if rank < best:
                    best = rank
                n += 1
                if n >= limit:
                    break
        if n >= limit:
            break
    return Carousel(slot, TIERS[best] if best < len(TIERS) else sources[-1][0], tuple(chosen))
