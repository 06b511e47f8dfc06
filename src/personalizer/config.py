"""The worker's configuration, parsed once from its vars and secrets into a frozen value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .digits import ascii_digits


@dataclass(frozen=True, slots=True)
class Config:
    signing_keys: tuple[bytes, ...] = ()   # first signs, all verify; empty = identity disabled
    consent_default: str = "granted"        # "granted" | "denied" when no pz_consent cookie
    uid_max_age_s: int = 30 * 86400
    vid_max_age_s: int = 365 * 86400
    browser_max_age_s: int = 60             # Cache-Control: private, max-age=... on fragments
    cache_max_bytes: int = 8 * 1024 * 1024  # isolate cache budget (of 128 MB per isolate)
    manifest_ttl_s: int = 15                # how stale the active generation may be in an isolate
    origin_url: str = ""
    origin_timeout_ms: int = 150
    origin_secret: str = ""
    origin_writeback_ttl_s: int = 86400    # expiry of a record written back after a miss (KV minimum 60)
    origin_breaker_failures: int = 5        # failures in a row that open the circuit breaker
    origin_breaker_cooldown_s: int = 10     # how long it stays open before one probe
    origin_negative_ttl_s: int = 30         # how long an isolate remembers the origin's "not found"
    session_max_age_s: int = 86400         # how long the signed session state (pz_s) is trusted
    events_retry_base_s: int = 5            # first delay before a failed event batch is posted again
    events_retry_max_s: int = 3600          # the delay doubles per attempt up to this (and stays there in the DLQ)
    allowed_origins: frozenset[str] = frozenset()  # shop origins other than ours that may call (CORS)
    base_path: str = ""                     # the worker's routes under a prefix of the shop's host ("/pz")
    pages_origin: str = ""                  # edge-side injection: the shop's own HTML comes from here
    pages_timeout_ms: int = 10_000          # ...and must start answering within this, or the page is a 504
    holdout_percent: int = 0                # the global holdout: this share of people is never personalized
    timezone: str = "UTC"                   # campaigns' local hours where request.cf has no time zone


# Every variable parse_config reads: the worker copies exactly these from its env (vars and secrets).
VARS = ("PZ_SIGNING_KEYS", "CONSENT_DEFAULT", "UID_MAX_AGE_S", "VID_MAX_AGE_S", "BROWSER_MAX_AGE_S",
        "CACHE_MAX_BYTES", "MANIFEST_TTL_S", "ORIGIN_URL", "ORIGIN_TIMEOUT_MS", "ORIGIN_SECRET",
        "ORIGIN_WRITEBACK_TTL_S", "ORIGIN_BREAKER_FAILURES", "ORIGIN_BREAKER_COOLDOWN_S", "ORIGIN_NEGATIVE_TTL_S",
        "EVENTS_RETRY_BASE_S", "EVENTS_RETRY_MAX_S", "SESSION_MAX_AGE_S", "ALLOWED_ORIGINS", "BASE_PATH",
        "PAGES_ORIGIN", "PAGES_TIMEOUT_MS", "HOLDOUT_PERCENT", "TIMEZONE")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_BASE_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)+")


def _origins(raw: str) -> frozenset[str]:
    """``ALLOWED_ORIGINS``: comma-separated exact origins (scheme, host, optional port; no path)."""
    out = set()
    for part in raw.split(","):
        origin = part.strip()
        if not origin:
            continue
        if _ORIGIN.fullmatch(origin) is None:
            raise ValueError(f"ALLOWED_ORIGINS: {origin!r} is not an origin like https://shop.example "
                             "(scheme and host, optional port, no path or trailing slash)")
        out.add(origin.lower())
    return frozenset(out)


def _pages_origin(raw: str) -> str:
    origin = raw.strip().rstrip("/")
    if origin and re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", origin) is None:
        raise ValueError(f"PAGES_ORIGIN must be an http(s) URL like https://origin.shop.example, got {raw!r}")
    return origin



def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    text = str(raw).strip()
    if not ascii_digits(text.removeprefix("-")):
        raise ValueError(f"{name} must be an integer, got {raw!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be within {lo}..{hi}, got {value}")
    return value


def parse_config(env: Mapping[str, str]) -> Config:
    """Build a ``Config`` from string vars; a bad value raises ``ValueError`` naming the var."""
    keys = tuple(k.strip().encode() for k in str(env.get("PZ_SIGNING_KEYS", "")).split(",") if k.strip())
    if any(len(k) < 16 for k in keys):
        raise ValueError("PZ_SIGNING_KEYS: every key must be at least 16 characters")
    consent = str(env.get("CONSENT_DEFAULT", "granted")).strip() or "granted"
    if consent not in ("granted", "denied"):
        raise ValueError(f"CONSENT_DEFAULT must be granted or denied, got {consent!r}")
    d = Config()  # defaults (class attributes of a slots dataclass are descriptors, not values)
    return Config(
        signing_keys=keys,
        consent_default=consent,
        uid_max_age_s=_int(env, "UID_MAX_AGE_S", d.uid_max_age_s, 60, 400 * 86400),
        vid_max_age_s=_int(env, "VID_MAX_AGE_S", d.vid_max_age_s, 60, 400 * 86400),
        browser_max_age_s=_int(env, "BROWSER_MAX_AGE_S", d.browser_max_age_s, 0, 86400),
        cache_max_bytes=_int(env, "CACHE_MAX_BYTES", d.cache_max_bytes, 0, 64 * 1024 * 1024),
        manifest_ttl_s=_int(env, "MANIFEST_TTL_S", d.manifest_ttl_s, 0, 3600),
        origin_url=str(env.get("ORIGIN_URL", "")).strip().rstrip("/"),
        origin_timeout_ms=_int(env, "ORIGIN_TIMEOUT_MS", d.origin_timeout_ms, 1, 10_000),
        origin_secret=str(env.get("ORIGIN_SECRET", "")),
        origin_writeback_ttl_s=_int(env, "ORIGIN_WRITEBACK_TTL_S", d.origin_writeback_ttl_s, 60, 365 * 86400),
        origin_breaker_failures=_int(env, "ORIGIN_BREAKER_FAILURES", d.origin_breaker_failures, 1, 1000),
        origin_breaker_cooldown_s=_int(env, "ORIGIN_BREAKER_COOLDOWN_S", d.origin_breaker_cooldown_s, 1, 3600),
        origin_negative_ttl_s=_int(env, "ORIGIN_NEGATIVE_TTL_S", d.origin_negative_ttl_s, 1, 3600),
        session_max_age_s=_int(env, "SESSION_MAX_AGE_S", d.session_max_age_s, 60, 30 * 86400),
        # Cloudflare Queues accept retry delays of at most 12 hours.
        events_retry_base_s=_int(env, "EVENTS_RETRY_BASE_S", d.events_retry_base_s, 0, 43200),
        events_retry_max_s=_int(env, "EVENTS_RETRY_MAX_S", d.events_retry_max_s, 0, 43200),
        allowed_origins=_origins(str(env.get("ALLOWED_ORIGINS", ""))),
        base_path=_base_path(str(env.get("BASE_PATH", ""))),
        pages_origin=_pages_origin(str(env.get("PAGES_ORIGIN", ""))),
        pages_timeout_ms=_int(env, "PAGES_TIMEOUT_MS", d.pages_timeout_ms, 1, 120_000),
        holdout_percent=_int(env, "HOLDOUT_PERCENT", d.holdout_percent, 0, 50),
        timezone=_timezone(str(env.get("TIMEZONE", "")).strip() or d.timezone),
    )


def _timezone(name: str) -> str:
    """An IANA zone name's shape (``Europe/Berlin``, ``UTC``); whether the zone exists, the runtime's clock says."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}", name) is None:
        raise ValueError(f"TIMEZONE must be an IANA time zone such as Europe/Berlin, got {name!r}")
    return name


def _base_path(raw: str) -> str:
    path = raw.strip().rstrip("/")
    if path and _BASE_PATH.fullmatch(path) is None:
        raise ValueError(f"BASE_PATH must be a path like /pz (letters, digits, . _ ~ -), got {raw!r}")
    return path
