"""JSON and HTML fragments. Every catalog string is escaped; only http(s) and site-relative URLs pass."""

from __future__ import annotations

import json
import re
from typing import Any

from .banners import BannerChoice
from .ladder import Carousel
from .records import Card


def escape(s: str) -> str:
    """``html.escape(s)``, the same five replacements: importing ``html`` loads its 2,000-entry entity table,
    ~30 ms of a Pyodide cold start for a function that needs none of it (test_fuzz holds them equal)."""
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#x27;"))


# Whitespace, control characters and backslashes, raw or percent-encoded: one C-level scan per URL.
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]|%(?:[01][0-9a-fA-F]|7[fF]|5[cC])")


def safe_url(url: str) -> str:
    """Allow-listed, never only escaped: ``javascript:`` survives HTML escaping, and browsers read ``/\\x``,
    ``/<TAB>/x`` or `` //x`` as ``//x``, another site. Passes: ``http:``/``https:`` URLs with a host, and
    paths that start with exactly one ``/``; with no whitespace, control character or backslash anywhere
    (raw or percent-encoded). Everything else is ``#``."""
    if not url or len(url) > 2048 or _UNSAFE.search(url):
        return "#"
    if url[:8].lower().startswith(("https://", "http://")):
        host = url.split("//", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        return url if host else "#"
    if url.startswith("/") and not url.startswith("//"):
        return url
    return "#"


def price_text(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


# Each card's rendered JSON object and HTML item, per isolate: the same products are shown to everyone
# (popular, segments, neighbours) and to the same people again, so a card is escaped, URL-checked and encoded
# once, not once per request. Keyed by the card's value (a price the inventory overrides is another card);
# emptied when full, so it stays bounded whatever the catalog: at most MEMO_MAX cards' texts (a JSON object of
# ~300 bytes and an HTML item of ~500), about 4 MB beside the 8 MB isolate cache, of the isolate's 128 MB.
# Only catalog data is held (a product as shown), never who was shown it.
MEMO_MAX = 5_000
_json_memo: dict[Card, str] = {}
_html_memo: dict[Card, str] = {}
_string_memo: dict[str, str] = {}


def _remember(memo: dict[Any, str], key: Any, text: str) -> str:
    """Put ``text`` in ``memo`` (emptied first when full) and return it: the miss path of the memos above."""
    if len(memo) >= MEMO_MAX:
        memo.clear()
    memo[key] = text
    return text


def card_json(card: Card) -> dict[str, Any]:
    return {"id": card.id, "title": card.title, "url": safe_url(card.url),
            "image": safe_url(card.image) if card.image else "",  # "": the shop gave no image
            "price": price_text(card.price), "currency": card.currency, "category": card.category}


def carousel_json(c: Carousel, generation: str) -> dict[str, Any]:
    return {"slot": c.slot, "tier": c.tier, "generation": generation, "items": [card_json(x) for x in c.cards]}


def card_json_text(card: Card) -> str:
    """``dumps_text(card_json(card))``, memoised."""
    text = _json_memo.get(card)
    return text if text is not None else _remember(_json_memo, card, dumps_text(card_json(card)))


def string_text(value: str) -> str:
    """``dumps_text(value)`` of a string; memoised (slots, tiers, generations, and the banners' texts: a rule's
    strings, filled with a product's title, a loyalty tier or a category)."""
    text = _string_memo.get(value)
    return text if text is not None else _remember(_string_memo, value, dumps_text(value))


def carousel_json_text(c: Carousel, generation: str) -> str:
    """``dumps_text(carousel_json(c, generation))``, from the cards' memoised texts: compact JSON of an object is
    its members' texts joined, so the bytes are the same."""
    return (f'{{"slot":{string_text(c.slot)},"tier":{string_text(c.tier)},"generation":{string_text(generation)},'
            f'"items":[{",".join([card_json_text(x) for x in c.cards])}]}}')


def _filled(text: str, fill: tuple[tuple[str, str], ...]) -> str:
    for placeholder, value in fill:
        text = text.replace(placeholder, value)
    return text


def banner_json(b: BannerChoice, generation: str, slot: str = "hero") -> dict[str, Any]:
    if b.tier == "none":  # no banner at all (the compiled fallback's): the page keeps its own
        return {"slot": slot, "tier": b.tier, "generation": generation, "banner": None}
    v = b.variant
    return {"slot": slot, "tier": b.tier, "generation": generation, "banner": {
        "id": b.rule.id, "title": _filled(v.title, b.fill), "body": _filled(v.body, b.fill), "cta": v.cta,
        "url": safe_url(v.url), "image": safe_url(v.image), "variant": v.id}}


def banner_json_text(b: BannerChoice, generation: str, slot: str = "hero") -> str:
    """``dumps_text(banner_json(b, generation, slot))``, joined from its strings' memoised texts (the same bytes,
    as for carousels): half the time of encoding the object."""
    if b.tier == "none":
        return (f'{{"slot":{string_text(slot)},"tier":"none","generation":{string_text(generation)},'
                f'"banner":null}}')
    v = b.variant
    return (f'{{"slot":{string_text(slot)},"tier":{string_text(b.tier)},"generation":{string_text(generation)},'
            f'"banner":{{"id":{string_text(b.rule.id)},"title":{string_text(_filled(v.title, b.fill))},'
            f'"body":{string_text(_filled(v.body, b.fill))},"cta":{string_text(v.cta)},'
            f'"url":{string_text(safe_url(v.url))},"image":{string_text(safe_url(v.image))},'
            f'"variant":{string_text(v.id)}}}}}')


def image_html(x: Card) -> str:
    """The card's image; a product the shop gave none (the catalog's image column empty) has a placeholder
    block of the same size (``.pz-noimage``), never a broken image."""
    if not x.image:
        return '<span class="pz-noimage" aria-hidden="true"></span>'
    return f'<img src="{escape(safe_url(x.image))}" alt="{escape(x.title)}" loading="lazy">'


def card_html(x: Card) -> str:
    """One carousel item; memoised."""
    html = _html_memo.get(x)
    return html if html is not None else _remember(_html_memo, x, (
        f'<li class="pz-item" data-id="{escape(x.id)}" data-category="{escape(x.category)}">'
        f'<a href="{escape(safe_url(x.url))}">{image_html(x)}<span class="pz-title">{escape(x.title)}</span>'
        f'<span class="pz-price">{price_text(x.price)} {escape(x.currency)}</span></a></li>'))


def carousel_html(c: Carousel, generation: str) -> str:
    """The carousel's section; nothing for a carousel with no cards (the page keeps its placeholder's content)."""
    if not c.cards:
        return ""
    items = "".join([card_html(x) for x in c.cards])
    return (f'<section class="pz-recs" data-slot="{escape(c.slot)}" data-tier="{escape(c.tier)}"'
            f' data-generation="{escape(generation)}"><ol class="pz-items">{items}</ol></section>')


def banner_html(b: BannerChoice, generation: str, slot: str = "hero") -> str:
    """The banner's section; nothing when there is no banner (the page keeps its placeholder's content)."""
    if b.tier == "none":
        return ""
    d = banner_json(b, generation, slot)["banner"]
    return (f'<section class="pz-banner" data-slot="{escape(slot)}" data-tier="{escape(b.tier)}"'
            f' data-generation="{escape(generation)}" data-banner="{escape(d["id"])}"'
            f' data-variant="{escape(d["variant"])}"><a href="{escape(d["url"])}">'
            f'<img src="{escape(d["image"])}" alt=""><h2 class="pz-banner-title">{escape(d["title"])}</h2>'
            f'<p class="pz-banner-body">{escape(d["body"])}</p>'
            f'<span class="pz-cta">{escape(d["cta"])}</span></a></section>')


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; ``<``, ``>`` and ``&`` escaped so a JSON body is inert if sniffed as HTML."""
    return dumps_text(obj).encode()


def dumps_text(obj: Any) -> str:
    """``dumps`` before encoding. The escapes are per character, so texts of parts join into the whole's."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
