"""identity: signed tokens with rotation and a maximum age; consent."""

import pytest

from personalizer import Config
from personalizer.identity import UID, VID, identify, sign, verify

K1, K2 = b"k1-0123456789abcdef", b"k2-0123456789abcdef"
NOW = 1_800_000_000


def test_verify_accepts_a_token_signed_by_any_configured_key() -> None:
    """The first key signs, every key verifies: a rotated-out key still verifies until removed."""
    assert verify(UID, sign(UID, "c1", NOW, K1), (K1, K2), NOW, 60) == "c1"
    assert verify(UID, sign(UID, "c1", NOW, K2), (K1, K2), NOW, 60) == "c1"
    assert verify(UID, sign(UID, "c1", NOW, K2), (K1,), NOW, 60) is None


@pytest.mark.parametrize("token", [
    pytest.param("c1", id="unsigned"),
    pytest.param(sign(UID, "c1", NOW, b"attacker-key-0123456"), id="forged-key"),
    pytest.param(sign(UID, "c1", NOW, K1).replace("c1", "c2"), id="id-swapped"),
    pytest.param(sign(UID, "c1", NOW - 61, K1), id="expired"),
    pytest.param(sign(UID, "c1", NOW + 3600, K1), id="from-the-future"),
    pytest.param(sign(VID, "c1", NOW, K1), id="visitor-token-as-user"),
    pytest.param("v1.c1.x.abc", id="malformed-time"),
    pytest.param("v1." + "a" * 300, id="oversized"),
    pytest.param("", id="empty"),
])
def test_verify_rejects_bad_tokens(token: str) -> None:
    """Unsigned, forged, tampered, expired or malformed tokens verify to None (anonymous)."""
    assert verify(UID, token, (K1,), NOW, 60) is None


def test_identify_mints_a_visitor_only_with_consent() -> None:
    """A new visitor gets a minted id when consent is granted; none when denied or GPC is set."""
    cfg = Config(signing_keys=(K1,))
    v = identify({}, False, cfg, NOW, lambda: "vnew")
    assert v.minted and v.person == "vnew"
    assert identify({"pz_consent": "denied"}, False, cfg, NOW, lambda: "vnew").person is None
    assert identify({"pz_consent": "granted"}, True, cfg, NOW, lambda: "vnew").person is None  # Sec-GPC wins
    denied_default = Config(signing_keys=(K1,), consent_default="denied")
    assert not identify({}, False, denied_default, NOW, lambda: "vnew").consented
    assert identify({"pz_consent": "granted"}, False, denied_default, NOW, lambda: "vnew").consented


def test_identify_mints_only_the_id_it_gives_out() -> None:
    """The minter runs for a new visitor with consent, once; never for a known person, a denial or GPC."""
    cfg = Config(signing_keys=(K1,))
    calls: list[str] = []

    def mint() -> str:
        calls.append(f"v{len(calls)}")
        return calls[-1]

    known = {"pz_uid": sign(UID, "c1", NOW, K1)}
    assert identify(known, False, cfg, NOW, mint).person == "c1"
    assert identify({"pz_vid": sign(VID, "v1x", NOW, K1)}, False, cfg, NOW, mint).person == "v1x"
    assert identify({"pz_consent": "denied"}, False, cfg, NOW, mint).person is None
    assert identify({}, True, cfg, NOW, mint).person is None
    assert identify(None, False, cfg, NOW, mint).person is None
    assert calls == []
    assert identify({}, False, cfg, NOW, mint).person == "v0" and calls == ["v0"]


def test_identify_prefers_the_signed_in_customer() -> None:
    """A valid pz_uid is the person; an invalid one falls back to the visitor id, never to the claimed id."""
    cfg = Config(signing_keys=(K1,))
    vid = sign(VID, "v1x", NOW, K1)
    assert identify({"pz_uid": sign(UID, "c1", NOW, K1), "pz_vid": vid}, False, cfg, NOW, lambda: "n").person == "c1"
    forged = sign(UID, "c1", NOW, b"attacker-key-0123456")
    v = identify({"pz_uid": forged, "pz_vid": vid}, False, cfg, NOW, lambda: "n")
    assert v.person == "v1x" and v.user_id is None and not v.minted
