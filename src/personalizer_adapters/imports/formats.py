"""Exports the build recognises by their columns or fields, and turns into its own rows (catalog: ``id, category,
title, price, url, image[, stock, currency, previous_price]``; events: ``shopper, product, kind, ts[, quantity,
order]``), plus a column mapping for any other file. README, "Your shop's exports", lists per format the
fields read, those ignored and what is left out.

A converter yields ``(where, row)``: a row of the build's columns, or ``{"__error__": reason}`` (a bad row,
counted by reason) or ``{"__left_out__": reason}`` (a row a rule leaves out: a refunded order, a test order, an
event kind the build has no use for; counted apart, never a warning).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Rows = Iterator[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Format:
    name: str
    kind: str  # "catalog" or "events"
    signature: frozenset[str]  # columns (or top-level fields) that all appear in this format's files
    convert: Callable[[Iterable[tuple[str, dict[str, Any]]]], Rows]

    def matches(self, columns: Iterable[str]) -> bool:
        return self.signature <= set(columns)


def left_out(reason: str) -> dict[str, Any]:
    return {"__left_out__": reason}


def bad(reason: str) -> dict[str, Any]:
    return {"__error__": reason}


def _object(row: dict[str, Any], name: str) -> dict[str, Any]:
    value = row.get(name)
    return value if isinstance(value, dict) else {}


def _text(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    return "" if value is None else str(value).strip()


# -- Shopify: Products > Export (CSV) ------------------------------------------------------------------------
def shopify_products(raw: Iterable[tuple[str, dict[str, Any]]]) -> Rows:
    """One row per product from the export's rows: the first row of a Handle carries the product (Title, Type,
    Status, the first variant), the rows after it with the same Handle and no Title add variants and images."""
    product: dict[str, Any] | None = None
    where0 = ""
    for where, row in raw:
        if "__error__" in row:
            yield where, row
            continue
        handle, title = _text(row, "Handle"), _text(row, "Title")
        if product is not None and handle == product["id"] and not title:  # a variant or image row
            _add_variant(product, row)
            continue
        if product is not None:
            yield where0, _finish(product)
        where0, product = where, _start(handle, title, row)
    if product is not None:
        yield where0, _finish(product)


def _start(handle: str, title: str, row: dict[str, Any]) -> dict[str, Any]:
    category = _text(row, "Type") or _text(row, "Product Category").split(">")[-1].strip()
    product = {"id": handle, "title": title, "category": category, "url": f"/products/{handle}", "image": "",
               "price": "", "previous_price": "", "stock": "", "__status__": _text(row, "Status").lower(),
               "__published__": _text(row, "Published").lower(), "__skus__": []}
    _add_variant(product, row)
    return product


def _add_variant(product: dict[str, Any], row: dict[str, Any]) -> None:
    if not product["image"]:
        product["image"] = _text(row, "Image Src") or _text(row, "Variant Image")
    price = _text(row, "Variant Price")
    if price and not product["price"]:  # the first variant's price is the card's
        product["price"] = price
        compare = _text(row, "Variant Compare At Price")
        product["previous_price"] = compare
    quantity = _text(row, "Variant Inventory Qty")
    if quantity.lstrip("-").isdigit():
        product["stock"] = str(max(int(quantity), 0) + int(product["stock"] or 0))
    sku = _text(row, "Variant SKU")
    if sku:
        product["__skus__"].append(sku)


def _finish(product: dict[str, Any]) -> dict[str, Any]:
    if not product["title"]:
        return bad("a variant row without its product row (no Title on the first row of its Handle)")
    if product["__status__"] in ("draft", "archived"):
        return left_out(f"{product['__status__']} product")
    if product["__published__"] == "false":
        return left_out("unpublished product")
    return product


SHOPIFY_PRODUCTS = Format("Shopify products export", "catalog",
                          frozenset({"Handle", "Title", "Variant Price"}), shopify_products)


# -- Shopify: Orders > Export (CSV) --------------------------------------------------------------------------
ORDER_FIELDS = ("Email", "Financial Status", "Created at", "Cancelled at", "Payment Method", "Tags")
NOT_PAID = {"refunded": "refunded order", "voided": "voided order", "pending": "pending order (not paid)",
            "authorized": "authorized order (not paid)", "expired": "expired order"}


def shopify_orders(raw: Iterable[tuple[str, dict[str, Any]]]) -> Rows:
    """One purchase per line item; the order's fields (email, status, date) from its first row, which the
    export leaves blank on the rows of its other lines."""
    orders: dict[str, dict[str, str]] = {}
    for where, row in raw:
        if "__error__" in row:
            yield where, row
            continue
        name = _text(row, "Name")
        order = orders.setdefault(name, {})
        for field in ORDER_FIELDS:
            value = _text(row, field)
            if value:
                order.setdefault(field, value)
        status = order.get("Financial Status", "").lower()
        if status in NOT_PAID:
            yield where, left_out(NOT_PAID[status])
        elif order.get("Cancelled at"):
            yield where, left_out("cancelled order")
        elif order.get("Payment Method", "").lower() == "bogus" or "test" in order.get("Tags", "").lower().split(", "):
            yield where, left_out("test order")
        elif not order.get("Email"):
            yield where, bad("order without an email (a POS sale to no known customer)")
        else:
            yield where, {"shopper": order["Email"], "product": _text(row, "Lineitem sku"),
                          "__product_name__": _text(row, "Lineitem name"), "kind": "purchase",
                          "ts": order.get("Created at", ""), "quantity": _text(row, "Lineitem quantity") or "1",
                          "order": name}


SHOPIFY_ORDERS = Format("Shopify orders export", "events",
                        frozenset({"Name", "Lineitem quantity", "Lineitem name"}), shopify_orders)


# -- GA4: the BigQuery export (JSON lines or Parquet) --------------------------------------------------------
GA4_KINDS = {"view_item": "view", "add_to_cart": "add_to_cart", "remove_from_cart": "remove_from_cart",
             "purchase": "purchase"}


def ga4(raw: Iterable[tuple[str, dict[str, Any]]]) -> Rows:
    """One event per item of ``items[]`` for view_item, add_to_cart, remove_from_cart and purchase (with
    ``ecommerce.transaction_id`` as the order); ``user_id`` when set, else ``user_pseudo_id``."""
    for where, row in raw:
        if "__error__" in row:
            yield where, row
            continue
        name = _text(row, "event_name")
        kind = GA4_KINDS.get(name)
        if kind is None:
            yield where, left_out(f"GA4 event not used ({name or 'no name'})")
            continue
        items = row.get("items")
        if not isinstance(items, list) or not items:
            yield where, bad(f"GA4 {name} without items[]")
            continue
        ecommerce = _object(row, "ecommerce")
        person = _text(row, "user_id") or _text(row, "user_pseudo_id")
        for n, item in enumerate(items, 1):
            at = f"{where} item {n}" if len(items) > 1 else where
            if not isinstance(item, dict):
                yield at, bad("GA4 item that is not an object")
                continue
            out = {"shopper": person, "product": _text(item, "item_id"), "kind": kind,
                   "ts": row.get("event_timestamp"), "quantity": _text(item, "quantity") or "1"}
            if kind == "purchase":
                out["order"] = _text(ecommerce, "transaction_id")
            yield at, out


GA4 = Format("GA4 BigQuery export", "events", frozenset({"event_name", "event_timestamp", "user_pseudo_id"}), ga4)


# -- Segment / RudderStack: e-commerce spec tracks (JSON lines) ----------------------------------------------
SEGMENT_KINDS = {"product viewed": "view", "product added": "add_to_cart", "product removed": "remove_from_cart",
                 "order completed": "purchase"}


def segment(raw: Iterable[tuple[str, dict[str, Any]]]) -> Rows:
    """Product Viewed / Added / Removed (``properties.product_id``, else ``sku``) and Order Completed (one per
    ``properties.products[]``, ``order_id``); ``userId`` when set, else ``anonymousId``."""
    for where, row in raw:
        if "__error__" in row:
            yield where, row
            continue
        if _text(row, "type").lower() != "track":
            yield where, left_out(f"Segment {_text(row, 'type') or 'untyped'} call")
            continue
        name = _text(row, "event")
        kind = SEGMENT_KINDS.get(name.lower())
        if kind is None:
            yield where, left_out(f"Segment event not used ({name or 'no name'})")
            continue
        props = _object(row, "properties")
        person = _text(row, "userId") or _text(row, "anonymousId")
        ts = row.get("timestamp") or row.get("originalTimestamp") or row.get("sentAt")
        lines = props.get("products") if kind == "purchase" else [props]
        if not isinstance(lines, list) or not lines:
            yield where, bad(f"Segment {name} without products[]")
            continue
        for n, line in enumerate(lines, 1):
            at = f"{where} product {n}" if len(lines) > 1 else where
            if not isinstance(line, dict):
                yield at, bad("Segment product that is not an object")
                continue
            out = {"shopper": person, "product": _text(line, "product_id") or _text(line, "sku"), "kind": kind,
                   "ts": ts, "quantity": _text(line, "quantity") or "1"}
            if kind == "purchase":
                out["order"] = _text(props, "order_id")
            yield at, out


SEGMENT = Format("Segment/RudderStack tracks", "events", frozenset({"type", "event", "properties"}), segment)

FORMATS = (SHOPIFY_PRODUCTS, SHOPIFY_ORDERS, GA4, SEGMENT)


def recognise(kind: str, columns: Iterable[str]) -> Format | None:
    names = set(columns)
    return next((f for f in FORMATS if f.kind == kind and f.matches(names)), None)


# -- A column mapping for any other file ---------------------------------------------------------------------
class MappingError(ValueError):
    """A --map that cannot be applied."""


def parse_mapping(specs: Iterable[str]) -> dict[str, dict[str, str]]:
    """``--map`` values (``catalog.id=Handle,catalog.title=Title``; repeatable) or ``@file`` (one per line,
    ``#`` comments): {kind: {the build's column: the file's column}}."""
    from pathlib import Path

    pairs: list[str] = []
    for spec in specs:
        if spec.startswith("@"):
            lines = Path(spec[1:]).read_text(encoding="utf-8-sig").splitlines()
            pairs += [line.split("#", 1)[0].strip() for line in lines]
        else:
            pairs += [p.strip() for p in spec.split(",")]
    out: dict[str, dict[str, str]] = {}
    for pair in filter(None, pairs):
        target, eq, source = pair.partition("=")
        kind, dot, column = target.strip().partition(".")
        if not eq or not dot or kind not in ("catalog", "events", "shoppers") or not column or not source.strip():
            raise MappingError(f"--map {pair!r}: write KIND.COLUMN=SOURCE, KIND one of catalog, events, shoppers "
                               "(catalog.id=Handle)")
        out.setdefault(kind, {})[column.strip()] = source.strip()
    return out


def mapped(mapping: dict[str, str]) -> Callable[[Iterable[tuple[str, dict[str, Any]]]], Rows]:
    """Rows with the build's columns taken from the file's, as ``mapping`` says (the others kept)."""
    def convert(raw: Iterable[tuple[str, dict[str, Any]]]) -> Rows:
        for where, row in raw:
            if "__error__" in row:
                yield where, row
                continue
            yield where, {**row, **{column: row.get(source) for column, source in mapping.items()}}
    return convert
