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


# -- the memoised renderer gives the bytes of the plain one -----------------------------------------------------
def reference_render(ask, decisions, gen):  # type: ignore[no-untyped-def]
    """The renderer before memoisation: every card escaped and encoded on each request, the body one dumps()."""
    from html import escape

    from personalizer.render import price_text

    def items_html(c: Carousel) -> str:
        return "".join(
            f'<li class="pz-item" data-id="{escape(x.id)}" data-category="{escape(x.category)}">'
            f'<a href="{escape(safe_url(x.url))}"><img src="{escape(safe_url(x.image))}" alt="{escape(x.title)}"'
            f' loading="lazy"><span class="pz-title">{escape(x.title)}</span>'
            f'<span class="pz-price">{price_text(x.price)} {escape(x.currency)}</span></a></li>' for x in c.cards)

    if ask.format == "html":
        parts = []
        for s, d in decisions.items():
            if isinstance(d, BannerChoice):
                parts.append(banner_html(d, gen, s))
            else:
                parts.append(f'<section class="pz-recs" data-slot="{escape(d.slot)}" data-tier="{escape(d.tier)}"'
                             f' data-generation="{escape(gen)}"><ol class="pz-items">{items_html(d)}</ol></section>')
        html = "".join(parts)
        if ask.endpoint == "page":
            html = f'<div class="pz-page" data-generation="{escape(gen)}">{html}</div>'
        return html.encode(), "text/html; charset=utf-8"
    frags = {s: banner_json(d, gen, s) if isinstance(d, BannerChoice) else carousel_json(d, gen)
             for s, d in decisions.items()}
    obj = {"generation": gen, "fragments": frags} if ask.endpoint == "page" else next(iter(frags.values()))
    return dumps(obj), "application/json; charset=utf-8"


def test_memoised_fragments_are_byte_identical_for_every_shopper_and_slot(built, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every seeded customer (and a visitor), every slot, JSON and HTML, with prices the inventory overrides and a
    profile of hostile catalog strings: the same bytes as the plain renderer, with the memo cold and warm."""
    import asyncio

    from personalizer import InMemoryKV, Personalizer, codec, keys, render, service
    from tests.conftest import CONFIG, FixedClock, uid_cookie
    from tests.test_edge import overrides

    records = {**built.records, **overrides(built)}
    popular = codec.decode(records[keys.popular(built.generation)], expect="popular").data["cards"]
    inventory = codec.decode(records[keys.INVENTORY], expect="inventory")
    prices = {**inventory.data["prices"], **{c[0]: c[4] + 100 * (n + 1) for n, c in enumerate(popular[:30])}}
    records[keys.INVENTORY] = codec.encode("inventory", {**inventory.data, "prices": prices},
                                           produced_at=inventory.produced_at)
    people = sorted(k.rsplit(":", 1)[1] for k in records if k.startswith("pz1:p:"))
    item = popular[0][0]
    every = f"slots=hero,home,recent,cart,again,item&item={item}"
    asks = [("/v1/page", every), ("/v1/page", every + "&format=html"), ("/v1/recommendations", "slot=home")]
    clock = FixedClock()
    core = Personalizer(CONFIG, InMemoryKV(records), clock, lambda: "vfixed")
    rendered: list[tuple[bytes, bytes]] = []  # (memoised, plain) for every answer
    memoised_render = service._render

    def both(ask, decisions, gen, holdout=False, about=None):  # type: ignore[no-untyped-def]
        assert not holdout and about is None  # no holdout, no preview here: the plain renderer knows neither
        body, ctype = memoised_render(ask, decisions, gen, holdout, about)
        plain, plain_ctype = reference_render(ask, decisions, gen)
        rendered.append((body, plain))
        assert ctype == plain_ctype
        return body, ctype

    monkeypatch.setattr(service, "_render", both)
    render._json_memo.clear()
    render._html_memo.clear()

    async def run() -> None:
        for person in [*people, None]:
            headers = {"cookie": uid_cookie(person, issued_at=int(clock.t))} if person else {}
            for path, query in asks:
                assert (await core.handle("GET", path, query, headers)).status == 200

    asyncio.run(run())  # cards met first (memo cold) and again (warm: popular ones, every few people)
    assert len(rendered) == (len(people) + 1) * len(asks) and len({p for _, p in rendered}) > len(people)
    assert len(render._json_memo) > 100 and render._html_memo
    assert all(body == plain for body, plain in rendered)
    assert any(HOSTILE_MARK in plain for _, plain in rendered)  # the hostile profile's title (escaped)


HOSTILE_MARK = b"&lt;script&gt;alert(&quot;pz&quot;)"


def test_the_render_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MEMO_MAX cards the memo starts again: never larger, and the texts stay those of the plain renderer."""
    from personalizer import render

    monkeypatch.setattr(render, "MEMO_MAX", 3)
    render._json_memo.clear()
    render._html_memo.clear()
    cards = [Card(f"p{n}", f"T{n} <&>", f"/p/p{n}", "/i.jpg", 100 + n, "EUR", "c") for n in range(10)]
    for card in cards * 2:
        assert render.card_json_text(card) == dumps(carousel_json(Carousel("s", "t", (card,)), "g"))[
            len(b'{"slot":"s","tier":"t","generation":"g","items":['):-2].decode()
        assert render.card_html(card) in carousel_html(Carousel("s", "t", (card,)), "g")
        assert len(render._json_memo) <= 3 and len(render._html_memo) <= 3


def test_a_card_without_an_image_shows_the_placeholder_never_a_broken_image() -> None:
    """A product the shop gave no image (its catalog's image column empty): a placeholder block in HTML, an
    empty image in JSON; a card with one keeps its <img>."""
    bare = Card("p1", "Plain <tea>", "/p/p1", "", 350, "EUR", "tea")
    html = carousel_html(Carousel("home", "popular", (bare,)), "g1")
    assert '<span class="pz-noimage" aria-hidden="true"></span>' in html and "<img" not in html
    assert "Plain &lt;tea&gt;" in html
    assert carousel_json(Carousel("home", "popular", (bare,)), "g1")["items"][0]["image"] == ""
    pictured = Card("p2", "Tea", "/p/p2", "/i/p2.jpg", 350, "EUR", "tea")
    assert '<img src="/i/p2.jpg"' in carousel_html(Carousel("home", "popular", (pictured,)), "g1")
