"""keys: one function per record, validated ids, the 512-byte key limit."""

import pytest

from personalizer import LimitError, keys


def test_keys_share_the_schema_prefix_and_generation() -> None:
    """Every shared record of a generation sits under its generation prefix."""
    prefix = keys.generation_prefix("g1")
    for key in (keys.segment("g1", "likes-ski"), keys.popular("g1"), keys.item("g1", "p1"), keys.banners("g1")):
        assert key.startswith(prefix)
    assert keys.profile("c1") == "pz1:p:c1"
    assert keys.MANIFEST == "pz1:manifest"


@pytest.mark.parametrize("bad", [
    pytest.param("", id="empty"), pytest.param("a" * 65, id="too-long"), pytest.param("a b", id="space"),
    pytest.param("a/b", id="slash"), pytest.param("é", id="non-ascii")])
def test_keys_reject_invalid_ids(bad: str) -> None:
    """An id outside 1-64 of A-Z a-z 0-9 _ . : - never becomes a key."""
    assert not keys.is_valid_id(bad)
    with pytest.raises(ValueError):
        keys.profile(bad)
    for _ in range(2):  # the shared records' keys are memoised per isolate; a refusal never is
        for build in (lambda: keys.segment("g1", bad), lambda: keys.segment(bad, "s1"), lambda: keys.popular(bad),
                      lambda: keys.banners(bad)):
            with pytest.raises(ValueError):
                build()


def test_keys_enforce_the_kv_key_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key over 512 bytes raises LimitError before anything is written."""
    monkeypatch.setattr(keys, "PREFIX", "x" * 500)
    with pytest.raises(LimitError):
        keys.profile("c" * 20)


@pytest.mark.parametrize("key,expected", [
    pytest.param(keys.profile("c:1"), ("profile", None, "c:1"), id="profile-with-colon"),
    pytest.param(keys.segment("g1", "likes-ski"), ("segment", "g1", "likes-ski"), id="segment"),
    pytest.param(keys.item("g1", "p:9"), ("item", "g1", "p:9"), id="item"),
    pytest.param(keys.popular("g1"), ("popular", "g1", None), id="popular"),
    pytest.param(keys.banners("g1"), ("banners", "g1", None), id="banners"),
    pytest.param(keys.MANIFEST, ("manifest", None, None), id="manifest"),
])
def test_parse_inverts_the_builders(key: str, expected: tuple[str, str | None, str | None]) -> None:
    """Every key the builders make parses back to its kind, generation and id."""
    assert keys.parse(key) == expected


@pytest.mark.parametrize("bad", ["", "pz2:p:c1", "pz1:p:", "pz1:p:a b", "pz1:g:g1:seg:", "pz1:g:g1:x:y",
                                 "pz1:g:g1", "pz1:g:g 1:popular"])
def test_parse_rejects_what_is_not_a_key(bad: str) -> None:
    """Anything the builders could not have made is a ValueError."""
    with pytest.raises(ValueError):
        keys.parse(bad)
