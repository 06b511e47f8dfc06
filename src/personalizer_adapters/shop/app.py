"""The demo shop: home (hero, for you), product pages (also bought), cart (complements), an injected page.

Its own login sets ``pz_uid`` (signed with the worker's key, as a shop's login would), and every page loads
``pz.js`` and ``pz.css`` from the worker (``edge``). Served on another port than the worker it is another
origin (CORS), and the same site (cookies are shared across ports of 127.0.0.1).
"""

from __future__ import annotations

import csv
import html
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from personalizer.identity import UID, sign
from personalizer.keys import is_valid_id


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    category: str
    price: str
    currency: str


def load_catalog(path: Path) -> dict[str, Product]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return {r["id"]: Product(r["id"], r["title"], r["category"], r["price"], r.get("currency") or "EUR")
                for r in csv.DictReader(f)}


def load_shoppers(path: Path, n: int) -> list[str]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8-sig") as f:
        return [r["id"] for _, r in zip(range(n), csv.DictReader(f), strict=False)]


STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1d1d1b;background:#fffdf9}
header{display:flex;gap:16px;align-items:center;padding:12px 24px;background:#1f3d2b;color:#fff;flex-wrap:wrap}
header a{color:#fff}header strong{font-size:1.2rem;margin-right:auto}
main{max-width:1100px;margin:0 auto;padding:16px 24px}
.who{font-size:.85rem;opacity:.9}.consent button{margin-left:4px}
.pz-item img{display:none}.pz-banner img{display:none}
.pz-item a{border:1px solid #e4ded3;border-radius:8px;padding:8px;min-height:96px;background:#fff}
.product{border:1px solid #e4ded3;border-radius:12px;padding:16px;background:#fff}
"""


def page(title: str, body: str, *, edge: str, who: str | None, people: list[str], status: int = 200) -> HTMLResponse:
    e = html.escape(edge, quote=True)
    signins = " ".join(f'<a href="/signin/{html.escape(p)}">{html.escape(p)}</a>' for p in people)
    text = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)} · Demo shop</title>
<link rel="stylesheet" href="{e}/v1/pz.css"><style>{STYLE}</style>
<script src="{e}/v1/pz.js" defer></script></head><body>
<header><strong><a href="/">Demo shop</a></strong><a href="/cart">Cart</a><a href="/injected">Injected page</a>
<span class="who" id="who">{"signed in as " + html.escape(who) if who else "not signed in"}</span>
<span class="who">sign in as: {signins} · <a href="/signout">sign out</a></span>
<span class="consent">consent: <button id="consent-granted" onclick="pz.consent('granted')">allow</button>
<button id="consent-denied" onclick="pz.consent('denied')">deny</button></span></header>
<main>{body}</main></body></html>"""
    return HTMLResponse(text, status_code=status, headers={"cache-control": "no-store"})


def create_app(catalog: Path, shoppers: Path, edge: str, signing_key: bytes) -> Starlette:
    products = load_catalog(catalog)
    people = load_shoppers(shoppers, 4) + ["c05001"]
    edge = edge.rstrip("/")

    def who(request: Request) -> str | None:
        token = request.cookies.get(UID, "")
        return token.split(".")[1] if token.count(".") >= 2 else None

    def render(request: Request, title: str, body: str, status: int = 200) -> HTMLResponse:
        return page(title, body, edge=edge, who=who(request), people=people, status=status)

    async def home(request: Request) -> Response:
        return render(request, "Home", """
<div data-pz-slot="hero"><p>Welcome to the demo shop.</p></div>
<h2>For you</h2><div data-pz-slot="home"><p>Our best sellers are on their way.</p></div>
<h2>Recently viewed</h2><div data-pz-slot="recent"></div>""")

    async def product(request: Request) -> Response:
        pid = request.path_params["pid"]
        p = products.get(pid) if is_valid_id(pid) else None
        if p is None:
            return render(request, "Not found", "<p>No such product.</p>", 404)
        q = html.escape(p.id, quote=True)
        return render(request, p.title, f"""
<div class="product" data-product="{q}"><h1>{html.escape(p.title)}</h1>
<p>{html.escape(p.category)} · <b>{html.escape(p.price)} {html.escape(p.currency)}</b></p>
<button id="add" onclick="pz.track('add_to_cart', {{item: '{q}', quantity: 1}}); this.textContent='Added'">
Add to cart</button></div>
<h2>Bought together</h2><div data-pz-slot="item" data-pz-item="{q}"></div>
<script>addEventListener('DOMContentLoaded', () => pz.track('view', {{item: '{q}'}}));</script>""")

    async def cart(request: Request) -> Response:
        return render(request, "Cart", """<h1>Your cart</h1>
<div data-pz-slot="hero"></div><h2>Goes well with your cart</h2><div data-pz-slot="cart"></div>""")

    async def injected(request: Request) -> Response:
        # Filled by the worker when this page is served through it (PAGES_ORIGIN); as is, when not.
        return render(request, "Injected", """<h1>Filled at the edge</h1>
<pz-slot name="hero"><p class="unfilled">Open this page through the worker to see it filled.</p></pz-slot>
<h2>For you</h2><pz-slot name="home"><p class="unfilled">No JavaScript needed.</p></pz-slot>""")

    async def signin(request: Request) -> Response:
        person = request.path_params["person"]
        if not is_valid_id(person):
            return Response("bad id", status_code=400)
        r = RedirectResponse("/", status_code=303)
        r.set_cookie(UID, sign(UID, person, int(time.time()), signing_key), max_age=30 * 86400, path="/",
                     httponly=True, samesite="lax")
        return r

    async def signout(request: Request) -> Response:
        r = RedirectResponse("/", status_code=303)
        for name in (UID, "pz_s"):
            r.delete_cookie(name, path="/")
        return r

    return Starlette(routes=[
        Route("/", home), Route("/p/{pid}", product), Route("/cart", cart), Route("/injected", injected),
        Route("/signin/{person}", signin), Route("/signout", signout)])
