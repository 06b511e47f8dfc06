"""Beacons: the wire format of ``POST /v1/events``, checked event by event, and the queue message it becomes.

One function (``clean_event``) decides what an event may contain; the edge runs it on every event of a
beacon and the origin's ingest runs it again on what the queue delivers, so neither trusts the other.
Only the fields below are kept: anything else a page sends is dropped, never stored.

    {"events": [{"id": "<client-made>", "type": "...", "ts": <epoch seconds>, ...fields of the type}]}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from . import jsontext
from .errors import BadRequest
from .keys import is_valid_id

MAX_BEACON_BYTES = 65_536
MAX_EVENTS = 50
TS_PAST_S = 86_400        # an event's ts is clamped into [received - this, received]
MAX_QUANTITY = 999
MAX_LINES = 100           # items in one purchase
MAX_POSITION = 999
MAX_SHOWN = 48            # items in one carousel impression (the read contract's limit)
MESSAGE_VERSION = 1
TYPES = ("view", "impression", "click", "add_to_cart", "remove_from_cart", "purchase")
SLOTS = ("hero", "home", "item", "cart", "recent", "again")
TIERS = ("user", "segment", "popular", "default", "item")
FLAGS = ("bot", "prefetch")
PRICE_RE = re.compile(r"[0-9]{1,9}(\.[0-9]{1,4})?")
# User agents that are not a shopper looking at a page: crawlers, link previews, audits, scripts.
BOT_RE = re.compile(r"bot\b|bot/|crawl|spider|slurp|facebookexternalhit|embedly|preview|headless|lighthouse"
                    r"|pagespeed|phantomjs|python-|curl/|wget/|go-http-client|java/|okhttp|httpx/|node-fetch",
                    re.IGNORECASE)


class Rejected(ValueError):
    """One event is off contract; ``code`` says why. The rest of the beacon is unaffected."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def parse_beacon(content_type: str | None, body: bytes | None) -> list[Any]:
    """The beacon's raw event list; ``BadRequest`` (415, 413, 400) when the beacon as a whole is unusable.

    ``body`` ``None``: longer than a beacon may be, so it was not read.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in ("text/plain", "application/json"):
        raise BadRequest("unsupported_media_type", "send JSON as text/plain;charset=UTF-8 or application/json", 415)
    if body is None or len(body) > MAX_BEACON_BYTES:
        raise BadRequest("too_large", f"a beacon is at most {MAX_BEACON_BYTES} bytes", 413)
    try:
        doc = jsontext.loads(body)  # nesting measured first: a deep body is a 400, never a crashed runtime
    except (ValueError, RecursionError):  # UnicodeDecodeError and jsontext.TooDeep are ValueErrors
        raise BadRequest("bad_body", 'body must be JSON: {"events": [...]}') from None
    events = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(events, list) or not events:
        raise BadRequest("bad_body", 'body must be JSON: {"events": [...]} with at least one event')
    if len(events) > MAX_EVENTS:
        raise BadRequest("too_many_events", f"a beacon carries at most {MAX_EVENTS} events", 413)
    return events


def _id(raw: Mapping[str, Any], name: str, code: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not is_valid_id(value):
        raise Rejected(code)
    return value


def _int(raw: Mapping[str, Any], name: str, lo: int, hi: int, code: str) -> int:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Rejected(code)
    return value


def _ts(raw: Mapping[str, Any], received: int) -> float:
    value = raw.get("ts")
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            (isinstance(value, float) and not math.isfinite(value)):
        raise Rejected("bad_ts")
    return float(min(max(value, received - TS_PAST_S), received))


def clean_event(raw: Any, received: int) -> dict[str, Any]:
    """The event with exactly the contract's fields, ``ts`` clamped; ``Rejected`` if it is off contract."""
    if not isinstance(raw, dict):
        raise Rejected("not_an_object")
    kind = raw.get("type")
    if kind not in TYPES:
        raise Rejected("bad_type")
    out: dict[str, Any] = {"id": _id(raw, "id", "bad_id"), "type": kind, "ts": _ts(raw, received)}
    if kind in ("view", "remove_from_cart"):
        out["item"] = _id(raw, "item", "bad_item")
    elif kind == "add_to_cart":
        out["item"] = _id(raw, "item", "bad_item")
        out["quantity"] = _int(raw, "quantity", 1, MAX_QUANTITY, "bad_quantity")
    elif kind == "click":
        out["slot"] = _slot(raw)
        out["item"] = _id(raw, "item", "bad_item")
        out["position"] = _int(raw, "position", 0, MAX_POSITION, "bad_position")
    elif kind == "impression":
        out["slot"] = slot = _slot(raw)
        if raw.get("tier") not in TIERS:
            raise Rejected("bad_tier")
        out["tier"] = raw["tier"]
        out["generation"] = _id(raw, "generation", "bad_generation")
        held = raw.get("holdout", False)
        if held is not True and held is not False:
            raise Rejected("bad_holdout")
        if held:
            out["holdout"] = True  # shown to someone in the global holdout (the page said so)
        if slot == "hero":
            out["banner"] = _id(raw, "banner", "bad_banner")
            out["variant"] = _id(raw, "variant", "bad_variant")
        else:
            items = raw.get("items")
            if not isinstance(items, list) or len(items) > MAX_SHOWN or \
                    not all(isinstance(i, str) and is_valid_id(i) for i in items):
                raise Rejected("bad_items")
            out["items"] = list(items)
    else:  # purchase
        out["order"] = _id(raw, "order", "bad_order")
        lines = raw.get("items")
        if not isinstance(lines, list) or not 1 <= len(lines) <= MAX_LINES:
            raise Rejected("bad_items")
        out["items"] = [_line(line) for line in lines]
    return out


def _slot(raw: Mapping[str, Any]) -> str:
    slot = raw.get("slot")
    if slot not in SLOTS:
        raise Rejected("bad_slot")
    return str(slot)


def _line(line: Any) -> dict[str, Any]:
    if not isinstance(line, dict):
        raise Rejected("bad_items")
    price = line.get("price")
    if not isinstance(price, str) or PRICE_RE.fullmatch(price) is None:
        raise Rejected("bad_price")
    return {"item": _id(line, "item", "bad_item"), "quantity": _int(line, "quantity", 1, MAX_QUANTITY, "bad_quantity"),
            "price": price}


def accept(events: list[Any], received: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(clean events, rejections ``{"index", "code"}``); an id seen earlier in the beacon is a duplicate."""
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, raw in enumerate(events):
        try:
            event = clean_event(raw, received)
            if event["id"] in seen:
                raise Rejected("duplicate_id")
        except Rejected as exc:
            rejected.append({"index": index, "code": exc.code})
            continue
        seen.add(event["id"])
        kept.append(event)
    return kept, rejected


def agent_flags(user_agent: str | None, purpose: str | None) -> list[str]:
    """``bot`` for a known crawler or script (or no user agent at all), ``prefetch`` for a speculative load."""
    flags = []
    if not user_agent or BOT_RE.search(user_agent[:512]):
        flags.append("bot")
    if purpose and any(p in purpose.lower() for p in ("prefetch", "prerender")):
        flags.append("prefetch")
    return flags


def message(customer: str | None, visitor: str | None, flags: list[str], events: list[dict[str, Any]],
            received: int) -> dict[str, Any]:
    """The queue message of one accepted beacon: who (signed ids only), how it arrived, its clean events."""
    return {"v": MESSAGE_VERSION, "received": received, "customer": customer, "visitor": visitor,
            "flags": flags, "events": events}


def check_message(raw: Any) -> dict[str, Any]:
    """The origin's check of a queue message; ``Rejected`` if the envelope itself is off contract.

    Its events are checked again by the caller with ``accept`` against the message's ``received`` time.
    """
    if not isinstance(raw, dict) or raw.get("v") != MESSAGE_VERSION:
        raise Rejected("bad_message")
    received = raw.get("received")
    if isinstance(received, bool) or not isinstance(received, int) or received < 0:
        raise Rejected("bad_message")
    who = {}
    for name in ("customer", "visitor"):
        value = raw.get(name)
        if value is not None and not (isinstance(value, str) and is_valid_id(value)):
            raise Rejected("bad_message")
        who[name] = value
    flags = raw.get("flags")
    events = raw.get("events")
    if not isinstance(flags, list) or not set(flags) <= set(FLAGS) or not isinstance(events, list) \
            or len(events) > MAX_EVENTS:
        raise Rejected("bad_message")
    return {"v": MESSAGE_VERSION, "received": received, **who, "flags": list(flags), "events": events}


def retry_delay_s(attempts: int, base_s: int, max_s: int) -> int:
    """Seconds before a failed delivery is tried again: ``base_s`` doubling per attempt, at most ``max_s``."""
    return int(min(max_s, base_s * 2 ** min(max(attempts - 1, 0), 30)))
