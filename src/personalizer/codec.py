"""The one module that owns msgpack: v1 envelopes, strict bounded decoding and the KV size limits.

Every value is one msgpack map ``{"v": 1, "kind", "gen", "at", "until", "data"}``. Decoding is strict
(``raw=False``, ``strict_map_key=True``, a bounded buffer, see msgpack's README *Security*) and turns every
failure into ``DecodeError``, so a corrupt value can only ever mean "go to the next tier".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack

from . import jsontext
from .errors import DecodeError, Erased, LimitError

SCHEMA_VERSION = 1
KINDS = frozenset({"manifest", "segment", "popular", "item", "banners", "profile", "inventory", "erased", "default"})
# What `personalizer erase` (and every later push) leaves at an erased person's keys: no data, only the mark, so
# the edge knows to serve them as nobody (their session and visitor cookies cleared, their beacons not kept).
ERASED = "erased"

MAX_VALUE_BYTES = 25 * 1024 * 1024
MAX_METADATA_BYTES = 1024
# Far above any real record, far below the 128 MB isolate: a bomb in KV cannot exhaust memory.
MAX_DECODE_BYTES = 8 * 1024 * 1024
# One person's record: a few dozen cards and a bounded history; the build trims or refuses anything larger.
MAX_PROFILE_BYTES = 64 * 1024
# Kinds whose payload travels packed: ``data`` is ``{"packed": "<compact JSON of the payload>"}``: the records
# made of cards. A profile is read on every request of its person and never cached, an item record on most
# requests that name an item (there are as many as products; few stay in the isolate's cache), a segment or the
# popular list on every refresh of the cache; each is hundreds of small objects: msgpack's pure-Python decoder
# (the stand-in where its C extension is missing) spends ~3 us on each, the C json module a fraction.
# Decoding gives back the same payload either way; a record written unpacked (by an older build) still decodes.
PACKED_KINDS = frozenset({"profile", "item", "segment", "popular", "default"})


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded v1 value: its header and its payload (plain dicts/lists/str/int)."""

    kind: str
    generation: str | None
    produced_at: int
    valid_until: int | None
    data: dict[str, Any]


def encode(kind: str, data: dict[str, Any], *, generation: str | None = None, produced_at: int = 0,
           valid_until: int | None = None) -> bytes:
    """Encode one record as a v1 envelope; raises ``LimitError`` past the KV value limit."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}")
    if kind in PACKED_KINDS:
        data = {"packed": json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)}
    packed: bytes = msgpack.packb(
        {"v": SCHEMA_VERSION, "kind": kind, "gen": generation, "at": produced_at, "until": valid_until,
         "data": data},
        use_bin_type=True,
    )
    check_value_size(packed)
    return packed


def erased_mark(at: int = 0) -> bytes:
    """The value left at an erased person's profile keys (``at``: when, epoch seconds)."""
    return encode(ERASED, {}, produced_at=at)


def is_erased_mark(value: bytes) -> bool:
    """Whether ``value`` is an erasure's mark, told without decoding a whole profile (the mark is tiny)."""
    if len(value) > 64:
        return False
    try:
        obj = msgpack.unpackb(value, raw=False, strict_map_key=True)
    except Exception:
        return False
    return isinstance(obj, dict) and obj.get("v") == SCHEMA_VERSION and obj.get("kind") == ERASED


def check_value_size(value: bytes, key: str | None = None) -> None:
    if len(value) > MAX_VALUE_BYTES:
        raise LimitError(f"value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}", key=key, size=len(value))


def check_metadata(metadata: dict[str, Any] | None, key: str | None = None) -> None:
    """Workers KV metadata is JSON of at most 1024 bytes; checked before anything is written."""
    if metadata is None:
        return
    import json

    size = len(json.dumps(metadata, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise LimitError(f"metadata of {size} bytes exceeds {MAX_METADATA_BYTES}", key=key, size=size)


def decode(value: bytes, *, expect: str, key: str | None = None, now: int | None = None,
           max_bytes: int = MAX_DECODE_BYTES) -> Envelope:
    """Decode a v1 envelope of kind ``expect``; anything else raises ``DecodeError``.

    ``now`` (epoch seconds), when given, rejects a record whose ``until`` has passed. A value over
    ``max_bytes`` is refused before any decoding (decoding is what costs: seconds for megabytes).
    """
    if len(value) > max_bytes:
        raise DecodeError(f"value of {len(value)} bytes over the decode bound of {max_bytes}", key=key)
    try:
        # unpackb bounds every str/bin/array/map by len(value), itself bounded above.
        obj = msgpack.unpackb(value, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types; all mean "corrupt"
        raise DecodeError(f"not msgpack: {type(exc).__name__}", key=key) from None
    if not isinstance(obj, dict):
        raise DecodeError("not a map", key=key)
    if obj.get("v") != SCHEMA_VERSION:
        raise DecodeError(f"schema version {obj.get('v')!r}, expected {SCHEMA_VERSION}", key=key)
    if obj.get("kind") == ERASED and expect == "profile":
        raise Erased(key)
    if obj.get("kind") != expect:
        raise DecodeError(f"kind {obj.get('kind')!r}, expected {expect!r}", key=key)
    data, gen, at, until = obj.get("data"), obj.get("gen"), obj.get("at"), obj.get("until")
    if expect in PACKED_KINDS and isinstance(data, dict) and len(data) == 1 and isinstance(data.get("packed"), str):
        try:
            data = jsontext.loads(data["packed"])  # nesting measured first: a deep record is corrupt, not fatal
        except Exception as exc:  # ValueError (TooDeep among them), RecursionError: all mean "corrupt"
            raise DecodeError(f"packed payload is not JSON: {type(exc).__name__}", key=key) from None
    if not isinstance(data, dict):
        raise DecodeError("payload is not a map", key=key)
    if gen is not None and not isinstance(gen, str):
        raise DecodeError("generation is not a string", key=key)
    if not isinstance(at, int) or (until is not None and not isinstance(until, int)):
        raise DecodeError("bad timestamps", key=key)
    if until is not None and now is not None and until < now:
        raise DecodeError("record expired", key=key)
    return Envelope(kind=expect, generation=gen, produced_at=at, valid_until=until, data=data)
