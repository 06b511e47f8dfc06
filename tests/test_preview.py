"""Signed preview links: the token (signed, expiring, at most a day), the edge's forced campaign and trace, and
`personalizer preview-link`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from personalizer import Personalizer, preview
from personalizer.preview import Preview
from tests.conftest import OLD_KEY, TEST_KEY, uid_cookie
from tests.runtime import probe
from tests.runtime.harness import ROOT, PyodideProbe, pyodide_probe
from tests.test_service import run

NOW = 1_800_000_000
KEY = TEST_KEY.encode()


def token(campaign: str = "restock", *, key: bytes = KEY, issued: int = NOW, minutes: int = 60,
          **fields: object) -> str:
    return preview.sign(Preview(campaign, expires=issued + minutes * 60, **fields), issued, key)  # type: ignore[arg-type]


def signed(payload: object, key: bytes = KEY) -> str:
    """A token of any payload, signed as the real ones are (what a leaked key could make)."""
    text = base64.urlsafe_b64encode(json.dumps(payload).encode() if not isinstance(payload, bytes) else payload)
    body = text.rstrip(b"=").decode()
    mac = hmac.digest(key, f"pz_preview|{body}".encode(), hashlib.sha256)
    return f"p1.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


# -- the token ------------------------------------------------------------------------------------------------
def test_a_token_carries_what_the_link_forces() -> None:
    t = token("cart-reminder", variant="cart-b", person="c00001", country="DE", region="DE-BY", device="mobile",
              timezone="Europe/Berlin", at=NOW + 99, utm=(("utm_campaign", "xmas"),))
    shown = preview.verify(t, (KEY,), NOW + 10)
    assert shown == Preview("cart-reminder", "cart-b", "c00001", "DE", "DE-BY", "mobile", "Europe/Berlin", NOW + 99,
                            (("utm_campaign", "xmas"),), NOW + 3600)


def test_forged_tampered_expired_or_too_long_lived_tokens_are_no_preview() -> None:
    good = token()
    assert preview.verify(good, (KEY,), NOW) is not None
    assert preview.verify(good, (OLD_KEY.encode(), KEY), NOW) is not None  # rotation: every key verifies
    assert preview.verify(token(key=b"someone-elses-key-0123456789"), (KEY,), NOW) is None
    head, payload, sig = good.split(".")
    other = base64.urlsafe_b64encode(json.dumps({"c": "generic", "iat": NOW, "exp": NOW + 60}).encode()).decode()
    assert preview.verify(f"{head}.{other.rstrip('=')}.{sig}", (KEY,), NOW) is None  # another campaign, same sig
    assert preview.verify(good, (KEY,), NOW + 3600) is None  # expired at its minute
    assert preview.verify(good, (KEY,), NOW + 3599) is not None
    assert preview.verify(token(issued=NOW + 3600), (KEY,), NOW) is None  # from the future
    assert preview.verify(signed({"c": "x", "iat": NOW, "exp": NOW + 86_401}), (KEY,), NOW) is None
    assert preview.verify(signed({"c": "x", "iat": NOW, "exp": NOW + 86_400}), (KEY,), NOW) is not None
    assert preview.verify(good, (), NOW) is None  # identity disabled: no previews either
    with pytest.raises(ValueError, match="1 day"):
        token(minutes=24 * 60 + 1)


HOSTILE = [
    "", "p1", "p1..", "p2.e30.x", "p1.e30", "p1.!!!.x", "p1." + "A" * 3000 + ".x", "v1.c00001.1800000000.sig",
    signed({"c": "x"}), signed([1, 2]), signed("text"), signed(b"\xff\xfe"), signed(b"[" * 5000),
    signed({"c": "x", "iat": NOW, "exp": NOW + 60, "utm": {"utm_campaign": [[[[["deep"]]]]]}}),
    signed({"c": "x", "iat": True, "exp": NOW + 60}), signed({"c": "x", "iat": NOW, "exp": float(NOW + 60)}),
    signed({"c": "../../x", "iat": NOW, "exp": NOW + 60}), signed({"c": "x", "iat": NOW, "exp": NOW + 60,
                                                                  "country": "de", "device": "tablet"}),
    signed({"c": "x", "iat": NOW, "exp": NOW + 60, "utm": {"utm_term": "a"}}),
    signed({"c": "x", "iat": NOW, "exp": NOW + 60, "as": "<script>"}),
]


@pytest.fixture(scope="module")
def pyodide() -> Iterator[PyodideProbe]:
    with pyodide_probe() as p:
        yield p


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_tokens_are_no_preview_in_cpython_and_in_pyodide(pyodide: PyodideProbe, bad: str) -> None:
    assert probe.preview_link(bad, TEST_KEY, NOW) is None
    assert pyodide.call("preview_link", bad, TEST_KEY, NOW) is None


def test_pyodide_reads_a_good_token_as_cpython_does(pyodide: PyodideProbe) -> None:
    t = token("restock", variant="restock-b", utm=(("utm_source", "mail"),), at=NOW)
    here = probe.preview_link(t, TEST_KEY, NOW)
    assert here is not None and pyodide.call("preview_link", t, TEST_KEY, NOW) == json.loads(json.dumps(here))


# -- the edge's answer ----------------------------------------------------------------------------------------
def page(core: Personalizer, link: str | None, cookie: str | None = None,
         query: str = "slots=hero,home&limit=4") -> tuple[int, dict[str, str], dict]:
    return run(core, "/v1/page", query + (f"&preview={link}" if link else ""), cookie)


def live_token(campaign: str, **fields: object) -> str:
    now = int(time.time())
    return preview.sign(Preview(campaign, expires=now + 600, **fields), now, KEY)  # type: ignore[arg-type]


def test_a_preview_shows_its_campaign_whoever_asks_and_stores_nothing(core: Personalizer) -> None:
    """A loyalty campaign no new visitor could match: shown with the variant named, never stored, no cookie,
    the trace of every campaign tried; the carousels stay the visitor's own."""
    _, plain_headers, plain = page(core, None)
    status, headers, body = page(core, live_token("loyalty-gold", variant="loyal-gold-b"))
    assert status == 200 and headers["x-pz-preview"] == "loyalty-gold" and headers["cache-control"] == "no-store"
    assert "set-cookie" not in headers and "set-cookie" in plain_headers  # a plain first visit gets its id
    hero = body["fragments"]["hero"]["banner"]
    assert hero["id"] == "loyalty-gold" and hero["variant"] == "loyal-gold-b"
    assert plain["fragments"]["hero"]["banner"]["id"] != "loyalty-gold"
    about = body["preview"]
    assert about["campaign"] == "loyalty-gold" and about["variant"] == "loyal-gold-b"
    tried = {t["campaign"]: t for t in about["trace"]}
    assert tried["loyalty-gold"]["matched"] is False and "trigger" in tried["loyalty-gold"]["why"]
    winner = plain["fragments"]["hero"]["banner"]["id"]  # what the visitor would get without the link
    assert tried[winner]["matched"] is True and tried[winner]["why"].startswith("wins")
    assert [t["campaign"] for t in about["trace"] if t["why"].startswith("wins")] == [winner]
    assert body["fragments"]["home"] == plain["fragments"]["home"]


def test_a_preview_as_a_shopper_uses_their_profile_and_the_links_facts(core: Personalizer) -> None:
    """--as names whose record is read (their cart fills {item}); the link's country and moment are the ones
    the campaigns are tried at."""
    status, headers, body = page(core, live_token("cart-reminder", person="c00001", country="DE"))
    assert status == 200 and headers["x-pz-preview"] == "cart-reminder"
    _, _, own = page(core, None, uid_cookie("c00001"))
    assert body["fragments"]["home"] == own["fragments"]["home"]  # their own list
    assert body["fragments"]["hero"]["banner"]["id"] == "cart-reminder"
    assert "{item}" not in body["fragments"]["hero"]["banner"]["title"]
    html = asyncio_html(core, live_token("cart-reminder"))
    assert 'data-pz-preview="' in html and "&quot;campaign&quot;:&quot;cart-reminder&quot;" in html


def asyncio_html(core: Personalizer, link: str) -> str:
    import asyncio

    reply = asyncio.run(core.handle("GET", "/v1/page", f"slots=hero&format=html&preview={link}", {}))
    return reply.body.decode()


def test_forged_expired_or_unknown_campaign_links(core: Personalizer) -> None:
    _, _, plain = page(core, None)
    now = int(time.time())
    expired = preview.sign(Preview("loyalty-gold", expires=now - 1), now - 120, KEY)
    forged = preview.sign(Preview("loyalty-gold", expires=now + 60), now, b"not-the-shops-key-0123456789")
    for bad in (expired, forged, "p1.garbage.sig"):
        status, headers, body = page(core, bad)
        assert status == 200 and "x-pz-preview" not in headers and "preview" not in body
        assert body == plain  # answered as if the link had no token
    status, headers, body = page(core, live_token("no-such-campaign"))
    assert status == 200 and headers["x-pz-preview"] == "no-such-campaign"
    assert "not in the live campaigns" in body["preview"]["note"]
    assert body["fragments"]["hero"] == plain["fragments"]["hero"]  # what wins instead


# -- the command ------------------------------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", "preview-link", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PZ_SIGNING_KEYS": TEST_KEY})


def test_preview_link_prints_a_signed_link_that_expires() -> None:
    made = cli("--campaign", "cart-reminder", "--variant", "cart-b", "--as", "c00001", "--country", "de",
               "--region", "by", "--at", "2026-12-24T18:30:00+01:00", "--utm-campaign", "Xmas", "--minutes", "30",
               "--url", "https://shop.example/p/42?ref=1", "--campaigns", "kv-seed/campaigns.toml")
    assert made.returncode == 0, made.stderr
    url = urlsplit(made.stdout.strip())
    assert (url.scheme, url.netloc, url.path) == ("https", "shop.example", "/p/42")
    query = parse_qs(url.query)
    assert query["ref"] == ["1"]
    shown = preview.verify(query["pz_preview"][0], (KEY,), int(time.time()))
    assert shown is not None and shown.campaign == "cart-reminder" and shown.variant == "cart-b"
    assert (shown.person, shown.country, shown.region, shown.utm) == ("c00001", "DE", "DE-BY", (("utm_campaign",
                                                                                                   "xmas"),))
    assert shown.at == 1_798_133_400 and 29 * 60 < shown.expires - time.time() <= 30 * 60
    assert "not counted" in made.stderr


@pytest.mark.parametrize("args,says", [
    (("--minutes", "1441"), "1 to 1440 minutes"),
    (("--minutes", "0"), "1 to 1440 minutes"),
    (("--at", "tomorrow"), "RFC 3339"),
    (("--url", "javascript:alert(1)"), "http(s) URL"),
    (("--campaigns", "kv-seed/campaigns.toml", "--variant", "cart-z"), "no variant 'cart-z'"),
    (("--country", "Germany"), "country"),
])
def test_preview_link_refuses_what_it_cannot_sign(args: tuple[str, ...], says: str) -> None:
    made = cli("--campaign", "cart-reminder", *args)
    assert made.returncode == 2 and says in made.stderr and not made.stdout


def test_preview_link_checks_the_campaign_against_the_file() -> None:
    made = cli("--campaign", "no-such", "--campaigns", "kv-seed/campaigns.toml")
    assert made.returncode == 2 and "has no campaign 'no-such'" in made.stderr
