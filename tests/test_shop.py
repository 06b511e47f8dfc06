"""The demo shop (uvicorn on loopback): its login signs pz_uid, its pages embed only the public snippet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from personalizer.identity import UID, verify
from personalizer_adapters.batch.build import Built
from personalizer_adapters.shop.app import create_app
from tests.conftest import TEST_KEY
from tests.runtime.harness import serve_asgi

EDGE = "http://127.0.0.1:8787"


@pytest.fixture(scope="module")
def c(built: Built, seed_dir: Path) -> Iterator[httpx.Client]:
    app = create_app(seed_dir / "inputs" / "catalog.csv", seed_dir / "inputs" / "shoppers.csv", EDGE,
                     TEST_KEY.encode())
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        yield client


def test_sign_in_sets_a_token_the_worker_accepts(c: httpx.Client) -> None:
    r = c.get("/signin/c00001")
    assert r.status_code == 303 and r.headers["location"] == "/"
    token = r.cookies[UID]
    assert verify(UID, token, (TEST_KEY.encode(),), int(token.split(".")[2]) + 1, 3600) == "c00001"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=lax" in r.headers["set-cookie"].lower()
    assert c.get("/signin/bad id!").status_code in (400, 404)
    r = c.get("/signout")
    assert r.status_code == 303 and f'{UID}=""' in r.headers["set-cookie"]


def test_pages_use_only_the_public_snippet(c: httpx.Client) -> None:
    home = c.get("/").text
    assert f'<script src="{EDGE}/v1/pz.js" defer>' in home and f'href="{EDGE}/v1/pz.css"' in home
    assert 'data-pz-slot="hero"' in home and 'data-pz-slot="home"' in home
    product = c.get("/p/p00003").text
    assert 'data-pz-slot="item" data-pz-item="p00003"' in product and "pz.track('view'" in product
    assert 'data-pz-slot="cart"' in c.get("/cart").text
    assert '<pz-slot name="home">' in c.get("/injected").text
    assert c.get("/p/nope").status_code == 404


def test_pictures_are_drawn_by_the_shop(c: httpx.Client, built: Built) -> None:
    """Every product the seed's records show has a picture the shop serves itself (SVG, no external host);
    a product's name is escaped in its picture; an unknown one is a 404."""
    from personalizer import codec, keys
    from personalizer.records import Card

    popular = codec.decode(built.records[keys.popular(built.generation)], expect="popular").data
    images = {Card.parse(card).image for card in popular["cards"]}
    assert images and all(i.startswith("/img/p/") for i in images)
    r = c.get(sorted(images)[0])
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert r.text.startswith("<svg") and "http" not in r.text.replace("http://www.w3.org/2000/svg", "")
    assert c.get("/img/p/p99999.svg").status_code == 404
    banner = c.get("/img/banners/cart-a.svg")
    assert banner.status_code == 200 and banner.text.startswith("<svg") and banner.text != c.get(
        "/img/banners/cart-b.svg").text
    from personalizer_adapters.shop.images import product_svg

    drawn = product_svg("p1", 'Tent <script>alert("x")</script>', "tents")
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn


def test_the_cart_lists_what_was_added_and_orders_it(c: httpx.Client) -> None:
    with httpx.Client(base_url=str(c.base_url)) as shopper:
        assert 'id="empty"' in shopper.get("/cart").text
        for pid in ("p00003", "p00007", "p00003"):
            r = shopper.post("/cart/add", data={"item": pid})
            assert r.status_code == 303 and r.headers["location"] == "/cart"
        page = shopper.get("/cart").text
        assert 'data-id="p00003"' in page and 'data-id="p00007"' in page and "Cart (3)" in page
        assert '<td class="num">2</td>' in page  # p00003 twice
        assert shopper.post("/cart/add", data={"item": "nope"}).status_code == 404
        shopper.post("/cart/remove", data={"item": "p00007"})
        page = shopper.get("/cart").text
        assert 'data-id="p00007"' not in page and 'data-id="p00003"' in page
        done = shopper.post("/cart/order")
        assert "pz.track('purchase'" in done.text and '"item":"p00003","quantity":2' in done.text
        assert 'id="empty"' in shopper.get("/cart").text  # ordered: the cart is empty again


def test_a_cart_cookie_that_does_not_parse_is_an_empty_cart() -> None:
    from personalizer_adapters.shop.app import cart_cookie, read_cart

    assert read_cart("p1*2/p2*1") == {"p1": 2, "p2": 1}
    assert read_cart(cart_cookie({"p1": 2})) == {"p1": 2}
    assert read_cart("p1*0/p2*x/<b>*1/p3*100/p4") == {}
    assert read_cart(None) == {}


def test_campaign_links_land_on_a_page(c: httpx.Client) -> None:
    """Every URL the demo's campaigns link to is a page of the shop, not a 404."""
    import tomllib

    from tests.test_embed import ROOT

    campaigns = tomllib.loads((ROOT / "kv-seed" / "campaigns.toml").read_text())["campaigns"]
    urls = {v["url"] for rule in campaigns for v in rule["variants"]}
    assert len(urls) > 5
    for url in sorted(urls):
        assert c.get(url).status_code == 200, url
    assert c.get("/no-such-page").status_code == 404


def test_a_port_left_in_time_wait_is_free_and_a_listening_one_taken() -> None:
    """`make dev` right after `make dev`: the stopped servers' connections in TIME_WAIT do not block a restart
    (the probe binds as the server does); a port something listens on is reported as taken."""
    import socket
    import subprocess
    import sys

    from personalizer_adapters.cli import _port_taken

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert _port_taken("127.0.0.1", port, "SHOP_PORT")
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its side of the connection waits in TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    states = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True).stdout \
        if sys.platform.startswith("linux") else ""
    if states:
        assert "TIME-WAIT" in states  # the case under test is really there
    assert not _port_taken("127.0.0.1", port, "SHOP_PORT")
