"""render: JSON shapes of the contract, HTML with every catalog string escaped, URL allow-list."""

import json

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
