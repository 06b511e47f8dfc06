"""The signed session state (``pz_s``): what a consenting shopper just did, carried by their own browser.

The events endpoint folds each beacon into it and sets it again; reads use it at once, so the next page
knows the item just viewed and the live cart without a KV write per event. Only ids and times are kept:

    v1.<base64url(person|viewed,...|item*added_at,...|bought,...)>.<issued_at>.<signature>

The signature is HMAC-SHA256 over the cookie name, the payload and the issue time (the identity cookies'
keys, so rotation works the same way), and the state belongs to one person: a state made for another id,
forged, oversized, malformed or older than ``max_age_s`` is ignored, never an error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from .digits import ascii_digits
from .keys import is_valid_id

SESSION = "pz_s"
MAX_VIEWED = 8
MAX_CART = 10
MAX_BOUGHT = 10
MAX_CHARS = 3000  # the cookie value; a browser keeps at most ~4 KB per cookie


@dataclass(frozen=True, slots=True)
class Session:
    person: str
    viewed: tuple[str, ...] = ()                  # newest first
    cart: tuple[tuple[str, int], ...] = ()        # (item, added_at), newest first
    bought: tuple[str, ...] = ()                  # bought in this session, newest first
    updated_at: int = 0

    @property
    def cart_ids(self) -> tuple[str, ...]:
        return tuple(i for i, _ in self.cart)

    @property
    def cart_updated_at(self) -> int:
        return max((t for _, t in self.cart), default=0)


def _mac(key: bytes, payload: str, issued_at: int) -> str:
    digest = hmac.new(key, f"{SESSION}|{payload}|{issued_at}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _payload(s: Session) -> str:
    return "|".join((s.person, ",".join(s.viewed), ",".join(f"{i}*{t}" for i, t in s.cart), ",".join(s.bought)))


def encode(s: Session, issued_at: int, key: bytes) -> str:
    """The cookie value; the oldest entries are dropped first if it would be longer than ``MAX_CHARS``."""
    while True:
        raw = _payload(s)
        body = base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()
        token = f"v1.{body}.{issued_at}.{_mac(key, raw, issued_at)}"
        if len(token) <= MAX_CHARS or not (s.viewed or s.cart or s.bought):
            return token
        longest = max(("viewed", len(s.viewed)), ("cart", len(s.cart)), ("bought", len(s.bought)),
                      key=lambda p: p[1])[0]
        s = Session(s.person, s.viewed[:-1] if longest == "viewed" else s.viewed,
                    s.cart[:-1] if longest == "cart" else s.cart,
                    s.bought[:-1] if longest == "bought" else s.bought, s.updated_at)


def decode(token: str | None, person: str | None, keys: tuple[bytes, ...], now: int, max_age_s: int) -> Session | None:
    """The state in a valid token made for ``person``, else ``None``. Constant-time signature check."""
    if not token or person is None or not keys or len(token) > MAX_CHARS:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != "v1" or not ascii_digits(parts[2]):
        return None
    issued_at = int(parts[2])
    if issued_at > now + 300 or now - issued_at > max_age_s:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not any(hmac.compare_digest(_mac(k, raw, issued_at), parts[3]) for k in keys):
        return None
    fields = raw.split("|")
    if len(fields) != 4 or fields[0] != person:
        return None
    viewed = tuple(i for i in fields[1].split(",") if i)
    bought = tuple(i for i in fields[3].split(",") if i)
    cart = []
    for entry in (e for e in fields[2].split(",") if e):
        item, sep, at = entry.partition("*")
        if not sep or not ascii_digits(at):
            return None
        cart.append((item, int(at)))
    ids = (*viewed, *bought, *(i for i, _ in cart))
    if len(viewed) > MAX_VIEWED or len(cart) > MAX_CART or len(bought) > MAX_BOUGHT or \
            not all(is_valid_id(i) for i in ids):
        return None
    return Session(person, viewed, tuple(cart), bought, issued_at)


def fold(state: Session | None, person: str, events: list[dict[str, Any]], now: int) -> Session:
    """The state after ``events`` (clean events, any order: applied by ``ts``)."""
    viewed = list(state.viewed) if state else []
    cart = list(state.cart) if state else []
    bought = list(state.bought) if state else []
    for e in sorted(events, key=lambda e: e["ts"]):
        kind = e["type"]
        if kind == "view":
            viewed = [e["item"], *(i for i in viewed if i != e["item"])]
        elif kind == "add_to_cart":
            cart = [(e["item"], int(e["ts"])), *((i, t) for i, t in cart if i != e["item"])]
        elif kind == "remove_from_cart":
            cart = [(i, t) for i, t in cart if i != e["item"]]
        elif kind == "purchase":
            paid = [line["item"] for line in e["items"]]
            cart = [(i, t) for i, t in cart if i not in paid]
            bought = [*dict.fromkeys(paid), *(i for i in bought if i not in paid)]
    return Session(person, tuple(viewed[:MAX_VIEWED]), tuple(cart[:MAX_CART]), tuple(bought[:MAX_BOUGHT]), now)
