"""KV key names for schema v1: the one place where reader and writer agree on them."""

from __future__ import annotations

import re
from functools import lru_cache

from .errors import LimitError

PREFIX = "pz1"
MANIFEST = f"{PREFIX}:manifest"
INVENTORY = f"{PREFIX}:inventory"
# The shop's own default tier (its generic campaign, its popular items): outside any generation, so it is read
# even when the manifest is not, and kept by the isolate through a KV outage.
DEFAULT = f"{PREFIX}:default"

# Ids everywhere (people, items, segments, generations): 1-64 of A-Z a-z 0-9 _ . : -
ID_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
MAX_KEY_BYTES = 512


def is_valid_id(value: str) -> bool:
    """True when ``value`` is an id the HTTP contract and the key space accept."""
    return ID_RE.fullmatch(value) is not None


def _checked(key: str) -> str:
    if len(key.encode()) > MAX_KEY_BYTES:
        raise LimitError(f"key of {len(key.encode())} bytes exceeds {MAX_KEY_BYTES}", key=key)
    return key


def _id(value: str, what: str) -> str:
    if not is_valid_id(value):
        raise ValueError(f"invalid {what} id: {value!r}")
    return value


def generation_prefix(gen: str) -> str:
    """Prefix shared by every record of one generation (used to list and delete old generations)."""
    return f"{PREFIX}:g:{_id(gen, 'generation')}:"


# The shared records' keys are the same for every request of a generation: built and checked once per isolate
# (a bad id raises every time; exceptions are not cached).
@lru_cache(maxsize=256)
def segment(gen: str, segment_id: str) -> str:
    return _checked(generation_prefix(gen) + "seg:" + _id(segment_id, "segment"))


@lru_cache(maxsize=16)
def popular(gen: str) -> str:
    return _checked(generation_prefix(gen) + "popular")


def item(gen: str, item_id: str) -> str:
    return _checked(generation_prefix(gen) + "item:" + _id(item_id, "item"))


@lru_cache(maxsize=16)
def banners(gen: str) -> str:
    return _checked(generation_prefix(gen) + "banners")


def profile(person_id: str) -> str:
    """A signed-in customer's profile (``pz_uid``)."""
    return _checked(f"{PREFIX}:p:" + _id(person_id, "person"))


def visitor(visitor_id: str) -> str:
    """An anonymous visitor's profile (``pz_vid``): a key space of its own, so that no visitor id, minted or
    chosen, can ever name a customer's profile."""
    return _checked(f"{PREFIX}:v:" + _id(visitor_id, "visitor"))


_KIND_OF_PART = {"seg": "segment", "item": "item"}


def parse(key: str) -> tuple[str, str | None, str | None]:
    """``(kind, generation, id)`` of a v1 key, the inverse of the builders above; ``ValueError`` if not one."""
    parts = key.split(":")
    if len(key.encode()) > MAX_KEY_BYTES or len(parts) < 2 or parts[0] != PREFIX:
        raise ValueError(f"not a {PREFIX} key: {key[:80]!r}")
    if key == MANIFEST:
        return "manifest", None, None
    if key == INVENTORY:
        return "inventory", None, None
    if key == DEFAULT:
        return "default", None, None
    if parts[1] in ("p", "v") and len(parts) >= 3:
        ident = ":".join(parts[2:])
        if is_valid_id(ident):
            return "profile" if parts[1] == "p" else "visitor", None, ident
    if parts[1] == "g" and len(parts) >= 4 and is_valid_id(parts[2]):
        gen, rest = parts[2], parts[3:]
        if rest in (["popular"], ["banners"]):
            return rest[0], gen, None
        if len(rest) >= 2 and rest[0] in _KIND_OF_PART and is_valid_id(":".join(rest[1:])):
            return _KIND_OF_PART[rest[0]], gen, ":".join(rest[1:])
    raise ValueError(f"not a {PREFIX} key: {key[:80]!r}")
