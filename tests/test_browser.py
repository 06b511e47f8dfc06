"""In a real browser: the demo shop embeds the worker with pz.js (cross-origin, CORS) and edge-side injection.

Headless Chromium from the distribution (/usr/bin/chromium, or $CHROMIUM), driven by Playwright, against the
offline edge runtime (Pyodide + SDK + Miniflare KV and Queues), the real origin (event log) and the demo shop
(`personalizer shop`), each on its own loopback port. The shop is another origin than the worker and the same
site (cookies are shared across ports of 127.0.0.1), as a shop with the worker on a subdomain would be.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from personalizer_adapters.batch.build import Built
from personalizer_adapters.batch.seed import bulk_json
from personalizer_adapters.origin.app import create_app as origin_app
from personalizer_adapters.shop.app import create_app as shop_app
from personalizer_adapters.store.eventlog import EventLog
from tests.conftest import TEST_KEY
from tests.runtime.harness import edge_runtime, serve_asgi
from tests.test_edge_events import free_port
from tests.test_events import BROWSER

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.edge
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SECRET = "browser-test-secret-0123456789"
# Flags for this machine's closed network (no background connections, no QUIC), as root in a container.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
HELD_HEAD = b"<!doctype html><html><head><title>Held page</title></head><body><h1>Head first</h1>"


class HeldPage:
    """``/held``: the head at once, the rest (with placeholders) only once ``release`` is set."""

    def __init__(self, shop: Any) -> None:
        self.shop, self.release = shop, threading.Event()

    async def __call__(self, scope, receive, send):  # noqa: ANN001 - a plain ASGI app
        if scope["type"] != "http" or scope["path"] != "/held":
            return await self.shop(scope, receive, send)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        await send({"type": "http.response.body", "body": HELD_HEAD, "more_body": True})
        await asyncio.to_thread(self.release.wait, 60)
        await send({"type": "http.response.body",
                    "body": b'<pz-slot name="home"><p id="unfilled">later</p></pz-slot></body></html>'})


@pytest.fixture(scope="module")
def stack(built: Built, seed_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium; or set CHROMIUM")
    tmp = tmp_path_factory.mktemp("browser")
    data = Path(shutil.copytree(seed_dir / "origin", tmp / "origin"))
    (tmp / "kv.json").write_text(bulk_json(built.records))
    shop_port, other_port = free_port(), free_port()
    shop_url = f"http://127.0.0.1:{shop_port}"
    with serve_asgi(origin_app(data, SECRET)) as origin_url:
        # A 1 % holdout: HELD_OUT is in it; the customers the other tests sign in as are not.
        variables = {"PZ_SIGNING_KEYS": TEST_KEY, "ORIGIN_URL": origin_url, "ORIGIN_SECRET": SECRET,
                     "ALLOWED_ORIGINS": shop_url, "PAGES_ORIGIN": shop_url, "HOLDOUT_PERCENT": "1"}
        with edge_runtime(tmp / "state", seed=tmp / "kv.json", variables=variables,
                          flags={"batch-timeout": "0.2"}) as (edge_url, logs):
            shop = shop_app(seed_dir / "inputs" / "catalog.csv", seed_dir / "inputs" / "shoppers.csv", edge_url,
                            TEST_KEY.encode())
            held = HeldPage(shop)
            with serve_asgi(held, shop_port), serve_asgi(shop, other_port) as other_url, \
                    playwright_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                yield {"edge": edge_url, "shop": shop_url, "other": other_url, "browser": browser, "held": held,
                       "log": EventLog(data / "events.sqlite"), "logs": logs}
                browser.close()


@pytest.fixture()
def context(stack: dict[str, Any]) -> Iterator[Any]:
    # A desktop Chrome's user agent: headless Chromium's own says "HeadlessChrome", which counts as a robot.
    ctx = stack["browser"].new_context(user_agent=BROWSER, viewport={"width": 1200, "height": 900})
    yield ctx
    ctx.close()


def beacons(page: Any) -> list[str]:
    """The URL of every request the page sends to /v1/events. (Chromium does not hand a driver the body of a
    sendBeacon request: what a beacon carried is checked where it lands, in the origin's event log.)"""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/v1/events") and r.method == "POST" else None)
    return sent


def stored(log: EventLog, person: str, until: Any) -> list[dict[str, Any]]:
    """The person's stored events once ``until(events)`` holds (the queue's batch wait, then the worker's
    consumer posts to the origin's /v1/ingest), or what there is after a minute."""
    deadline = time.monotonic() + 60
    while True:
        events = log.events(person, "customer")
        if until(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def test_signed_in_shopper_sees_their_own_carousel(stack: dict[str, Any], context: Any) -> None:
    page = context.new_page()
    page.goto(stack["shop"] + "/signin/c00001")  # the shop's own login sets pz_uid, then shows home
    page.wait_for_selector('[data-pz-slot="home"][data-pz-filled] section[data-tier="user"]')
    assert page.locator('[data-pz-slot="hero"] section.pz-banner').count() == 1
    assert page.locator('[data-pz-slot="home"] .pz-item').count() >= 4
    assert "Our best sellers" not in page.content()  # the placeholder's own content was replaced


def test_new_visitor_gets_the_popular_tier(stack: dict[str, Any], context: Any) -> None:
    page = context.new_page()
    page.goto(stack["shop"] + "/")
    page.wait_for_selector('[data-pz-slot="home"][data-pz-filled] section[data-tier="popular"]')
    assert any(c["name"] == "pz_vid" for c in context.cookies(stack["edge"]))


def test_origin_not_allowed_keeps_the_placeholders(stack: dict[str, Any], context: Any) -> None:
    """The same page on an origin not in ALLOWED_ORIGINS: the browser refuses the answer (no CORS grant)."""
    page = context.new_page()
    page.goto(stack["other"] + "/")
    page.wait_for_selector("html[data-pz]", state="attached")
    assert page.get_attribute("html", "data-pz") == "failed"
    assert page.locator("[data-pz-filled]").count() == 0
    assert "Our best sellers are on their way." in page.content()


def test_click_sends_a_beacon_that_reaches_the_event_log(stack: dict[str, Any], context: Any) -> None:
    page = context.new_page()
    page.goto(stack["shop"] + "/signin/c00002")
    first = page.locator('[data-pz-slot="home"][data-pz-filled] .pz-item').first
    first.wait_for()
    item = first.get_attribute("data-id")
    with page.expect_request(lambda r: r.url.endswith("/v1/events")):
        first.locator("a").click()  # a beacon, sent while the browser leaves for the product page
    page.wait_for_url(f"**/p/{item}")
    events = stored(stack["log"], "c00002", lambda ev: {"click", "view"} <= {e["type"] for e in ev})
    by_type = {e["type"]: e for e in events}
    assert by_type["click"]["slot"] == "home" and by_type["click"]["item"] == item
    assert by_type["click"]["position"] == 0 and not by_type["click"]["robot"]
    assert by_type["view"]["item"] == item  # the product page's pz.track("view", ...)


def test_visible_fragments_send_impressions(stack: dict[str, Any], context: Any) -> None:
    """Half visible for a second: the hero (its banner and variant) and the carousel (its items, in order)."""
    page = context.new_page()
    page.goto(stack["shop"] + "/signin/c00003")
    home = page.locator('[data-pz-slot="home"][data-pz-filled] .pz-item')
    home.first.wait_for()
    shown = [home.nth(i).get_attribute("data-id") for i in range(home.count())]
    banner = page.locator('[data-pz-slot="hero"] section.pz-banner')
    events = stored(stack["log"], "c00003", lambda ev: {e.get("slot") for e in ev if e["type"] == "impression"}
                    >= {"hero", "home"})
    seen = {e["slot"]: e for e in events if e["type"] == "impression"}
    assert seen["hero"]["banner"] == banner.get_attribute("data-banner")
    assert seen["hero"]["variant"] == banner.get_attribute("data-variant")
    assert seen["home"]["items"] == shown and seen["home"]["tier"] == "user"


HELD_OUT = "c00075"


def test_the_holdouts_impressions_are_marked(stack: dict[str, Any], context: Any) -> None:
    """A customer in the global holdout: the page is filled, not personally, and the impressions pz.js reports
    carry holdout, so personalization's lift can be measured against them."""
    from personalizer.identity import in_holdout

    assert in_holdout(HELD_OUT, 1) and not any(in_holdout(f"c0000{n}", 1) for n in range(1, 6))
    page = context.new_page()
    page.goto(stack["shop"] + f"/signin/{HELD_OUT}")
    page.wait_for_selector('[data-pz-slot="home"][data-pz-filled][data-pz-holdout] section[data-tier="popular"]')
    events = stored(stack["log"], HELD_OUT, lambda ev: {e.get("slot") for e in ev if e["type"] == "impression"}
                    >= {"hero", "home"})
    shown = [e for e in events if e["type"] == "impression"]
    assert shown and all(e.get("holdout") is True and e["tier"] in ("popular", "default") for e in shown)


@pytest.mark.parametrize("how", ["cookie", "gpc", "cookie-not-exactly-granted"])
def test_consent_denied_sends_nothing_and_sets_no_cookie(stack: dict[str, Any], how: str) -> None:
    """Denied before the first page (a consent manager's cookie, or the browser's Global Privacy Control):
    pages are filled, not personally, no beacon leaves the page and the worker sets no cookie."""
    gpc = how == "gpc"
    ctx = stack["browser"].new_context(user_agent=BROWSER, extra_http_headers={"Sec-GPC": "1"} if gpc else None)
    if gpc:
        ctx.add_init_script("Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})")
    else:
        value = "denied" if how == "cookie" else "DENIED"  # any value but "granted" is a refusal
        ctx.add_cookies([{"name": "pz_consent", "value": value, "url": stack["shop"]}])
    page = ctx.new_page()
    sent = beacons(page)
    page.goto(stack["shop"] + "/signin/c00004")
    page.wait_for_selector('[data-pz-slot="home"][data-pz-filled] section[data-tier="popular"]')
    page.goto(stack["shop"] + "/p/p00003")  # a product page: it tracks a view, unless consent is denied
    page.wait_for_selector('[data-pz-slot="item"][data-pz-filled]')
    assert page.evaluate("() => pz.track('add_to_cart', {item: 'p00003', quantity: 1})") is False
    page.locator('[data-pz-slot="item"] .pz-item a').first.click()
    page.wait_for_load_state()
    page.evaluate("() => pz.flush()")
    page.wait_for_timeout(1500)  # longer than the impression delay: none may leave either
    assert sent == []
    assert not any(c["name"] in ("pz_vid", "pz_s") for c in ctx.cookies(stack["edge"]))
    assert stack["log"].events("c00004", "customer") == []
    ctx.close()


def test_a_preview_link_shows_its_campaign_and_bar_and_counts_nothing(stack: dict[str, Any], context: Any) -> None:
    """`personalizer preview-link`'s URL on the demo shop: the campaign it names in the hero, a bar saying what
    is previewed with the trace of every campaign tried, and not one beacon (nothing is counted)."""
    from personalizer import preview

    now = int(time.time())
    link = preview.sign(preview.Preview("loyalty-gold", "loyal-gold-b", "c00005", expires=now + 600), now,
                        TEST_KEY.encode())
    page = context.new_page()
    sent = beacons(page)
    page.goto(stack["shop"] + f"/?pz_preview={link}")
    page.wait_for_selector('[data-pz-slot="hero"][data-pz-filled] section[data-banner="loyalty-gold"]'
                           '[data-variant="loyal-gold-b"]')
    bar = page.locator(".pz-preview-bar")
    assert "Previewing campaign loyalty-gold, variant loyal-gold-b" in bar.inner_text()
    bar.locator("summary").click()
    assert bar.locator("li").count() >= 10 and "loyalty-gold (priority" in bar.inner_text()
    assert page.evaluate("() => pz.track('view', {item: 'p00003'})") is False
    page.wait_for_timeout(1500)  # past the impression delay
    page.evaluate("() => pz.flush()")
    assert sent == []
    assert not any(c["name"] in ("pz_vid", "pz_s") for c in context.cookies(stack["edge"]))


def test_consent_buttons_set_the_cookie(stack: dict[str, Any], context: Any) -> None:
    """pz.consent("denied") stops beacons at once; pz.consent("granted") lets them go again."""
    page = context.new_page()
    page.goto(stack["shop"] + "/p/p00005")
    page.wait_for_selector('[data-pz-slot="item"][data-pz-filled]')
    page.click("#consent-denied")
    assert "pz_consent=denied" in page.evaluate("() => document.cookie")
    assert page.evaluate("() => pz.track('view', {item: 'p00005'})") is False
    page.click("#consent-granted")
    assert page.evaluate("() => pz.track('view', {item: 'p00005'})") is True
    with page.expect_request(lambda r: r.url.endswith("/v1/events")):
        page.evaluate("() => pz.flush()")


def test_injected_page_needs_no_javascript(stack: dict[str, Any]) -> None:
    ctx = stack["browser"].new_context(user_agent=BROWSER, java_script_enabled=False)
    page = ctx.new_page()
    page.goto(stack["edge"] + "/injected")  # the shop's page, through the worker
    assert page.locator('[data-pz-slot="home"][data-pz-filled] section.pz-recs .pz-item').count() >= 4
    assert page.locator(".unfilled").count() == 0
    ctx.close()


def test_a_newsletter_link_gets_its_campaign_with_the_snippet_and_injected(stack: dict[str, Any],
                                                                          context: Any) -> None:
    """The demo's UTM-targeted campaign: pz.js passes the page's utm_* on, injection reads the page's URL; both
    show it for the newsletter's link, neither without it."""
    letter = "?utm_campaign=Winter-Letter&utm_medium=email&utm_source=weekly"
    page = context.new_page()
    for where, hero in ((stack["shop"] + "/", '[data-pz-slot="hero"][data-pz-filled] section.pz-banner'),
                        (stack["edge"] + "/injected", '[data-pz-slot="hero"][data-pz-filled] section.pz-banner')):
        page.goto(where + letter)
        assert page.locator(hero).get_attribute("data-banner") == "newsletter-winter", where
        page.goto(where + "?utm_campaign=winter-letter&utm_medium=social")
        assert page.locator(hero).get_attribute("data-banner") != "newsletter-winter", where


def test_injected_page_head_arrives_before_its_fragments(stack: dict[str, Any], context: Any) -> None:
    """The browser has parsed the page's head while the shop still holds the part with the placeholder."""
    held: HeldPage = stack["held"]
    held.release.clear()
    page = context.new_page()
    page.goto(stack["edge"] + "/held", wait_until="commit")
    page.wait_for_function("document.title === 'Held page'")
    assert not held.release.is_set() and page.locator("[data-pz-filled]").count() == 0
    held.release.set()
    page.wait_for_selector('[data-pz-slot="home"][data-pz-filled] .pz-item')
    assert page.locator("#unfilled").count() == 0


# Boxes of every piece of text on a page (HTML elements with text of their own, and matplotlib's SVG text, drawn
# as paths in <g id="text_N">), with each pair that overlaps by more than a pixel and is not one inside the other.
OVERLAPS = """() => {
  const boxes = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = el.namespaceURI === 'http://www.w3.org/2000/svg'
      ? /^text_/.test(el.id || '')
      : [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) boxes.push([el, r]);
  }
  const bad = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const [a, ra] = boxes[i], [b, rb] = boxes[j];
    if (a.contains(b) || b.contains(a)) continue;
    const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
    const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
    const name = e => e.id || e.textContent.trim().slice(0, 40);
    if (w > 1 && h > 1) bad.push([name(a), name(b)]);
  }
  return {texts: boxes.length, bad};
}"""
MOBILE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


def test_report_page_reads_well_on_a_desktop_and_a_phone(stack: dict[str, Any], seed_dir: Path,
                                                         tmp_path: Path) -> None:
    """`personalizer report --html` on the seed's simulated experiments: a verdict card per experiment, in
    plain words; no text over other text (titles, ticks, labels, cells); nothing wider than a phone's screen."""
    from tests.test_report import cli

    out = cli("report", "--data", str(seed_dir / "origin"), "--html", str(tmp_path / "r.html"))
    assert out.returncode == 0, out.stderr
    for options in ({"viewport": {"width": 1280, "height": 900}}, MOBILE):
        ctx = stack["browser"].new_context(**options)
        page = ctx.new_page()
        page.goto((tmp_path / "r.html").as_uri())
        cards = page.locator("section.card")
        assert cards.count() == 2
        assert "winner" in page.locator("section.card", has_text="cart-reminder").inner_text().lower()
        assert page.locator(".verdict").count() >= 2
        found = page.evaluate(OVERLAPS)
        assert found["texts"] > 50 and found["bad"] == [], found["bad"][:5]
        width = options["viewport"]["width"]
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width, options
        ctx.close()


def visible_images(page: Any) -> list[dict[str, Any]]:
    """Each image at least partly on screen, once each has loaded or failed: its source and whether it loaded.
    (Lazy images start loading when they come near the screen, after the page's own load event.)"""
    shown = """[...document.images].filter(i => {
        const r = i.getBoundingClientRect();
        return r.width > 0 && r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth;
      })"""
    page.wait_for_function(f"() => {shown}.every(i => i.complete)")
    return page.evaluate(f"() => {shown}.map(i => ({{src: i.getAttribute('src'), loaded: i.naturalWidth > 0}}))")


def test_the_shops_pictures_load(stack: dict[str, Any], context: Any) -> None:
    page = context.new_page()
    page.goto(stack["shop"] + "/signin/c00001")
    page.wait_for_selector('[data-pz-slot="home"][data-pz-filled] .pz-item img')
    shown = visible_images(page)
    assert len(shown) >= 5 and all(i["loaded"] for i in shown), shown
    assert all(i["src"].startswith("/img/") for i in shown)  # the shop's own, no other host
    assert any(i["src"].startswith("/img/banners/") for i in shown)
    page.goto(stack["shop"] + "/p/p00005")
    assert all(i["loaded"] for i in visible_images(page))


def add_to_cart(page: Any, shop: str, *products: str) -> None:
    """Each product's "Add to cart" on its page, which lands on the cart."""
    for pid in products:
        page.goto(shop + f"/p/{pid}")
        page.click("#add")
        page.wait_for_url("**/cart")


def test_the_cart_page_lists_the_cart_and_an_order_is_a_purchase(stack: dict[str, Any], context: Any) -> None:
    """Add to cart on two product pages: the cart lists both (with their pictures), the beacons reach the event
    log, and placing the order sends the purchase with its lines."""
    page = context.new_page()
    page.goto(stack["shop"] + "/signin/c00003")
    add_to_cart(page, stack["shop"], "p00011", "p00012")
    rows = page.locator("table.cart tr[data-id]")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.id)")) == ["p00011", "p00012"]
    assert page.locator(".cartlink").inner_text() == "Cart (2)"
    assert all(i["loaded"] for i in visible_images(page))
    page.wait_for_selector('[data-pz-slot="cart"][data-pz-filled] .pz-item')  # goes well with the cart
    page.click("#order")
    page.wait_for_selector("#number")
    order = page.locator("#number").inner_text()
    events = stored(stack["log"], "c00003", lambda es: any(e.get("order") == order for e in es))
    added = {e["item"] for e in events if e["type"] == "add_to_cart"}
    assert {"p00011", "p00012"} <= added
    bought = [e for e in events if e["type"] == "purchase" and e.get("order") == order]
    assert bought and sorted(line["item"] for line in bought[0]["items"]) == ["p00011", "p00012"]
    page.goto(stack["shop"] + "/cart")
    assert page.locator("#empty").count() == 1


def test_carousels_scroll_with_buttons_on_a_desktop(stack: dict[str, Any], context: Any) -> None:
    page = context.new_page()
    page.goto(stack["shop"] + "/")
    page.wait_for_selector('[data-pz-slot="home"][data-pz-filled] .pz-next')
    home = page.locator('[data-pz-slot="home"]')
    items = home.locator(".pz-items")
    assert items.evaluate("l => l.scrollLeft") == 0 and home.locator(".pz-prev").is_disabled()
    home.locator(".pz-next").click()
    page.wait_for_function("""() => document.querySelector('[data-pz-slot="home"] .pz-items').scrollLeft > 100""")
    page.wait_for_function("""() => !document.querySelector('[data-pz-slot="home"] .pz-prev').disabled""")
    home.locator(".pz-prev").click()
    page.wait_for_function("""() => document.querySelector('[data-pz-slot="home"] .pz-items').scrollLeft === 0""")


def test_on_a_phone_the_header_is_compact_and_carousels_swipe(stack: dict[str, Any]) -> None:
    ctx = stack["browser"].new_context(user_agent=BROWSER, **MOBILE)
    page = ctx.new_page()
    page.goto(stack["shop"] + "/signin/c00001")
    page.wait_for_selector('[data-pz-slot="home"][data-pz-filled] .pz-item')
    assert page.locator("header").bounding_box()["height"] <= 100
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert not page.locator(".pz-nav").first.is_visible()  # a touch screen swipes
    items = page.locator('[data-pz-slot="home"] .pz-items')
    assert items.evaluate("l => getComputedStyle(l).overflowX") == "auto"
    assert items.evaluate("l => l.scrollWidth > l.clientWidth")
    page.locator("details.demo summary").click()  # the demo's controls are one tap away
    assert page.locator("#consent-granted").is_visible()
    ctx.close()


def test_carousel_headings_fit_the_tier_that_answered(stack: dict[str, Any], context: Any) -> None:
    """A new visitor's home is best sellers and has no "recently viewed"; a customer's are theirs."""
    page = context.new_page()
    page.goto(stack["shop"] + "/")
    page.wait_for_selector('[data-pz-slot="home"][data-pz-filled] section[data-tier="popular"]')
    assert page.locator('[data-pz-slot="home"] .pz-heading').inner_text() == "Best sellers"
    assert not page.locator('[data-pz-slot="recent"]').is_visible()
    assert page.get_by_text("Recently viewed").count() == 0
    page.goto(stack["shop"] + "/signin/c00001")
    page.wait_for_selector('[data-pz-slot="recent"][data-pz-filled] section[data-tier="user"]')
    assert page.locator('[data-pz-slot="home"] .pz-heading').inner_text() == "Picked for you"
    assert page.locator('[data-pz-slot="recent"] .pz-heading').inner_text() == "Recently viewed"


def test_demo_screenshots(stack: dict[str, Any], context: Any, seed_dir: Path, tmp_path: Path) -> None:
    """The README's pictures: a signed-in shopper's home on a desktop and on a phone, their cart, and the report.
    PZ_SCREENSHOTS=docs keeps them there."""
    from tests.test_report import cli

    out = Path(os.environ.get("PZ_SCREENSHOTS") or tmp_path)
    page = context.new_page()
    page.goto(stack["shop"] + "/signin/c00001")
    page.wait_for_selector('[data-pz-slot="recent"][data-pz-filled] .pz-item')
    visible_images(page)
    page.screenshot(path=str(out / "demo.png"))
    add_to_cart(page, stack["shop"], "p00021", "p00045")
    page.wait_for_selector('[data-pz-slot="cart"][data-pz-filled] .pz-item')
    visible_images(page)
    page.screenshot(path=str(out / "demo-cart.png"))
    for pid in ("p00021", "p00045"):  # the shopper's cart as it was, for the tests that follow
        page.click(f'tr[data-id="{pid}"] button')
        page.wait_for_url("**/cart")
    phone = stack["browser"].new_context(user_agent=BROWSER, **MOBILE)
    small = phone.new_page()
    small.goto(stack["shop"] + "/signin/c00001")
    small.wait_for_selector('[data-pz-slot="home"][data-pz-filled] .pz-item')
    visible_images(small)
    small.screenshot(path=str(out / "demo-phone.png"))
    phone.close()
    assert cli("report", "--data", str(seed_dir / "origin"), "--html", str(tmp_path / "r.html")).returncode == 0
    page.set_viewport_size({"width": 1100, "height": 1000})
    page.goto((tmp_path / "r.html").as_uri())
    page.screenshot(path=str(out / "report.png"))
    for name in ("demo.png", "demo-cart.png", "demo-phone.png", "report.png"):
        assert (out / name).stat().st_size > 10_000, name
