"""Embedding on the shop's pages (core, CPython): the snippet and stylesheet, CORS, the BASE_PATH prefix."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from personalizer import InMemoryKV, Personalizer, assets
from personalizer.config import parse_config
from personalizer_adapters.batch.build import Built
from tests.conftest import CONFIG, FixedClock, uid_cookie

ROOT = Path(__file__).resolve().parent.parent
SHOP = "https://shop.example"


def core_with(built: Built, **changes: object) -> Personalizer:
    return Personalizer(dataclasses.replace(CONFIG, **changes), InMemoryKV(built.records), FixedClock(),
                        lambda: "vtestvisitor")


def ask(core: Personalizer, method: str, path: str, query: str = "", **headers: str):
    reply = asyncio.run(core.handle(method, path, query, {k.replace("_", "-"): v for k, v in headers.items()}))
    return reply.status, dict(reply.headers), reply.body


def test_assets_are_current() -> None:
    """src/personalizer/assets.py is exactly what `make assets` makes of web/ (esbuild, minified)."""
    done = subprocess.run([sys.executable, str(ROOT / "web" / "build.py"), "--check"], check=False)
    assert done.returncode == 0, "web/pz.js or web/pz.css changed: run `make assets` and commit the result"


def test_snippet_is_small_and_versioned(core: Personalizer) -> None:
    """pz.js is a few KB; linked with its current ?v= it is cacheable for a year, else for minutes; ETag 304."""
    assert len(assets.SCRIPT) < 8192 and len(gzip.compress(assets.SCRIPT)) < 3072
    status, headers, body = ask(core, "GET", "/v1/pz.js")
    assert status == 200 and body == assets.SCRIPT
    assert headers["content-type"].startswith("text/javascript")
    assert "immutable" not in headers["cache-control"] and headers["cache-control"].startswith("public")
    status, headers, _ = ask(core, "GET", "/v1/pz.js", f"v={assets.SCRIPT_VERSION}")
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    status, headers, _ = ask(core, "GET", "/v1/pz.js", "v=0ld")
    assert "immutable" not in headers["cache-control"]
    status, headers, body = ask(core, "GET", "/v1/pz.js", if_none_match=headers["etag"])
    assert status == 304 and body == b""
    status, headers, body = ask(core, "GET", "/v1/pz.css")
    assert status == 200 and body == assets.STYLE and headers["content-type"].startswith("text/css")
    assert b".pz-item" in body and b".pz-banner" in body
    assert ask(core, "POST", "/v1/pz.js")[0] == 405
    status, _, body = ask(core, "HEAD", "/v1/pz.css")
    assert status == 200 and body == b""


def test_no_cors_unless_configured(core: Personalizer) -> None:
    """Without ALLOWED_ORIGINS no answer grants another origin anything; OPTIONS is still 204, not 405."""
    status, headers, _ = ask(core, "OPTIONS", "/v1/page", origin=SHOP)
    assert status == 204 and headers["allow"] == "GET, HEAD, OPTIONS"
    assert not any(k.startswith("access-control-") for k in headers)
    _, headers, _ = ask(core, "GET", "/v1/page", "slots=home", origin=SHOP)
    assert not any(k.startswith("access-control-") for k in headers)


def test_preflight_and_answers_for_an_allowed_origin(built: Built) -> None:
    core = core_with(built, allowed_origins=frozenset({SHOP}))
    status, headers, body = ask(core, "OPTIONS", "/v1/page", origin=SHOP,
                                access_control_request_method="GET")
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == SHOP
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert headers["access-control-allow-headers"] == "content-type"
    assert "Origin" in headers["vary"]
    status, headers, _ = ask(core, "OPTIONS", "/v1/events", origin=SHOP)
    assert status == 204 and headers["access-control-allow-methods"] == "POST, OPTIONS"
    status, headers, body = ask(core, "GET", "/v1/page", "slots=hero,home", origin=SHOP, cookie=uid_cookie("c00001"))
    assert status == 200 and headers["access-control-allow-origin"] == SHOP
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["vary"] == "Cookie, Sec-GPC, Origin"
    assert json.loads(body)["fragments"]["home"]["tier"] == "user"
    status, headers, _ = ask(core, "GET", "/v1/nope", origin=SHOP)  # errors too, so the page can read them
    assert status == 404 and headers["access-control-allow-origin"] == SHOP


@pytest.mark.parametrize("origin", ["https://evil.example", "https://shop.example.evil.example", "null",
                                    "http://shop.example", "https://shop.example:8443"])
def test_other_origins_get_no_grant(built: Built, origin: str) -> None:
    """Exact origins only: no suffix match, scheme and port count, ``null`` is nobody; Vary: Origin still."""
    core = core_with(built, allowed_origins=frozenset({SHOP}))
    for method, path in (("OPTIONS", "/v1/page"), ("GET", "/v1/page"), ("OPTIONS", "/v1/events")):
        status, headers, _ = ask(core, method, path, "slots=home" if method == "GET" else "", origin=origin)
        assert status in (200, 204)
        assert not any(k.startswith("access-control-") for k in headers), (method, path, headers)
        assert "Origin" in headers["vary"]


def test_allowed_origins_config() -> None:
    config = parse_config({"ALLOWED_ORIGINS": " https://Shop.example ,http://127.0.0.1:8789,"})
    assert config.allowed_origins == frozenset({"https://shop.example", "http://127.0.0.1:8789"})
    for bad in ("https://shop.example/", "shop.example", "https://shop.example/path", "*"):
        with pytest.raises(ValueError, match="ALLOWED_ORIGINS"):
            parse_config({"ALLOWED_ORIGINS": bad})


def test_base_path_prefix(built: Built) -> None:
    """Routed under the shop's host (shop.example/pz/*): /pz/v1/page is /v1/page; the bare path still works."""
    core = core_with(built, base_path="/pz")
    cookie = uid_cookie("c00001")
    status, headers, prefixed = ask(core, "GET", "/pz/v1/page", "slots=home", cookie=cookie)
    assert status == 200 and headers["x-pz-tier"] == "home=user"
    assert ask(core, "GET", "/v1/page", "slots=home", cookie=cookie)[2] == prefixed
    assert ask(core, "GET", "/pz/v1/pz.js")[2] == assets.SCRIPT
    assert ask(core, "GET", "/pzv1/page", "slots=home")[0] == 404
    assert parse_config({"BASE_PATH": "/pz/"}).base_path == "/pz"
    with pytest.raises(ValueError, match="BASE_PATH"):
        parse_config({"BASE_PATH": "pz"})
