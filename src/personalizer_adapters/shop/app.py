"""The demo shop: home (hero, for you), categories, product pages (also bought), a cart (complements) that lists
what was added and can be ordered, "buy it again", an injected page, and the campaigns' landing pages.

Its own login sets ``pz_uid`` (signed with the worker's key, as a shop's login would), and every page loads
``pz.js`` and ``pz.css`` from the worker (``edge``). Served on another port than the worker it is another
origin (CORS), and the same site (cookies are shared across ports of 127.0.0.1). The cart is the shop's own
(a ``shop_cart`` cookie); the worker learns of it only from the beacons the pages send (``pz.track``). The
product and banner pictures are drawn by the shop itself (``images``): no external host.
"""

from __future__ import annotations

import csv
import html
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from personalizer.identity import UID, sign
from personalizer.keys import ID_RE, is_valid_id
from personalizer.render import dumps_text, safe_url

from .images import banner_svg, product_svg


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    category: str
    price: str
    currency: str
    image: str = ""


def load_catalog(path: Path) -> dict[str, Product]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return {r["id"]: Product(r["id"], r["title"], r["category"], r["price"], r.get("currency") or "EUR",
                                 r.get("image") or "")
                for r in csv.DictReader(f)}


def load_shoppers(path: Path, n: int) -> list[str]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8-sig") as f:
        return [r["id"] for _, r in zip(range(n), csv.DictReader(f), strict=False)]


CART = "shop_cart"
MAX_LINES, MAX_QUANTITY = 50, 99


def read_cart(raw: str | None) -> dict[str, int]:
    """The ``shop_cart`` cookie, ``p00001*2/p00042*1``: product -> quantity. What does not parse is dropped
    (a cookie is the browser's to change), never an error."""
    cart: dict[str, int] = {}
    for part in (raw or "").split("/")[:MAX_LINES]:
        pid, _, qty = part.partition("*")
        if ID_RE.fullmatch(pid) and qty.isdigit() and 0 < int(qty) <= MAX_QUANTITY:
            cart[pid] = int(qty)
    return cart


def cart_cookie(cart: dict[str, int]) -> str:
    return "/".join(f"{pid}*{qty}" for pid, qty in list(cart.items())[:MAX_LINES])


STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1d1d1b;background:#fffdf9}
header{display:flex;gap:8px 20px;align-items:center;padding:10px 24px;background:#1f3d2b;color:#fff;flex-wrap:wrap}
header a{color:#fff}.brand{font-size:1.2rem;font-weight:700;margin-right:auto;text-decoration:none}
.cartlink{font-weight:600}.demo{font-size:.85rem;opacity:.92}.demo summary{cursor:pointer}
.demo div{display:inline-flex;gap:4px 12px;flex-wrap:wrap;align-items:center}
main{max-width:1100px;margin:0 auto;padding:16px 24px}
.pz-item a{border:1px solid #e4ded3;border-radius:8px;padding:8px;background:#fff;height:100%;box-sizing:border-box}
.pz-banner a{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.2fr);gap:0 24px;align-items:center}
.pz-banner img{grid-column:2;grid-row:1/4;max-height:240px;height:100%}.pz-banner .pz-cta{justify-self:start}
.pz-heading,h2{font-size:1.35rem;margin:24px 0 8px}
.product{display:grid;grid-template-columns:minmax(0,320px) 1fr;gap:24px;border:1px solid #e4ded3;border-radius:12px;
  padding:16px;background:#fff}.product img{width:100%;border-radius:8px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:12px;list-style:none;padding:0}
.grid a{display:flex;flex-direction:column;color:inherit;text-decoration:none;border:1px solid #e4ded3;
  border-radius:8px;padding:8px;background:#fff}.grid img{width:100%;aspect-ratio:1;border-radius:6px}
table.cart{width:100%;border-collapse:collapse}table.cart td,table.cart th{padding:8px;border-bottom:1px solid #e4ded3;
  text-align:left}table.cart img{width:56px;height:56px;border-radius:6px}td.num,th.num{text-align:right}
button.primary{padding:10px 20px;border-radius:999px;border:0;background:#1f3d2b;color:#fff;font-weight:600;
  cursor:pointer}
@media (max-width:640px){
  header{padding:8px 12px}main{padding:8px 12px}.brand{font-size:1.05rem}
  .demo{flex-basis:100%;order:3}
  .pz-banner a{display:block;padding:16px}.pz-banner img{max-height:120px}
  .product{grid-template-columns:1fr}.product img{max-width:240px}
  .pz-banner-title{font-size:1.25rem}
}
"""
# Closed on a phone: the demo's sign-in links and consent buttons are not the shop, and would fill the screen.
FOLD = ("<script>if(matchMedia('(max-width:640px)').matches)"
        "document.querySelector('details.demo').removeAttribute('open')</script>")


def page(title: str, body: str, *, edge: str, who: str | None, people: list[str], in_cart: int = 0,
         status: int = 200) -> HTMLResponse:
    e = html.escape(edge, quote=True)
    signins = " ".join(f'<a href="/signin/{html.escape(p)}">{html.escape(p)}</a>' for p in people)
    text = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)} · Demo shop</title>
<link rel="stylesheet" href="{e}/v1/pz.css"><style>{STYLE}</style>
<script src="{e}/v1/pz.js" defer></script></head><body>
<header><a class="brand" href="/">Demo shop</a><a class="cartlink" href="/cart">Cart ({in_cart})</a>
<details class="demo" open><summary id="who">{"signed in as " + html.escape(who) if who else "not signed in"}</summary>
<div><span>sign in as: {signins} · <a href="/signout">sign out</a></span><a href="/injected">injected page</a>
<span class="consent">consent: <button id="consent-granted" onclick="pz.consent('granted')">allow</button>
<button id="consent-denied" onclick="pz.consent('denied')">deny</button></span></div></details>{FOLD}</header>
<main>{body}</main></body></html>"""
    return HTMLResponse(text, status_code=status, headers={"cache-control": "no-store"})


def amount(p: Product) -> Decimal:
    """The product's price as a number; 0 for a price the demo cannot read (a catalog is the shop's)."""
    try:
        return Decimal(p.price)
    except InvalidOperation:
        return Decimal(0)


def create_app(catalog: Path, shoppers: Path, edge: str, signing_key: bytes) -> Starlette:
    products = load_catalog(catalog)
    categories: dict[str, list[Product]] = {}
    for p in products.values():
        categories.setdefault(p.category, []).append(p)
    people = load_shoppers(shoppers, 4) + ["c05001"]
    edge = edge.rstrip("/")

    def who(request: Request) -> str | None:
        token = request.cookies.get(UID, "")
        return token.split(".")[1] if token.count(".") >= 2 else None

    def cart_of(request: Request) -> dict[str, int]:
        return {pid: q for pid, q in read_cart(request.cookies.get(CART)).items() if pid in products}

    def render(request: Request, title: str, body: str, status: int = 200) -> HTMLResponse:
        return page(title, body, edge=edge, who=who(request), people=people, status=status,
                    in_cart=sum(cart_of(request).values()))

    def picture(p: Product) -> str:
        """The catalog's image where it has one, else the shop's drawing of the product."""
        src = safe_url(p.image)  # the fragments' allow-list; of what it lets through, only paths and https
        src = src if src.startswith(("/", "https://")) else f"/img/p/{p.id}.svg"
        return f'<img src="{html.escape(src, quote=True)}" alt="{html.escape(p.title, quote=True)}">'

    def price(p: Product) -> str:
        return f"{html.escape(p.price)} {html.escape(p.currency)}"

    def tiles(items: list[Product]) -> str:
        return '<ul class="grid">' + "".join(
            f'<li><a href="/p/{html.escape(p.id)}">{picture(p)}<span>{html.escape(p.title)}</span>'
            f"<b>{price(p)}</b></a></li>" for p in items) + "</ul>"

    async def home(request: Request) -> Response:
        return render(request, "Home", """
<div data-pz-slot="hero"><p>Welcome to the demo shop.</p></div>
<div data-pz-slot="home" data-pz-title-user="Picked for you" data-pz-title-segment="Popular with shoppers like you"
 data-pz-title="Best sellers"><h2>Best sellers</h2><p>Our best sellers are on their way.</p></div>
<div data-pz-slot="recent" data-pz-title-user="Recently viewed"></div>""")

    async def category(request: Request) -> Response:
        name = request.path_params["name"]
        items = categories.get(name, [])[:24]
        if not items:  # the demo's campaigns link to /c/autumn and the like: their landing page
            return await landing(request)
        return render(request, name, f"""<h1>{html.escape(name.replace("-", " ").capitalize())}</h1>
<div data-pz-slot="hero"></div>{tiles(items)}""")

    async def product(request: Request) -> Response:
        pid = request.path_params["pid"]
        p = products.get(pid) if is_valid_id(pid) else None
        if p is None:
            return render(request, "Not found", "<p>No such product.</p>", 404)
        q = html.escape(p.id, quote=True)
        return render(request, p.title, f"""
<div class="product" data-product="{q}">{picture(p)}<div><h1>{html.escape(p.title)}</h1>
<p><a href="/c/{html.escape(p.category, quote=True)}">{html.escape(p.category)}</a> · <b>{price(p)}</b></p>
<form method="post" action="/cart/add"
 onsubmit="window.pz && pz.track('add_to_cart', {{item: '{q}', quantity: 1}}) && pz.flush()">
<input type="hidden" name="item" value="{q}"><button id="add" class="primary">Add to cart</button></form></div></div>
<div data-pz-slot="item" data-pz-item="{q}" data-pz-title-item="Bought together"
 data-pz-title="You may also like"></div>
<script>addEventListener('DOMContentLoaded', () => pz.track('view', {{item: '{q}'}}));</script>""")

    async def cart(request: Request) -> Response:
        lines = cart_of(request)
        if not lines:
            listing = '<p id="empty">Your cart is empty.</p>'
        else:
            total = sum((amount(products[pid]) * q for pid, q in lines.items()), Decimal(0))
            rows = "".join(
                f'<tr data-id="{html.escape(pid)}"><td>{picture(products[pid])}</td>'
                f'<td><a href="/p/{html.escape(pid)}">{html.escape(products[pid].title)}</a></td>'
                f'<td class="num">{q}</td><td class="num">{price(products[pid])}</td>'
                f'<td><form method="post" action="/cart/remove" onsubmit="window.pz && pz.track(\'remove_from_cart\', '
                f"{{item: '{html.escape(pid)}'}}) && pz.flush()\"><input type=\"hidden\" name=\"item\" "
                f'value="{html.escape(pid)}"><button>Remove</button></form></td></tr>' for pid, q in lines.items())
            currency = html.escape(products[next(iter(lines))].currency)
            listing = (f'<table class="cart"><tr><th></th><th>Product</th><th class="num">Qty</th>'
                       f'<th class="num">Price</th><th></th></tr>{rows}<tr><th></th><th>Total</th><th></th>'
                       f'<th class="num" id="total">{total:.2f} {currency}</th><th></th></tr></table>'
                       '<form method="post" action="/cart/order"><p><button id="order" class="primary">'
                       "Place order</button></p></form>")
        return render(request, "Cart", f"""<h1>Your cart</h1>{listing}
<div data-pz-slot="hero"></div><div data-pz-slot="cart" data-pz-title="Goes well with your cart"></div>""")

    async def change(request: Request, add: bool) -> Response:
        # The pages' forms are url-encoded, one field: parsed here rather than with a multipart library.
        form = parse_qs((await request.body())[:4096].decode("utf-8", "replace"))
        pid = (form.get("item") or [""])[0]
        if pid not in products:
            return render(request, "Not found", "<p>No such product.</p>", 404)
        lines = cart_of(request)
        if add:
            lines[pid] = min(MAX_QUANTITY, lines.get(pid, 0) + 1)
        else:
            lines.pop(pid, None)
        r = RedirectResponse("/cart", status_code=303)
        r.set_cookie(CART, cart_cookie(lines), max_age=30 * 86400, path="/", httponly=True, samesite="lax")
        return r

    async def add(request: Request) -> Response:
        return await change(request, True)

    async def remove(request: Request) -> Response:
        return await change(request, False)

    async def order(request: Request) -> Response:
        lines = cart_of(request)
        if not lines:
            return RedirectResponse("/cart", status_code=303)
        number = "o-" + secrets.token_hex(6)
        purchase = dumps_text({"order": number, "items": [
            {"item": pid, "quantity": q, "price": f"{amount(products[pid]):.2f}"} for pid, q in lines.items()]})
        r = render(request, "Thank you", f"""<h1>Thank you for your order</h1>
<p>Order <b id="number">{number}</b>: {sum(lines.values())} items.</p>
<script>addEventListener('DOMContentLoaded', () => window.pz && pz.track('purchase', {purchase}));
</script><div data-pz-slot="home" data-pz-title="You may also like"></div>""")
        r.delete_cookie(CART, path="/")
        return r

    async def again(request: Request) -> Response:
        return render(request, "Buy it again", """<h1>Buy it again</h1>
<div data-pz-slot="again"><p>Your regular buys appear here.</p></div>""")

    async def landing(request: Request) -> Response:
        """Where the demo's campaigns link to (``/welcome``, ``/rewards``, ...): a page, not a 404."""
        return render(request, "Offers", """<h1>Offers</h1><p>This is where the campaign's link lands in the
demo shop; a shop points its campaigns at its own pages.</p><div data-pz-slot="home" data-pz-title="Best sellers">
</div>""")

    def svg(text: str) -> Response:
        return Response(text, media_type="image/svg+xml",
                        headers={"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"})

    async def product_image(request: Request) -> Response:
        p = products.get(request.path_params["pid"])
        return svg(product_svg(p.id, p.title, p.category)) if p else Response("no such image", 404)

    async def banner_image(request: Request) -> Response:
        name = request.path_params["name"]
        return svg(banner_svg(name)) if ID_RE.fullmatch(name) else Response("no such image", 404)

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
        for name in (UID, "pz_s", CART):
            r.delete_cookie(name, path="/")
        return r

    return Starlette(routes=[
        Route("/", home), Route("/c/{name}", category), Route("/p/{pid}", product),
        Route("/cart", cart), Route("/cart/add", add, methods=["POST"]),
        Route("/cart/remove", remove, methods=["POST"]), Route("/cart/order", order, methods=["POST"]),
        Route("/again", again), Route("/injected", injected),
        Route("/img/p/{pid}.svg", product_image), Route("/img/banners/{name}.svg", banner_image),
        Route("/signin/{person}", signin), Route("/signout", signout),
        *(Route(path, landing) for path in ("/welcome", "/rewards", "/quiz", "/deals/{rest:path}"))])
