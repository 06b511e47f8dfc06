"""Batch inputs: catalog, events and (optionally) shoppers from CSV, JSON Lines or Parquet.

Every row is validated; a bad row is reported with its file and line (Parquet: row number) and either
skipped or, with ``strict``, fails the build. Nothing is dropped silently: the report counts every skip.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from personalizer.digits import ascii_digits
from personalizer.keys import is_valid_id

from .seedgen import EVENT_KINDS, Shop

MAX_REPORTED = 50
IN_STOCK_UNKNOWN = 1  # no stock figure given: sellable


class InputError(Exception):
    """Unreadable input, or a bad row under ``strict``."""


@dataclass
class Report:
    strict: bool
    bad: dict[str, int] = field(default_factory=dict)     # file -> bad rows
    examples: list[str] = field(default_factory=list)

    def reject(self, where: str, reason: str) -> None:
        message = f"{where}: {reason}"
        if self.strict:
            raise InputError(message)
        path = where.rsplit(":", 1)[0]
        self.bad[path] = self.bad.get(path, 0) + 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append(message)

    def summary(self) -> str:
        if not self.bad:
            return "inputs: no bad rows"
        lines = [f"inputs: skipped {n} bad row(s) in {path}" for path, n in self.bad.items()]
        return "\n".join(lines + [f"  {e}" for e in self.examples])


def rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` pairs from a .csv, .jsonl/.ndjson or .parquet file, ``where`` being ``file:line``."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            for row in reader:
                yield f"{path}:{reader.line_num}", row
    elif suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    yield f"{path}:{n}", {"__error__": "not valid JSON"}
                    continue
                yield f"{path}:{n}", obj if isinstance(obj, dict) else {"__error__": "not a JSON object"}
    elif suffix == ".parquet":
        import pyarrow.parquet as pq  # imported only when a Parquet file is given

        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
            for row in batch.to_pylist():
                n += 1
                yield f"{path}:row {n}", row
    else:
        raise InputError(f"{path}: unknown format {suffix!r} (use .csv, .jsonl or .parquet)")


MAX_CHARS = {"title": 300, "url": 2048, "image": 2048, "category": 200}  # a card's strings travel in every list


def _text(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None or str(value).strip() == "":
        raise ValueError(f"missing {name}")
    text = str(value).strip()
    if len(text) > MAX_CHARS.get(name, 1000):
        raise ValueError(f"{name} longer than {MAX_CHARS.get(name, 1000)} characters")
    return text


def _price_cents(raw: Any) -> int:
    """Prices are decimal strings or numbers in major units ("19.99"); stored as integer cents."""
    text = str(raw).strip()
    whole, _, frac = text.partition(".")
    if not ascii_digits(whole.lstrip("-")) or (frac and (not ascii_digits(frac) or len(frac) > 2)):
        raise ValueError(f"bad price {text!r}")
    cents = int(whole) * 100 + (int(frac.ljust(2, "0")) if frac else 0)
    if cents < 0:
        raise ValueError("negative price")
    return cents


def _stock(raw: Any) -> int:
    """Units in stock; a missing column or empty cell means "in stock" (the column is optional)."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return IN_STOCK_UNKNOWN
    if not ascii_digits(text.lstrip("-")):
        raise ValueError(f"bad stock {text!r} (a whole number of units)")
    return max(int(text), 0)


def _timestamp(raw: Any) -> int:
    text = str(raw).strip()
    if ascii_digits(text):
        return int(text)
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise ValueError(f"bad timestamp {text!r}") from None


def read_catalog(path: Path, report: Report) -> list[dict[str, Any]]:
    products: list[dict[str, Any]] = []
    seen: set[str] = set()
    for where, row in rows(path):
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            pid = _text(row, "id")
            if not is_valid_id(pid):
                raise ValueError(f"invalid id {pid!r}")
            if pid in seen:
                raise ValueError(f"duplicate id {pid!r}")
            stock = _stock(row.get("stock"))
            price = _price_cents(_text(row, "price"))
            previous = row.get("previous_price")
            was = _price_cents(previous) if previous not in (None, "") else price
            # The card carries the reference price; a lower current price is a drop the edge can announce.
            products.append({"id": pid, "category": _text(row, "category"), "title": _text(row, "title"),
                             "url": _text(row, "url"), "image": _text(row, "image"), "price": max(was, price),
                             "current": price, "currency": str(row.get("currency") or "EUR").strip(),
                             "stock": stock})
            seen.add(pid)
        except ValueError as exc:
            report.reject(where, str(exc))
    if not products:
        raise InputError(f"{path}: no valid product")
    return products


def read_events(path: Path, products: dict[str, int], report: Report) -> tuple[list[str], np.ndarray]:  # type: ignore[type-arg]
    """Events as the build's structured array; shoppers are indexed in order of first appearance."""
    shoppers: dict[str, int] = {}
    out: list[tuple[int, int, int, int]] = []
    for where, row in rows(path):
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            shopper, product, kind = _text(row, "shopper"), _text(row, "product"), _text(row, "kind")
            if not is_valid_id(shopper):
                raise ValueError(f"invalid shopper id {shopper!r}")
            if product not in products:
                raise ValueError(f"unknown product {product!r}")
            if kind not in EVENT_KINDS:
                raise ValueError(f"unknown kind {kind!r} (expected {', '.join(EVENT_KINDS)})")
            ts = _timestamp(_text(row, "ts"))  # every check before the shopper is registered: a bad row adds none
            out.append((shoppers.setdefault(shopper, len(shoppers)), products[product], EVENT_KINDS.index(kind), ts))
        except ValueError as exc:
            report.reject(where, str(exc))
    events = np.array(out, dtype=[("shopper", "i4"), ("product", "i4"), ("kind", "i1"), ("ts", "i8")])
    return list(shoppers), events


def read_loyalty(path: Path | None, report: Report) -> dict[str, str]:
    out: dict[str, str] = {}
    if path is None:
        return out
    for where, row in rows(path):
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            sid = _text(row, "id")
            tier = str(row.get("loyalty") or "").strip()
            if tier not in ("", "silver", "gold", "platinum"):
                raise ValueError(f"unknown loyalty tier {tier!r}")
            out[sid] = tier
        except ValueError as exc:
            report.reject(where, str(exc))
    return out


def load_shop(catalog: Path, events: Path, shoppers: Path | None, *, strict: bool, now: int | None,
              erased: set[str] | frozenset[str] = frozenset()) -> tuple[Shop, Report]:
    """Read and validate the inputs into the build's in-memory shop; tombstoned people are left out."""
    report = Report(strict)
    products = read_catalog(catalog, report)
    index = {p["id"]: i for i, p in enumerate(products)}
    ids, ev = read_events(events, index, report)
    loyalty = read_loyalty(shoppers, report)
    ev.sort(order=["ts", "shopper"], kind="stable")
    drops = {i: p["current"] for i, p in enumerate(products) if p["current"] < p["price"]}
    # No tier given: None, so the build's loyalty rules (purchases and value) decide.
    shop = Shop(products, [{"id": i, "loyalty": loyalty.get(i)} for i in ids], ev, 0, drops).without(erased)
    if not len(shop.events):
        raise InputError(f"{events}: no valid event")
    return replace(shop, now=now if now is not None else int(shop.events["ts"].max()) + 1), report
