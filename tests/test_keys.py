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


def test_keys_enforce_the_kv_key_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key over 512 bytes raises LimitError before anything is written."""
    monkeypatch.setattr(keys, "PREFIX", "x" * 500)
    with pytest.raises(LimitError):
        keys.profile("c" * 20)
