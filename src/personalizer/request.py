"""Request facts: method, path, query, headers and cookies checked against the v1 HTTP contract."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl

from .digits import ascii_digits
from .errors import BadRequest
from .identity import CONSENT
from .keys import is_valid_id

CAROUSEL_SLOTS = ("home", "item", "cart", "recent", "again")
BANNER_SLOTS = ("hero",)
PAGE_SLOTS = BANNER_SLOTS + CAROUSEL_SLOTS
FORMATS = ("json", "html")
MAX_QUERY_CHARS = 2048
MAX_COOKIE_CHARS = 65_536  # beyond this the header is not read at all, and consent counts as denied
MAX_OWN_COOKIES = 16       # distinct pz_* names kept; shops send dozens of other cookies, all skipped
OWN_PREFIX = "pz_"
READ_METHODS = "GET, HEAD"


@dataclass(frozen=True, slots=True)
class Ask:
    """What the client asked for, validated. ``endpoint`` is recommendations|banner|page|healthz|events|asset
    (``slots``: the file's name)|preflight (``slots``: the path asked about)."""

    endpoint: str
    head: bool = False
    slots: tuple[str, ...] = ()
    limit: int = 12
    item: str | None = None
    format: str = "json"
    version: str | None = None  # an asset's ?v=: the version the page links to (long-cacheable when current)
    utm: tuple[tuple[str, str], ...] = ()  # the page's landing parameters (campaign targeting), lower case
    preview: str | None = None  # a preview link's token (``preview``), checked by the service


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


UTM_PARAMS = ("utm_campaign", "utm_source", "utm_medium")
MAX_UTM_CHARS = 100


def utm_of(p: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The landing parameters of a page (``pz.js`` passes its own; injection reads the page's URL), lower case;
    an over-long one is left out rather than refused (it is the shop's link, not the client's fault)."""
    return tuple((name, p[name].lower()) for name in UTM_PARAMS if name in p and 0 < len(p[name]) <= MAX_UTM_CHARS)


def _format(p: dict[str, str]) -> str:
    fmt = p.get("format", "json")
    if fmt not in FORMATS:
        raise BadRequest("bad_format", "format must be json or html")
    return fmt


def _limit(p: dict[str, str]) -> int:
    raw = p.get("limit", "12")
    if not (ascii_digits(raw) and len(raw) <= 2) or not 1 <= int(raw) <= 48:
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


# An isolate sees the same few request lines again and again (a shop's pages ask for the same slots); the
# answer is an immutable Ask, so it is kept for the next request (a rejected line is not kept: its exception
# is raised afresh). Bounded in entries, and the query in characters, so at most ~1 MB whatever is sent.
@lru_cache(maxsize=512)
def parse_ask(method: str, path: str, query: str) -> Ask:
    """Validate a request line; raises ``BadRequest`` (404, 405, 4xx) for anything off contract."""
    routes = {"/healthz": "healthz", "/v1/recommendations": "recommendations", "/v1/banner": "banner",
              "/v1/page": "page", "/v1/events": "events", "/v1/pz.js": "asset", "/v1/pz.css": "asset"}
    endpoint = routes.get(path)
    if endpoint is None:
        raise BadRequest("not_found", "no such endpoint", 404)
    if method == "OPTIONS" and endpoint != "healthz":  # a CORS preflight (or a client asking what is allowed)
        return Ask("preflight", slots=(path,))
    if endpoint == "asset":
        if method not in ("GET", "HEAD"):
            raise BadRequest("method_not_allowed", f"use {READ_METHODS}", 405, allow=READ_METHODS)
        return Ask("asset", method == "HEAD", (path.rsplit("/", 1)[1],), version=_params(query).get("v"))
    if endpoint == "events":
        if method != "POST":
            raise BadRequest("method_not_allowed", "use POST", 405, allow="POST")
        return Ask("events")
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
        return Ask(endpoint, head, (slot,), format=fmt, utm=utm_of(p), preview=p.get("preview") or None)
    raw = p.get("slots")
    if not raw:
        raise BadRequest("missing_slot", "slots is required")
    slots = tuple(raw.split(","))
    if any(s not in PAGE_SLOTS for s in slots):
        raise BadRequest("bad_slot", f"slots must be drawn from {', '.join(PAGE_SLOTS)}")
    if len(set(slots)) != len(slots):
        raise BadRequest("bad_slot", "a slot is listed twice")
    return Ask(endpoint, head, slots, _limit(p), _item(p, "item" in slots), fmt, utm=utm_of(p),
               preview=p.get("preview") or None)


def parse_cookies(header: str | None) -> dict[str, str] | None:
    """The ``pz_*`` cookies of a Cookie header, wherever they stand in it; ``None`` if it cannot be read.

    Shops send dozens of cookies (analytics, A/B tests, consent managers), so ours are looked for among all
    of them, in work bounded by ``MAX_COOKIE_CHARS``; a longer header is ``None``, which callers treat as
    consent denied: a refusal we could not read must never turn into consent. Of duplicate names the first
    wins (browsers send the most specific first), except consent: any ``denied`` among them is a denial.
    """
    if not header:
        return {}
    if len(header) > MAX_COOKIE_CHARS:
        return None
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if not sep or not name.startswith(OWN_PREFIX):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name == CONSENT and value != out.setdefault(name, value):
            out[name] = "denied"  # two different answers: the cautious one
        elif name not in out and len(out) < MAX_OWN_COOKIES:
            out[name] = value
    return out


def gpc_opt_out(value: str | None) -> bool:
    """``Sec-GPC: 1`` is an opt-out; so is a folded list (``1, 1``) from a proxy that merged two headers."""
    return value is not None and any(v.strip() == "1" for v in value.split(","))


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header read for mappings that may not normalise names."""
    v = headers.get(name)
    return v if v is not None else headers.get(name.title())
