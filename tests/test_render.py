"""render: JSON shapes of the contract, HTML with every catalog string escaped, URL allow-list."""

import json

import pytest

from personalizer.banners import BannerChoice
from personalizer.ladder import Carousel
from personalizer.records import BannerRule, Card, Variant
from personalizer.render import banner_html, banner_json, carousel_html, carousel_json, dumps, safe_url

EVIL = Card('p<1>', '<script>alert("x")</script> & co', 'javascript:alert(1)', '" onerror="alert(1)', 1999,
            "E<UR", "c'at")


def test_carousel_html_escapes_every_catalog_string() -> None:
    """No markup from the catalog survives: tags, quotes and javascript: URLs are neutralised."""
    html = carousel_html(Carousel("home", "user", (EVIL,)), "g1")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="#"' in html and "javascript:" not in html
    assert '" onerror="' not in html
    assert "E&lt;UR" in html and "c&#x27;at" in html


def test_banner_html_escapes_filled_placeholders() -> None:
    """A product title substituted into banner copy is escaped too."""
    v = Variant("v", 1, "Still want the {item}?", "b", "c", "/cart", "/i.jpg")
    choice = BannerChoice("user", BannerRule("r", "cart_reminder", 1, "", (v,)), v, (("{item}", EVIL.title),))
    html = banner_html(choice, "g1")
    assert "<script>" not in html and "Still want the &lt;script&gt;" in html


def test_json_shapes_follow_the_contract() -> None:
    """Field names of the v1 contract; price as a decimal string; JSON inert when sniffed as HTML."""
    obj = carousel_json(Carousel("home", "segment", (EVIL,)), "g1")
    assert set(obj) == {"slot", "tier", "generation", "items"}
    assert set(obj["items"][0]) == {"id", "title", "url", "image", "price", "currency", "category"}
    assert obj["items"][0]["price"] == "19.99" and obj["items"][0]["url"] == "#"
    raw = dumps(obj)
    assert b"<" not in raw and json.loads(raw) == obj
    v = Variant("v", 1, "t", "b", "c", "/u", "/i")
    b = banner_json(BannerChoice("popular", BannerRule("r", "generic", 0, "", (v,)), v), "g1")
    assert set(b["banner"]) == {"id", "title", "body", "cta", "url", "image", "variant"}


def test_safe_url_allows_only_http_and_site_relative() -> None:
    """https, http and /path pass; protocol-relative, javascript: and data: do not."""
    assert [safe_url(u) for u in ("https://a/b", "http://a", "/p/1", "//evil", "javascript:x", "data:x")] == [
        "https://a/b", "http://a", "/p/1", "#", "#", "#"]


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)",
    "javascript&colon;alert(1)", "data:text/html,<b>", "vbscript:x", "//evil.example/x", "/\\evil.example/x",
    "\\\\evil.example", "/\t/evil.example", "/\n/evil.example", " /x", "\x00/x", "/%09/evil.example",
    "/%5Cevil.example", "/%5cevil.example", "https:/evil.example", "https://", "http:evil.example",
    "&#47;&#47;evil.example", "%2F%2Fevil.example", "", "x" * 3000, "/x\x7f",
])
def test_safe_url_refuses_known_bypasses(url: str) -> None:
    """Schemes, protocol-relative tricks, control characters and backslashes (raw or encoded) become #."""
    assert safe_url(url) == "#"


@pytest.mark.parametrize("url", ["https://shop.example/p/1?x=1#top", "HTTP://shop.example", "/p/p00001",
                                 "/c/dairy-eggs?sort=price", "https://img.example/a%20b.jpg"])
def test_safe_url_keeps_shop_urls(url: str) -> None:
    """Absolute http(s) URLs with a host and single-slash paths pass unchanged."""
    assert safe_url(url) == url
