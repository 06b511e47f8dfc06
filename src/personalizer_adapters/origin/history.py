"""A person's whole history for a profile: the profile store's events and the event log's newer ones.

Used by the origin on a miss and by `personalizer refresh`, so both compute what the next build would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from personalizer import codec
from personalizer_adapters.batch.model import CART, PURCHASE, VIEW, Model, profile_payload
from personalizer_adapters.store.base import NO_ORDER, PersonHistory, Rows, order_key


def merge_log(rows: Rows, events: Iterable[dict[str, Any]], index: dict[str, int], after: float) -> Rows:
    """The store's (product, kind, ts, quantity, order key) rows plus the beacon events newer than ``after`` (the
    build's data). ``remove_from_cart`` takes back the earlier adds of its item; a purchase counts each of its
    lines, with its quantity and its order (``order_key``, as the build reads an export's order ids).
    """
    products, kinds, ts, qty, keys = (list(a.tolist()) for a in rows)
    for e in sorted(events, key=lambda e: e["ts"]):
        if e["ts"] <= after:
            continue
        t = int(e["ts"])
        kind = e["type"]
        if kind in ("view", "add_to_cart") and e["item"] in index:
            for column, value in zip((products, kinds, ts, qty, keys),
                                     (index[e["item"]], VIEW if kind == "view" else CART, t, 1, NO_ORDER), strict=True):
                column.append(value)
        elif kind == "remove_from_cart" and e["item"] in index:
            gone = index[e["item"]]
            keep = [not (p == gone and k == CART and s <= t) for p, k, s in zip(products, kinds, ts, strict=True)]
            products, kinds, ts, qty, keys = ([x for x, k in zip(a, keep, strict=True) if k]
                                              for a in (products, kinds, ts, qty, keys))
        elif kind == "purchase":
            key = order_key(str(e.get("order") or ""))
            for line in e["items"]:
                if line["item"] in index:
                    for column, value in zip((products, kinds, ts, qty, keys),
                                             (index[line["item"]], PURCHASE, t, int(line.get("quantity") or 1), key),
                                             strict=True):
                        column.append(value)
    return tuple(np.array(a, dtype=np.int64) for a in (products, kinds, ts, qty, keys))  # type: ignore[return-value]


def person_profile(model: Model, history: PersonHistory, person: str) -> bytes | None:
    """One person's profile record from what the store holds of them (``Stores.person_history``); ``None`` if
    it knows nothing of them."""
    rows = merge_log(history.rows, history.events, model.index, model.now)
    if history.known is None and not len(rows[0]):
        return None
    payload = profile_payload(model, person, history.known[0] if history.known else None, *rows)
    return codec.encode("profile", payload, produced_at=model.now)
