"""Request facts: method, path, query, headers and cookies checked against the v1 HTTP contract."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from .errors import BadRequest
from .keys import is_valid_id

CAROUSEL_SLOTS = ("home", "item", "cart", "recent")
BANNER_SLOTS = ("hero",)
PAGE_SLOTS = BANNER_SLOTS + CAROUSEL_SLOTS
FORMATS = ("json", "html")
MAX_QUERY_CHARS = 2048
MAX_COOKIE_CHARS = 8192
MAX_COOKIES = 64
READ_METHODS = "GET, HEAD"


@dataclass(frozen=True, slots=True)
class Ask:
    """What the client asked for, validated. ``endpoint`` is recommendations|banner|page|healthz|events."""

    endpoint: str
    head: bool = False
    slots: tuple[str, ...] = ()
    limit: int = 12
    item: str | None = None
    format: str = "json"


def _params(query: str) -> dict[str, str]:
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest("query_too_long", f"query string over {MAX_QUERY_CHARS} characters", 414)
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, max_num_fields=32)
    except ValueError:
        raise BadRequest("bad_query", "too many query parameters") from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise BadRequest("bad_query", f"parameter {name!r} given more than once")
        out[name] = value
    return out


def _format(p: dict[str, str]) -> str:
    fmt = p.get("format", "json")
    if fmt not in FORMATS:
        raise BadRequest("bad_format", "format must be json or html")
    return fmt


def _limit(p: dict[str, str]) -> int:
    raw = p.get("limit", "12")
    if not raw.isdigit() or not 1 <= int(raw) <= 48:
        raise BadRequest("bad_limit", "limit must be an integer from 1 to 48")
    return int(raw)


def _item(p: dict[str, str], required: bool) -> str | None:
    item = p.get("item")
    if item is None:
        if required:
            raise BadRequest("missing_item", "item is required for the item slot")
        return None
    if not is_valid_id(item):
        raise BadRequest("bad_item", "item must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    return item


def parse_ask(method: str, path: str, query: str) -> Ask:
    """Validate a request line; raises ``BadRequest`` (404, 405, 4xx) for anything off contract."""
    routes = {"/healthz": "healthz", "/v1/recommendations": "recommendations", "/v1/banner": "banner",
              "/v1/page": "page", "/v1/events": "events"}
    endpoint = routes.get(path)
    if endpoint is None:
        raise BadRequest("not_found", "no such endpoint", 404)
    if endpoint == "events":
        if method != "POST":
            raise BadRequest("method_not_allowed", "use POST", 405, allow="POST")
        raise BadRequest("not_implemented", "event beacons are not implemented yet", 501)
    if method not in ("GET", "HEAD"):
        raise BadRequest("method_not_allowed", f"use {READ_METHODS}", 405, allow=READ_METHODS)
    head = method == "HEAD"
    if endpoint == "healthz":
        return Ask("healthz", head)
    p = _params(query)
    fmt = _format(p)
    if endpoint == "recommendations":
        slot = p.get("slot")
        if slot is None:
            raise BadRequest("missing_slot", "slot is required")
        if slot not in CAROUSEL_SLOTS:
            raise BadRequest("bad_slot", f"slot must be one of {', '.join(CAROUSEL_SLOTS)}")
        return Ask(endpoint, head, (slot,), _limit(p), _item(p, slot == "item"), fmt)
    if endpoint == "banner":
        slot = p.get("slot")
        if slot is None:
            raise BadRequest("missing_slot", "slot is required")
        if slot not in BANNER_SLOTS:
            raise BadRequest("bad_slot", "slot must be hero")
        return Ask(endpoint, head, (slot,), format=fmt)
    raw = p.get("slots")
    if not raw:
        raise BadRequest("missing_slot", "slots is required")
    slots = tuple(raw.split(","))
    if any(s not in PAGE_SLOTS for s in slots):
        raise BadRequest("bad_slot", f"slots must be drawn from {', '.join(PAGE_SLOTS)}")
    if len(set(slots)) != len(slots):
        raise BadRequest("bad_slot", "a slot is listed twice")
    return Ask(endpoint, head, slots, _limit(p), _item(p, "item" in slots), fmt)


def parse_cookies(header: str | None) -> dict[str, str]:
    """Cookie header -> dict. Oversized or unparseable headers yield ``{}``: an anonymous visitor."""
    if not header or len(header) > MAX_COOKIE_CHARS:
        return {}
    out: dict[str, str] = {}
    for part in header.split(";")[:MAX_COOKIES]:
        name, sep, value = part.strip().partition("=")
        if not sep or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        out.setdefault(name, value)  # the first of duplicate names wins, as browsers send most specific first
    return out


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header read for mappings that may not normalise names."""
    v = headers.get(name)
    return v if v is not None else headers.get(name.title())
