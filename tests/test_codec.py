"""codec: v1 envelopes, strict decoding, KV limits."""

import msgpack
import pytest

from personalizer import DecodeError, LimitError, codec


def test_codec_round_trips_a_record() -> None:
    """encode then decode gives back the header and the payload."""
    raw = codec.encode("popular", {"name": "popular", "cards": []}, generation="g1", produced_at=5, valid_until=9)
    env = codec.decode(raw, expect="popular")
    assert (env.kind, env.generation, env.produced_at, env.valid_until) == ("popular", "g1", 5, 9)
    assert env.data == {"name": "popular", "cards": []}


def test_a_profile_travels_packed_and_an_unpacked_one_still_decodes() -> None:
    """A profile's payload is one JSON string inside the envelope (a handful of msgpack objects, not hundreds);
    decoding gives back the payload; a profile an older build wrote unpacked decodes the same; a packed payload
    that is not JSON, or not an object, is a DecodeError like any corrupt value."""
    payload = {"id": "c1", "segments": ["new"], "cards": [["p1", "T\u00e9 <b>", "/p/p1", "/i.jpg", 1999, "EUR", "c"]],
               "bought": ["p2"], "cart_updated_at": 0, "weight": 1.5}
    raw = codec.encode("profile", payload)
    envelope = msgpack.unpackb(raw, raw=False)
    assert list(envelope["data"]) == ["packed"] and isinstance(envelope["data"]["packed"], str)
    assert codec.decode(raw, expect="profile").data == payload
    old = _raw({"v": 1, "kind": "profile", "gen": None, "at": 0, "until": None, "data": payload})
    assert codec.decode(old, expect="profile").data == payload
    for bad in ("{not json", "[1, 2]", "[" * 100_000):
        with pytest.raises(DecodeError):
            codec.decode(_raw({"v": 1, "kind": "profile", "gen": None, "at": 0, "until": None,
                               "data": {"packed": bad}}), expect="profile")
    with pytest.raises(ValueError):  # NaN is not JSON: refused when written, never smuggled in
        codec.encode("profile", {**payload, "weight": float("nan")})



@pytest.mark.parametrize("kind,payload", [
    ("item", {"id": "p1", "card": ["p1", "T", "/p/p1", "/i.jpg", 100, "EUR", "c"], "also_bought": [],
              "complements": []}),
    ("segment", {"name": "s1", "cards": [["p1", "T", "/p/p1", "/i.jpg", 100, "EUR", "c"]], "banners": ["b1"]}),
    ("popular", {"name": "popular", "cards": [], "again": []}),
])
def test_every_card_record_travels_packed(kind: str, payload: dict[str, object]) -> None:
    """Items, segments and the popular list travel packed like profiles (hundreds of cards' objects, decoded on
    a request or a cache refresh); one an older build wrote unpacked still decodes to the same payload."""
    raw = codec.encode(kind, payload, generation="g1")
    envelope = msgpack.unpackb(raw, raw=False)
    assert list(envelope["data"]) == ["packed"] and isinstance(envelope["data"]["packed"], str)
    assert codec.decode(raw, expect=kind).data == payload
    old = _raw({"v": 1, "kind": kind, "gen": "g1", "at": 0, "until": None, "data": payload})
    assert codec.decode(old, expect=kind).data == payload
    assert codec.decode(codec.encode("manifest", {"generation": "g1"}), expect="manifest").data == {"generation": "g1"}


def _raw(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize("value", [
    pytest.param(b"\xc1\xff\x00", id="not-msgpack"),
    pytest.param(b"", id="empty"),
    pytest.param(_raw([1, 2]), id="not-a-map"),
    pytest.param(_raw({"v": 2, "kind": "popular", "gen": None, "at": 0, "until": None, "data": {}}),
                 id="wrong-schema-version"),
    pytest.param(_raw({"v": 1, "kind": "profile", "gen": None, "at": 0, "until": None, "data": {}}),
                 id="wrong-kind"),
    pytest.param(_raw({"v": 1, "kind": "popular", "gen": None, "at": 0, "until": None, "data": [1]}),
                 id="payload-not-a-map"),
    pytest.param(_raw({1: 1}), id="non-string-map-key"),
    pytest.param(_raw({"v": 1, "kind": "popular", "gen": None, "at": "x", "until": None, "data": {}}),
                 id="bad-timestamp"),
    pytest.param(_raw({"v": 1, "kind": "popular", "gen": None, "at": 0, "until": None, "data": {}})[:-3],
                 id="truncated"),
])
def test_codec_rejects_malformed_values(value: bytes) -> None:
    """Anything but a well-formed v1 record of the expected kind is a DecodeError (also a ValueError)."""
    with pytest.raises(DecodeError) as info:
        codec.decode(value, expect="popular", key="k")
    assert isinstance(info.value, ValueError) and info.value.key == "k"


def test_codec_rejects_an_expired_record() -> None:
    """A record past its valid-until is not served."""
    raw = codec.encode("popular", {}, produced_at=1, valid_until=100)
    assert codec.decode(raw, expect="popular", now=100).valid_until == 100
    with pytest.raises(DecodeError, match="expired"):
        codec.decode(raw, expect="popular", now=101)


def test_codec_bounds_what_it_decodes() -> None:
    """A value over the decode bound (the codec's, or a tighter one per kind) is refused before msgpack sees it."""
    value = codec.encode("popular", {"name": "x" * 20})
    with pytest.raises(DecodeError, match="bound of 10"):
        codec.decode(value, expect="popular", max_bytes=10)
    assert codec.decode(value, expect="popular", max_bytes=len(value)).data["name"] == "x" * 20
    with pytest.raises(DecodeError, match="bound"):
        codec.decode(b"\x00" * (codec.MAX_DECODE_BYTES + 1), expect="popular")


def test_codec_enforces_kv_value_and_metadata_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values over 25 MiB and metadata over 1024 bytes raise LimitError."""
    monkeypatch.setattr(codec, "MAX_VALUE_BYTES", 100)
    with pytest.raises(LimitError):
        codec.encode("popular", {"name": "x" * 200})
    codec.check_metadata({"a": "b"})
    with pytest.raises(LimitError):
        codec.check_metadata({"a": "b" * 1100})


def test_card_is_a_strict_seven_element_array() -> None:
    """Cards travel as [id, title, url, image, price, currency, category]; anything else is a DecodeError."""
    from personalizer.records import Card

    card = Card("p1", "T", "/p/1", "/i.jpg", 1999, "EUR", "ski")
    assert Card.parse(card.payload()) == card
    for bad in ({"id": "p1"}, ["p1", "T"], ["p1", "T", "/u", "/i", "19.99", "EUR", "ski"],
                ["p1", "T", "/u", "/i", True, "EUR", "ski"], ["p1", 5, "/u", "/i", 1, "EUR", "ski"]):
        with pytest.raises(DecodeError):
            Card.parse(bad)
