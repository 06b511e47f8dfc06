"""KV key names for schema v1: the one place where reader and writer agree on them."""

from __future__ import annotations

import re

from .errors import LimitError

PREFIX = "pz1"
MANIFEST = f"{PREFIX}:manifest"
INVENTORY = f"{PREFIX}:inventory"

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


def segment(gen: str, segment_id: str) -> str:
    return _checked(generation_prefix(gen) + "seg:" + _id(segment_id, "segment"))


def popular(gen: str) -> str:
    return _checked(generation_prefix(gen) + "popular")


def item(gen: str, item_id: str) -> str:
    return _checked(generation_prefix(gen) + "item:" + _id(item_id, "item"))


def banners(gen: str) -> str:
    return _checked(generation_prefix(gen) + "banners")


def profile(person_id: str) -> str:
    return _checked(f"{PREFIX}:p:" + _id(person_id, "person"))
