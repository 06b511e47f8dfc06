"""Buy it again: what a person is likely to re-buy now, ranked at request time from their profile.

The build writes, for each item a person bought that anyone re-buys, how much that person buys it (a
frequency weighted towards their latest baskets), when they last did, and the item's repurchase facts from
everyone (share of buyers who bought it again, typical interval). The edge ranks with the request's clock,
so "due now" is now, not the build's day. The evaluation harness ranks with this same function.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import DecodeError
from .records import Card

RATE_FLOOR = 1.0   # the item's re-buy rate adds to the person's own frequency; it does not rule it
DUE_FLOOR = 0.3    # just bought: still likely in the next basket for staples bought every time
OVERDUE_AFTER = 4  # intervals: past this, interest fades (they may have switched)


@dataclass(frozen=True, slots=True)
class Rebuy:
    card: Card
    weight: float   # the person's purchase frequency of the item, weighted towards their latest baskets
    last: int       # epoch seconds of their last purchase of it
    interval: int   # everyone's typical re-purchase interval of the item, seconds (0: unknown)
    rate: float     # share of the item's buyers who bought it again (0..1)

    @classmethod
    def parse(cls, d: Any) -> Rebuy:
        if not isinstance(d, list) or len(d) != 5:
            raise DecodeError("again entry is not a 5-element array")
        card, weight, last, interval, rate = d
        if not (isinstance(weight, int | float) and isinstance(last, int) and isinstance(interval, int)
                and isinstance(rate, int | float)):
            raise DecodeError("bad again entry")
        return cls(Card.parse(card), float(weight), last, interval, float(rate))


def due(elapsed_s: float, interval_s: int, floor: float = DUE_FLOOR) -> float:
    """How due an item is (``floor``..1): rising to 1 at its interval, fading once long overdue."""
    if interval_s <= 0:
        return 1.0
    x = max(elapsed_s, 0.0) / interval_s
    if x <= 1:
        return floor + (1 - floor) * x
    return 1.0 if x <= OVERDUE_AFTER else OVERDUE_AFTER / x


def score(r: Rebuy, now: float, floor: float = DUE_FLOOR) -> float:
    return r.weight * (RATE_FLOOR + r.rate) * due(now - r.last, r.interval, floor)


def rank(rebuys: Iterable[Rebuy], now: float, due_floor: float = DUE_FLOOR) -> list[Card]:
    """Cards best first (ties: the profile's order, which is by weight). ``due_floor``: the manifest's
    (``Settings.again_due_floor``, which the build tunes on the shop's data)."""
    scored = [(-score(r, now, due_floor), n, r.card) for n, r in enumerate(rebuys)]
    return [card for _, _, card in sorted(scored, key=lambda t: (t[0], t[1]))]


def most_due(rebuys: Iterable[Rebuy], now: float, min_rate: float = 0.3) -> Rebuy | None:
    """The item a restock reminder is about: re-bought by many, bought by this person more than once, and
    due now (at or past its interval and not long forgotten); the highest-scored of those."""
    best: tuple[float, Rebuy] | None = None
    for r in rebuys:
        if r.rate < min_rate or r.weight < 1.5 or r.interval <= 0:
            continue
        if not 1 <= (now - r.last) / r.interval <= OVERDUE_AFTER:
            continue
        s = score(r, now)
        if best is None or s > best[0]:
            best = (s, r)
    return None if best is None else best[1]
