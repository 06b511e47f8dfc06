"""Signed preview links: a shop page that shows a named campaign before it goes live, to whoever holds the link.

``personalizer preview-link`` signs what a link forces (the campaign, optionally its variant, the shopper it is
seen as, and the request facts targeting reads: country, region, device, local zone, instant, landing
parameters) with the identity keys' first key, for at most a day. The page's URL carries it as ``pz_preview``;
``pz.js`` passes it to ``/v1/page`` as ``preview`` and edge-side injection reads it from the page's own URL.

A token is ``p1.<payload>.<signature>``: the payload compact JSON in base64url, the signature HMAC-SHA256 over
``pz_preview|<payload>`` (base64url, no padding). The signature is checked before the payload is read; anything
forged, expired, issued for longer than a day, from the future, or malformed verifies to ``None`` and the
request is answered as if the link had no token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

from . import jsontext
from .keys import is_valid_id

PARAM = "pz_preview"  # the page's query parameter
MAX_TOKEN_CHARS = 1536
MAX_LIFETIME_S = 24 * 3600
CLOCK_SKEW_S = 300
DEVICES = ("mobile", "desktop")
_UTM = ("utm_campaign", "utm_source", "utm_medium")
_COUNTRY = re.compile(r"[A-Z]{2}")
_REGION = re.compile(r"[A-Z]{2}-[A-Z0-9]{1,3}")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-/]{0,63}")


@dataclass(frozen=True, slots=True)
class Preview:
    """What a preview link forces. Empty or ``None`` fields are the request's own."""

    campaign: str
    variant: str | None = None
    person: str | None = None  # seen as this signed-in customer (their profile, their variant)
    country: str = ""
    region: str = ""
    device: str = ""           # "mobile" or "desktop"
    timezone: str = ""         # IANA zone for local hours and weekdays
    at: int | None = None      # the instant the campaigns are tried at (schedules, local hours)
    utm: tuple[tuple[str, str], ...] = ()
    expires: int = 0

    def check(self) -> None:
        """Raise ``ValueError`` naming the first field that is not what a link may carry."""
        if not is_valid_id(self.campaign):
            raise ValueError(f"campaign: not an id: {self.campaign!r}")
        for name, value in (("variant", self.variant), ("as", self.person)):
            if value is not None and not is_valid_id(value):
                raise ValueError(f"{name}: not an id: {value!r}")
        if self.country and not _COUNTRY.fullmatch(self.country):
            raise ValueError(f"country: not an ISO 3166-1 alpha-2 code: {self.country!r}")
        if self.region and not _REGION.fullmatch(self.region):
            raise ValueError(f"region: not an ISO 3166-2 code such as DE-BY: {self.region!r}")
        if self.device and self.device not in DEVICES:
            raise ValueError(f"device: mobile or desktop, not {self.device!r}")
        if self.timezone and not _ZONE.fullmatch(self.timezone):
            raise ValueError(f"timezone: not an IANA zone name: {self.timezone!r}")
        for name, value in self.utm:
            if name not in _UTM or not 0 < len(value) <= 100:
                raise ValueError(f"{name}: 1-100 characters")

    def payload(self, issued_at: int) -> dict[str, object]:
        data: dict[str, object] = {"c": self.campaign, "iat": issued_at, "exp": self.expires}
        optional = {"v": self.variant, "as": self.person, "country": self.country, "region": self.region,
                    "device": self.device, "tz": self.timezone, "at": self.at}
        data.update({k: v for k, v in optional.items() if v})
        if self.utm:
            data["utm"] = dict(self.utm)
        return data


def _mac(key: bytes, payload: str) -> str:
    digest = hmac.digest(key, f"{PARAM}|{payload}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(preview: Preview, issued_at: int, key: bytes) -> str:
    """The token of ``preview`` (whose ``expires`` must be within a day of ``issued_at``)."""
    preview.check()
    if not issued_at < preview.expires <= issued_at + MAX_LIFETIME_S:
        raise ValueError("a preview link lives from 1 second to 1 day")
    text = json.dumps(preview.payload(issued_at), separators=(",", ":"), ensure_ascii=True)
    payload = base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()
    token = f"p1.{payload}.{_mac(key, payload)}"
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"the preview link's token is over {MAX_TOKEN_CHARS} characters")
    return token


def verify(token: str, keys: tuple[bytes, ...], now: int) -> Preview | None:
    """The preview a valid, current token names, else ``None``. Constant-time signature comparison."""
    if not keys or len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "p1":
        return None
    payload, sig = parts[1], parts[2]
    if not any(hmac.compare_digest(_mac(key, payload), sig) for key in keys):
        return None
    try:  # signed by us: a flat map of short values; still read as untrusted text is (a leaked key is not a crash)
        data = jsontext.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)), max_depth=4)
    except (binascii.Error, ValueError):
        return None
    return _preview(data, now)


def _preview(data: object, now: int) -> Preview | None:
    if not isinstance(data, dict):
        return None
    iat, exp, at, utm = data.get("iat"), data.get("exp"), data.get("at"), data.get("utm", {})
    if type(iat) is not int or type(exp) is not int or not (at is None or type(at) is int):
        return None
    if iat > now + CLOCK_SKEW_S or exp <= now or exp - iat > MAX_LIFETIME_S or not isinstance(utm, dict):
        return None
    fields = {name: data.get(key, "") for key, name in (("country", "country"), ("region", "region"),
                                                         ("device", "device"), ("tz", "timezone"))}
    texts = [data.get("c"), data.get("v", ""), data.get("as", ""), *fields.values(), *utm.values()]
    if not all(isinstance(t, str) for t in texts) or not all(isinstance(k, str) for k in utm):
        return None
    preview = Preview(str(data.get("c")), data.get("v") or None, data.get("as") or None, **fields, at=at,
                      utm=tuple((k, str(v).lower()) for k, v in utm.items()), expires=exp)
    try:
        preview.check()
    except ValueError:
        return None
    return preview
