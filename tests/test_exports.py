"""A shop's own exports read without a converter (personalizer_adapters.imports.formats): Shopify's products and
orders CSV, a GA4 BigQuery export (JSON lines, Parquet), Segment tracks; a column mapping for anything else;
emails turned into pseudonymous ids. The fixture files are written here with the real formats' column names and
quirks (variant rows, refunds, guests, GA4's nesting, Segment's products[], Windows-1252, gzip)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personalizer import codec, keys
from personalizer_adapters.imports.identity import pseudonym
from personalizer_adapters.kv.plan import read_bulk
from tests.conftest import TEST_KEY, uid_cookie
from tests.runtime.harness import ROOT, edge_runtime


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a directory of its own (no .dev.vars but the test's), with ``env`` over the environment."""
    return subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300, env={**os.environ, "CLOUDFLARE_API_TOKEN": "", **(env or {})})

ID_KEY = "a-shops-own-pseudonym-key-0123"
T0 = 1_790_000_000
CFG = str(ROOT / "kv-seed" / "seed.toml")
SHOPIFY_PRODUCT_COLUMNS = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Published", "Option1 Name",
    "Option1 Value", "Option2 Name", "Option2 Value", "Option3 Name", "Option3 Value", "Variant SKU", "Variant Grams",
    "Variant Inventory Tracker", "Variant Inventory Qty", "Variant Inventory Policy", "Variant Fulfillment Service",
    "Variant Price", "Variant Compare At Price", "Variant Requires Shipping", "Variant Taxable", "Variant Barcode",
    "Image Src", "Image Position", "Image Alt Text", "Gift Card", "SEO Title", "SEO Description", "Variant Image",
    "Variant Weight Unit", "Variant Tax Code", "Cost per item", "Status"]
SHOPIFY_ORDER_COLUMNS = [
    "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Fulfilled at", "Accepts Marketing",
    "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Discount Code", "Discount Amount", "Shipping Method",
    "Created at", "Lineitem quantity", "Lineitem name", "Lineitem price", "Lineitem compare at price", "Lineitem sku",
    "Lineitem requires shipping", "Lineitem taxable", "Lineitem fulfillment status", "Billing Name", "Notes",
    "Cancelled at", "Payment Method", "Payment Reference", "Refunded Amount", "Vendor", "Id", "Tags", "Risk Level",
    "Source"]
# handle: (title, type, [(option, sku, price, compare at, qty)], image)
TEES = {
    "linen-shirt": ("Chemise en lin écru", "Shirts",
                    [("S", "LS-S", "49,00", "59,00", "3"), ("M", "LS-M", "49,00", "", "2")],
                    "https://cdn.shopify.test/linen.jpg"),
    "wool-beanie": ("Bonnet en laine", "Hats", [("One size", "WB-1", "19,90", "", "10")], ""),  # no image
    "canvas-tote": ("Cabas en toile", "Bags",
                    [("Natural", "CT-N", "24,50", "", "5"), ("Black", "CT-B", "24,50", "", "0")],
                    "https://cdn.shopify.test/tote.jpg"),
    "rain-jacket": ("Veste de pluie", "Jackets", [("M", "RJ-M", "129,00", "149,00", "4")],
                    "https://cdn.shopify.test/rain.jpg"),
    "old-scarf": ("Écharpe (archivée)", "Hats", [("One size", "OS-1", "15,00", "", "0")], ""),
}
TEES |= {f"basic-tee-{k}": (f"T-shirt basique {k}", "Shirts" if k % 2 else "Bags",
                             [("M", f"BT-{k}", f"{9 + k},90", "", "7")], f"https://cdn.shopify.test/tee{k}.jpg")
         for k in range(1, 11)}
PEOPLE = ["anna@example.com", "Bruno@Example.com ", "chloe@example.com", "dev@example.com", "emma@example.com"]


def shopify_products(path: Path) -> None:
    """Products > Export as Excel on a French PC saves it: Windows-1252, ';', decimal commas; variant rows
    continue their product; an archived product."""
    out = io.StringIO()
    w = csv.DictWriter(out, SHOPIFY_PRODUCT_COLUMNS, delimiter=";", lineterminator="\r\n")
    w.writeheader()
    for handle, (title, kind, variants, image) in TEES.items():
        for n, (option, sku, price, compare, qty) in enumerate(variants):
            row = {"Handle": handle, "Option1 Value": option, "Variant SKU": sku, "Variant Price": price,
                   "Variant Compare At Price": compare, "Variant Inventory Qty": qty, "Variant Inventory Tracker":
                   "shopify", "Image Src": image if n == 0 else "", "Image Position": "1" if n == 0 and image else ""}
            if n == 0:
                row |= {"Title": title, "Type": kind, "Vendor": "Atelier", "Published": "TRUE", "Option1 Name": "Size",
                        "Status": "archived" if handle == "old-scarf" else "active",
                        "Product Category": f"Apparel & Accessories > Clothing > {kind}"}
            w.writerow(row)
    path.write_bytes(out.getvalue().encode("cp1252"))


def shopify_orders(path: Path) -> None:
    """Orders > Export: one row per line item, the order's fields on its first row only; a refund, a pending
    order, a cancelled one, a test order; guests known only by their email; gzipped."""
    out = io.StringIO()
    w = csv.DictWriter(out, SHOPIFY_ORDER_COLUMNS, lineterminator="\n")
    w.writeheader()
    skus = ["LS-S", "LS-M", "WB-1", "CT-N", "CT-B", "RJ-M"] + [f"BT-{k}" for k in range(1, 11)]
    n = 1000
    for day in range(6):
        for p, email in enumerate(PEOPLE):
            n += 1
            status, cancelled, method = "paid", "", "Shopify Payments"
            if n == 1003:
                status = "refunded"
            elif n == 1007:
                status = "pending"
            elif n == 1011:
                cancelled = "2026-09-25 10:00:00 +0200"
            elif n == 1013:
                method = "Bogus"
            created = f"2026-09-{10 + day:02d} {9 + p:02d}:15:00 +0200"
            lines = [skus[(day * 3 + p) % 16], skus[(day * 5 + p * 2 + 2) % 16]]
            for i, sku in enumerate(lines):
                row = {"Name": f"#{n}", "Email": email, "Lineitem quantity": str(1 + i), "Lineitem sku": sku,
                       "Lineitem name": "x", "Lineitem price": "10.00"}
                if i == 0:
                    row |= {"Financial Status": status, "Created at": created, "Cancelled at": cancelled,
                            "Payment Method": method, "Currency": "EUR", "Total": "20.00"}
                w.writerow(row)
    # a line whose SKU the catalog lost, named as Shopify names lines: "Title - Variant"
    w.writerow({"Name": "#2000", "Email": PEOPLE[0], "Financial Status": "paid", "Created at": "2026-09-20 10:00:00 "
                "+0200", "Lineitem quantity": "1", "Lineitem sku": "", "Lineitem name": "Veste de pluie - M"})
    path.write_bytes(gzip.compress(out.getvalue().encode()))


def build(tmp_path: Path, catalog: Path, events: Path, *more: str, key: str | None = ID_KEY) -> tuple[int, str, Path]:
    out = tmp_path / "build"
    env = {"PZ_ID_KEY": key or ""}
    made = cli("build", "--catalog", str(catalog), "--events", str(events), "--config", CFG, "--out", str(out),
               "--tombstones", "/dev/null", *more, env=env, cwd=tmp_path)
    assert "Traceback" not in made.stderr, made.stderr
    return made.returncode, made.stderr, out


def profile(out: Path, person: str) -> dict[str, Any] | None:
    raw = dict(read_bulk(out / "kv.json")).get(keys.profile(person))
    return None if raw is None else codec.decode(raw, expect="profile").data


@pytest.mark.edge
def test_shopify_exports_build_and_a_buyer_gets_a_personal_page(tmp_path: Path) -> None:
    catalog, orders = tmp_path / "products_export.csv", tmp_path / "orders_export.csv.gz"
    shopify_products(catalog)
    shopify_orders(orders)
    code, err, out = build(tmp_path, catalog, orders)
    assert code == 0, err
    assert f"{catalog} is a Shopify products export" in err and f"{orders} is a Shopify orders export" in err
    assert f"{catalog} as Windows-1252" in err
    assert "1 archived product" in err
    for rule in ("refunded order", "pending order (not paid)", "cancelled order", "test order"):
        assert f"2 {rule}" in err, (rule, err)  # each a two-line order
    assert "5 identifier(s) (emails, ...) turned into pseudonymous ids" in err
    assert "example.com" not in (out / "kv.json").read_text() + (out / "report.json").read_text()
    cards = {c[0]: c for c in codec.decode(dict(read_bulk(out / "kv.json"))[keys.popular(
        (out / "generation.txt").read_text().strip())], expect="popular").data["cards"]}
    assert set(cards) <= set(TEES) - {"old-scarf"} and "linen-shirt" in cards
    anna = pseudonym("anna@example.com", ID_KEY)
    assert anna == pseudonym(" ANNA@example.com", ID_KEY) and anna.startswith("h-")
    bought = profile(out, anna)
    assert bought is not None and "rain-jacket" in bought["bought"]  # the line named "Veste de pluie - M"
    assert profile(out, pseudonym("bruno@example.com", ID_KEY)) is not None  # trimmed and lowercased alike
    shown = cli("pseudonym", "anna@example.com", env={"PZ_ID_KEY": ID_KEY})
    assert shown.returncode == 0 and shown.stdout.strip() == anna

    kv, state = tmp_path / "kv", tmp_path / "state"
    assert cli("push", "--build", str(out), "--target", "local", "--persist", str(kv), "--state-dir",
               str(state)).returncode == 0
    with edge_runtime(kv, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _):
        page = httpx.get(url + "/v1/page?slots=home&limit=4", headers={"cookie": uid_cookie(anna)}, timeout=30)
    home = page.json()["fragments"]["home"]
    assert home["tier"] == "user" and {c["id"] for c in home["items"]} <= set(cards)


def test_without_the_key_emails_are_refused_without_printing_them(tmp_path: Path) -> None:
    catalog, orders = tmp_path / "products_export.csv", tmp_path / "orders_export.csv.gz"
    shopify_products(catalog)
    shopify_orders(orders)
    code, err, _ = build(tmp_path, catalog, orders, key=None)
    assert code == 2 and "the shopper column holds an email: set PZ_ID_KEY" in err and "@" not in err


def ga4_rows() -> list[dict[str, Any]]:
    """GA4's BigQuery export: microsecond timestamps, items[] nested, user_id only when signed in."""
    rows: list[dict[str, Any]] = []
    handles = list(TEES)[:4]
    for p in range(6):
        user = {"user_pseudo_id": f"{1000 + p}.{1700000000 + p}", "user_id": f"member-{p}" if p < 4 else None}
        for j in range(4):
            t = (T0 + p * 1000 + j * 10) * 1_000_000
            rows.append({**user, "event_name": "page_view", "event_timestamp": t, "items": []})
            rows.append({**user, "event_name": "view_item", "event_timestamp": t + 1, "items": [
                {"item_id": handles[(p + j) % 4], "item_name": "x", "price": 10.0, "quantity": 1}]})
        rows.append({**user, "event_name": "add_to_cart", "event_timestamp": (T0 + p * 1000 + 50) * 1_000_000,
                     "items": [{"item_id": handles[p % 4], "quantity": 2}]})
        rows.append({**user, "event_name": "purchase", "event_timestamp": (T0 + p * 1000 + 60) * 1_000_000,
                     "ecommerce": {"transaction_id": f"T{p}"}, "items": [
                         {"item_id": handles[(p + 1) % 4], "quantity": 1}, {"item_id": handles[(p + 2) % 4],
                                                                             "quantity": 3}]})
    rows.append({"user_pseudo_id": "1.2", "event_name": "remove_from_cart",  # takes back member-0's add
                 "event_timestamp": (T0 + 70) * 1_000_000, "user_id": "member-0", "items": [{"item_id": handles[0]}]})
    return rows


@pytest.mark.parametrize("form", ["jsonl", "parquet"])
def test_a_ga4_bigquery_export_builds(tmp_path: Path, form: str) -> None:
    catalog = tmp_path / "products_export.csv"
    shopify_products(catalog)
    events = tmp_path / f"ga4.{form}"
    if form == "jsonl":
        events.write_text("\n".join(json.dumps(r) for r in ga4_rows()) + "\n")
    else:
        pq.write_table(pa.Table.from_pylist(ga4_rows()), events)
    code, err, out = build(tmp_path, catalog, events)
    assert code == 0, err
    assert f"{events} is a GA4 BigQuery export" in err and "24 GA4 event not used (page_view)" in err
    member = profile(out, "member-1")
    assert member is not None and set(member["bought"]) == {list(TEES)[2], list(TEES)[3]}
    assert profile(out, "1004.1700000004") is not None  # no user_id: the pseudo id
    assert list(TEES)[0] not in [c[0] for c in (profile(out, "member-0") or {}).get("cart", [])]
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"]["formats"][str(events)] == "GA4 BigQuery export"


def test_segment_tracks_build(tmp_path: Path) -> None:
    catalog = tmp_path / "products_export.csv"
    shopify_products(catalog)
    rows = []
    for p in range(5):
        who = {"userId": f"user{p}"} if p < 3 else {"anonymousId": f"anon-{p}"}
        for j, name in enumerate(("Product Viewed", "Product Viewed", "Product Added", "Checkout Started")):
            rows.append({"type": "track", "event": name, **who, "timestamp": f"2026-09-21T1{p}:0{j}:00.000Z",
                         "properties": {"product_id": list(TEES)[(p + j) % 4], "sku": "x"}, "messageId": f"m{p}{j}"})
        rows.append({"type": "track", "event": "Order Completed", **who, "timestamp": f"2026-09-21T1{p}:09:00Z",
                     "properties": {"order_id": f"o{p}", "products": [{"product_id": list(TEES)[p % 4], "quantity": 2},
                                                                      {"sku": "CT-B", "quantity": 1}]}})
        rows.append({"type": "identify", **who, "traits": {"email": "x@example.com"}})
    events = tmp_path / "segment.json"
    events.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, err, out = build(tmp_path, catalog, events)
    assert code == 0, err
    assert f"{events} is a Segment/RudderStack tracks" in err
    assert "5 Segment event not used (Checkout Started)" in err and "5 Segment identify call" in err
    user = profile(out, "user1")
    assert user is not None and "canvas-tote" in user["bought"]  # by its variant's SKU


def test_any_other_file_by_a_column_mapping(tmp_path: Path) -> None:
    catalog = tmp_path / "items.csv"
    catalog.write_text("sku,name,family,amount,link,picture\n" + "".join(
        f"a{i},Item {i},fam{i % 2},{i}.50,/i/{i},https://img.test/{i}.jpg\n" for i in range(1, 7)))
    events = tmp_path / "hits.csv"
    events.write_text("member,sku,action,when\n" + "".join(
        f"m{n % 4},a{n % 6 + 1},{'purchase' if n % 3 else 'view'},{T0 + n}\n" for n in range(30)))
    mapping = tmp_path / "mapping.txt"
    mapping.write_text("# our columns\nevents.shopper=member\nevents.product=sku\nevents.kind=action\n"
                       "events.ts=when\n")
    code, err, out = build(tmp_path, catalog, events, "--map", "catalog.id=sku,catalog.title=name,catalog.category="
                           "family,catalog.price=amount,catalog.url=link,catalog.image=picture", "--map", f"@{mapping}")
    assert code == 0, err
    assert profile(out, "m1") is not None
    code, err, _ = build(tmp_path, catalog, events, "--map", "catalog.id")
    assert code == 2 and "write KIND.COLUMN=SOURCE" in err
    code, err, _ = build(tmp_path, catalog, events)
    assert code == 2 and "the header is sku, name, family, amount, link, picture" in err and "--map catalog." in err


def test_pseudonym_needs_the_key() -> None:
    refused = cli("pseudonym", "anna@example.com", "--dev-vars", "/nonexistent", env={"PZ_ID_KEY": ""})
    assert refused.returncode == 2 and "PZ_ID_KEY" in refused.stderr and "@" not in refused.stderr


def test_the_readmes_login_code_computes_the_builds_pseudonym() -> None:
    """The README's Python and JavaScript for the shop's login code give the id the build gave the email."""
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**People's ids.**"):]
    python = re.search(r"```python\n(.*?)```", section, re.S)
    javascript = re.search(r"```javascript\n(.*?)```", section, re.S)
    assert python is not None and javascript is not None
    namespace: dict[str, Any] = {}
    exec(python.group(1), namespace)  # noqa: S102 - the README's own snippet
    expected = pseudonym(" Anna@Example.com", ID_KEY)
    assert namespace["pz_user_id"](" Anna@Example.com", ID_KEY) == expected
    script = javascript.group(1) + f"\nconsole.log(pzUserId({json.dumps(' Anna@Example.com')}, {json.dumps(ID_KEY)}));"
    node = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert node.returncode == 0 and node.stdout.strip() == expected, node.stderr


BROKEN_EVENTS: list[tuple[str, str, bytes, str]] = [
    ("unknown-suffix", "events.xml", b"<events/>", "unknown format '.xml'"),
    ("empty", "events.csv", b"", "the header is (empty); expected shopper, product, kind, ts"),
    ("header-only", "events.csv", b"shopper,product,kind,ts\n", "no valid event (the file has no rows)"),
    ("wrong-header", "events.csv", b"who,what\na,b\n", "the header is who, what; expected shopper, product, kind, ts"),
    ("json-array-broken", "events.json", b'[{"shopper": "s1",', "not valid JSON"),
    ("ga4-without-items", "ga4.jsonl", json.dumps({"event_name": "purchase", "event_timestamp": T0 * 10**6,
                                                   "user_pseudo_id": "1.2"}).encode(),
     "no valid event: all 1 rows skipped: 1 GA4 purchase without items[]"),
    ("ga4-only-page-views", "ga4.jsonl", json.dumps({"event_name": "page_view", "event_timestamp": T0 * 10**6,
                                                     "user_pseudo_id": "1.2"}).encode(),
     "no valid event: all 1 rows left out by rule: 1 GA4 event not used (page_view)"),
    ("segment-no-products", "seg.jsonl", json.dumps({"type": "track", "event": "Order Completed", "userId": "u",
                                                     "timestamp": "2026-09-21T10:00:00Z", "properties": {}}).encode(),
     "1 Segment Order Completed without products[]"),
    ("xlsx", "events.csv", b"PK\x03\x04" + bytes(100), "an Excel workbook (.xlsx): save the sheet as CSV"),
    ("mixed-units", "events.csv", f"shopper,product,kind,ts\ns1,linen-shirt,view,{T0}\ns1,linen-shirt,view,"
                                  f"{T0 * 1000}\n".encode(), "timestamps in seconds"),
    ("utf16-cut", "events.csv", b"\xff\xfe" + "shopper,product".encode("utf-16-le") + b"\x00", "not valid text"),
]


@pytest.mark.parametrize("name, filename, content, says", BROKEN_EVENTS, ids=[b[0] for b in BROKEN_EVENTS])
def test_broken_inputs_each_fail_in_one_line(tmp_path: Path, name: str, filename: str, content: bytes,
                                             says: str) -> None:
    catalog = tmp_path / "products_export.csv"
    shopify_products(catalog)
    events = tmp_path / filename
    events.write_bytes(content)
    code, err, _ = build(tmp_path, catalog, events)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and says in errors[0], err


def test_quantities_and_orders_reach_the_profile_and_the_miss_path_agrees(tmp_path: Path) -> None:
    """An order's quantities count in the purchase value (loyalty) and in "buy it again"; two orders an hour
    apart are two baskets (a re-buy) where time alone would see one; the origin's miss path computes the same
    profile from the store as the build did."""
    from personalizer_adapters.batch.inputs import load_shop
    from personalizer_adapters.origin.app import Origin
    from personalizer_adapters.store.base import order_key

    catalog, orders = tmp_path / "products_export.csv", tmp_path / "orders_export.csv.gz"
    shopify_products(catalog)
    shopify_orders(orders)
    shop, _ = load_shop(catalog, orders, None, strict=False, now=None, id_key=ID_KEY)
    assert sorted(set(shop.events["qty"].tolist())) == [1, 2]  # each order's second line has quantity 2
    assert order_key("#1001") in shop.events["order"].tolist()
    code, err, out = build(tmp_path, catalog, orders)
    assert code == 0, err
    origin = Origin(out / "origin")
    for person in PEOPLE[:3]:
        key = keys.profile(pseudonym(person, ID_KEY))
        built = dict(read_bulk(out / "kv.json"))[key]
        missed = origin.resolve(key)
        assert missed is not None and codec.decode(missed, expect="profile").data == \
            codec.decode(built, expect="profile").data

    from personalizer_adapters.batch.model import baskets_of
    from personalizer_adapters.store.base import NO_ORDER
    ts = np.array([100, 100, 1900, 1900])
    assert baskets_of(ts).tolist() == [0, 0, 0, 0]  # within the hour: one basket by time
    assert baskets_of(ts, np.array([7, 7, 8, 8])).tolist() == [0, 0, 1, 1]  # two orders: two baskets
    assert baskets_of(ts, np.array([7, 7, NO_ORDER, NO_ORDER])).tolist() == [0, 0, 0, 0]  # unknown: by time


def test_quantity_counts_in_the_purchase_value(tmp_path: Path) -> None:
    """Loyalty by the rules (orders and value): the same purchases with quantity 10 reach a higher tier."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("id,category,title,price,url,image\n" + "".join(
        f"p{i},c{i % 2},Item {i},60.00,/p/{i},https://img.test/{i}.jpg\n" for i in range(1, 9)))
    tiers = {}
    for qty in (1, 10):
        events = tmp_path / f"events-{qty}.csv"
        events.write_text("shopper,product,kind,ts,quantity,order\n" + "".join(
            f"s{s},p{(s + n) % 8 + 1},purchase,{T0 + n * 86400},{qty},o{s}-{n}\n" for s in range(4) for n in range(4)))
        (tmp_path / str(qty)).mkdir()
        code, err, out = build(tmp_path / str(qty), catalog, events)
        assert code == 0, err
        tiers[qty] = (profile(out, "s1") or {})["loyalty"]
    assert tiers[1] != tiers[10] and tiers[10] == "gold", tiers  # 4 orders: 240.00 vs 2,400.00


@pytest.mark.edge
def test_ga4_and_segment_shoppers_get_a_personal_page_through_the_edge(tmp_path: Path) -> None:
    """Each event export built and pushed on its own: a shopper of it gets the user tier from the live edge."""
    catalog = tmp_path / "products_export.csv"
    shopify_products(catalog)
    sold = [h for h in TEES if h != "old-scarf"]
    ga4_events = tmp_path / "ga4.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"event_name": "purchase" if j == 3 else "view_item", "event_timestamp": (T0 + p * 1000 + j) * 1_000_000,
         "user_pseudo_id": f"{p}.{p}", "user_id": f"member-{p}", "ecommerce": {"transaction_id": f"T{p}"},
         "items": [{"item_id": sold[(p * 2 + j) % len(sold)], "quantity": 1}]}
        for p in range(8) for j in range(4)]), ga4_events)
    segment_events = tmp_path / "segment.jsonl.gz"
    segment_events.write_bytes(gzip.compress("\n".join(json.dumps(
        {"type": "track", "event": "Order Completed" if j == 3 else "Product Viewed", "userId": f"user{p}",
         "timestamp": f"2026-09-21T1{p}:0{j}:00Z", "properties": {
             "order_id": f"o{p}", "products": [{"product_id": sold[(p * 2 + 5) % len(sold)], "quantity": 1}]}
         if j == 3 else {"product_id": sold[(p * 2 + j) % len(sold)]}})
        for p in range(8) for j in range(4)).encode()))
    for name, events, person in (("ga4", ga4_events, "member-1"), ("segment", segment_events, "user2")):
        work = tmp_path / name
        work.mkdir()
        code, err, out = build(work, catalog, events)
        assert code == 0, err
        kv, state = work / "kv", work / "state"
        assert cli("push", "--build", str(out), "--target", "local", "--persist", str(kv), "--state-dir",
                   str(state)).returncode == 0
        with edge_runtime(kv, variables={"PZ_SIGNING_KEYS": TEST_KEY}) as (url, _):
            page = httpx.get(url + "/v1/page?slots=home,recent&limit=4", headers={"cookie": uid_cookie(person)},
                             timeout=30)
        fragments = page.json()["fragments"]
        assert fragments["home"]["tier"] == "user" and fragments["recent"]["tier"] == "user", (name, fragments)
