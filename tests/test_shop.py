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
