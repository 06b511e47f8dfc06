"""Batch inputs: catalog, events and (optionally) shoppers from CSV, JSON Lines or Parquet.

Every row is validated; a bad row is reported with its file and line (Parquet: row number) and either
skipped or, with ``strict``, fails the build. Nothing is dropped silently: the report counts every skip.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from personalizer import jsontext
from personalizer.digits import ascii_digits
from personalizer.keys import is_valid_id
from personalizer_adapters.imports.files import NotText, data_suffix, open_text
from personalizer_adapters.imports.values import AmbiguousColumn, MixedUnits, Timestamps, price_convention

from .seedgen import EVENT_KINDS, Shop

MAX_REPORTED = 50
CATALOG_COLUMNS = ("id", "category", "title", "price", "url", "image")
EVENT_COLUMNS = ("shopper", "product", "kind", "ts")
IN_STOCK_UNKNOWN = 1  # no stock figure given: sellable


class InputError(Exception):
    """Unreadable input, or a bad row under ``strict``."""


@dataclass
class Report:
    strict: bool
    bad: dict[str, int] = field(default_factory=dict)     # file -> bad rows
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> kind of problem -> rows
    examples: list[str] = field(default_factory=list)
    erased: int = 0  # shoppers left out because they are tombstoned
    encodings: dict[str, str] = field(default_factory=dict)  # text file -> the encoding it was read in
    read: dict[str, int] = field(default_factory=dict)  # file -> rows read (good and bad)

    def reject(self, where: str, reason: str) -> None:
        message = f"{where}: {reason}"
        if self.strict:
            raise InputError(message)
        path = where.split(", column")[0].rsplit(":", 1)[0]
        self.bad[path] = self.bad.get(path, 0) + 1
        kind = reason.split(" '")[0].split(" (")[0].split(", the header")[0]  # "unknown product 'x'" -> kind
        if kind.endswith("field(s)"):
            kind = "wrong number of fields"
        per = self.reasons.setdefault(path, {})
        per[kind] = per.get(kind, 0) + 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append(message)

    def summary(self) -> str:
        read = ["inputs: read " + ", ".join(f"{path} as {label}" for path, label in self.encodings.items())] \
            if self.encodings else []
        if not self.bad:
            return "\n".join(read + ["inputs: no bad rows"])
        return "\n".join(read + [self.skipped(path) for path in self.bad] + [f"  {e}" for e in self.examples])

    def mostly_bad(self) -> list[str]:
        """Warnings for the files of which more than half the rows were skipped."""
        return [f"more than half the rows of {path} were skipped ({self.bad[path]} of {n}): check its columns and "
                "formats" for path, n in self.read.items() if self.bad.get(path, 0) * 2 > n]

    def skipped(self, path: str) -> str:
        return f"inputs: skipped {self.bad.get(path, 0)} bad row(s) in {path}: {self.why(path)}"

    def why(self, path: str) -> str:
        """One file's skipped rows by reason, most frequent first."""
        return ", ".join(f"{c} {k}" for k, c in sorted(self.reasons.get(path, {}).items(), key=lambda x: -x[1]))

    def nothing_valid(self, path: Path, what: str) -> InputError:
        """The error for a file with no usable row: its rows' reasons, counted, and the first examples."""
        key = str(path)
        if not self.bad.get(key):
            return InputError(f"{path.resolve()}: no valid {what} (the file has no rows)")
        first = [e for e in self.examples if e.startswith(key + ":")][:3]
        return InputError(f"{path.resolve()}: no valid {what}: all {self.bad[key]} rows skipped: {self.why(key)}"
                          + "".join(f"\n  {e}" for e in first))

    def as_json(self) -> dict[str, Any]:
        """Counts only (no row content, which may name people): for the build's report file."""
        return {"rows_read": dict(self.read), "rows_skipped": dict(self.bad), "by_reason": self.reasons,
                "encodings": dict(self.encodings), "erased_shoppers_left_out": self.erased}


class FieldError(ValueError):
    """A bad value in a named column; the report says which column it is."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


DELIMITERS = (",", ";", "\t", "|")


def _delimiter(line: str) -> str:
    """The one of , ; tab | that splits the header line into the most fields (Excel writes ; in much of Europe)."""
    return max(DELIMITERS, key=lambda d: (line.count(d), d == ","))


def rows(path: Path, required: tuple[str, ...] = (), optional: tuple[str, ...] = (),
         report: Report | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` pairs from a .csv, .jsonl/.ndjson/.json or .parquet file (the text ones also gzipped,
    ``.csv.gz``), ``where`` being ``file:line``; the text's encoding is detected (``imports.files``) and noted
    in ``report``.

    A CSV's header must name the ``required`` columns (``InputError`` with the expected header if not); a row
    with more or fewer fields than the header is reported with both counts (an unquoted comma, a short row).
    """
    suffix = data_suffix(path)
    if not path.exists():
        raise InputError(f"{path.resolve()}: no such file")
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # imported only when a Parquet file is given

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow's errors share no base: one line, the file named
            raise InputError(f"{path.resolve()}: not a readable Parquet file ({type(exc).__name__})") from None
        n = 0
        for batch in parquet.iter_batches(batch_size=65536):
            for row in batch.to_pylist():
                n += 1
                yield f"{path}:row {n}", row
        return
    if suffix not in (".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json"):
        raise InputError(f"{path.resolve()}: unknown format {suffix!r} (use .csv, .jsonl, .json or .parquet, "
                         "each text one also as .gz)")
    try:
        with open_text(path) as (text, encoding):
            if report is not None:
                report.encodings[str(path)] = encoding
            if suffix in (".jsonl", ".ndjson", ".json"):
                yield from _json_rows(path, text)
            else:
                yield from _csv_rows(path, text, required, optional)
    except NotText as exc:
        raise InputError(str(exc)) from None
    except UnicodeDecodeError as exc:  # UTF-16 with a BOM that breaks off, say
        raise InputError(f"{path.resolve()}: not valid text in its encoding ({exc.reason})") from None


def _csv_rows(path: Path, text: TextIO, required: tuple[str, ...], optional: tuple[str, ...]) -> Iterator[
        tuple[str, dict[str, Any]]]:
    expected = ", ".join(required) + (f"[, {', '.join(optional)}]" if optional else "")
    first = text.readline()
    delimiter = _delimiter(first)
    reader = csv.DictReader(itertools.chain([first], text), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path.resolve()}:1: the header is {', '.join(header) or '(empty)'}; expected "
                         f"{expected} (missing {', '.join(missing)}; separator {delimiter!r} detected)")
    for row in reader:
        where = f"{path}:{reader.line_num}"
        extra = row.pop(None, None)
        given = len(header) + len(extra or []) - sum(1 for h in header if row.get(h) is None)
        if extra or any(row.get(h) is None for h in required):  # short of an optional column: fine
            yield where, {"__error__": f"{given} field(s), the header has {len(header)} "
                                       f"({', '.join(header)})" + (" - an unquoted comma?" if extra else "")}
            continue
        yield where, {**row, "__header__": header}


def _json_rows(path: Path, text: TextIO) -> Iterator[tuple[str, dict[str, Any]]]:
    """JSON Lines; a ``.json`` file that is one array of objects is read as its elements (``file:#n``)."""
    first = text.read(1)
    while first.isspace():
        first = text.read(1)
    if first == "[":
        try:
            items = jsontext.loads("[" + text.read())
        except ValueError as exc:
            raise InputError(f"{path.resolve()}: not valid JSON ({exc})") from None
        for n, obj in enumerate(items, 1):
            yield f"{path}:#{n}", obj if isinstance(obj, dict) else {"__error__": "not a JSON object"}
        return
    for n, line in enumerate(itertools.chain([first + text.readline()], text), 1):
        if not line.strip():
            continue
        try:
            obj = jsontext.loads(line)
        except ValueError:
            yield f"{path}:{n}", {"__error__": "not valid JSON"}
            continue
        yield f"{path}:{n}", obj if isinstance(obj, dict) else {"__error__": "not a JSON object"}


def where_column(where: str, row: dict[str, Any], exc: ValueError) -> str:
    """``file:line, column N (name)`` for a CSV cell, ``file:line`` otherwise."""
    header = row.get("__header__")
    if isinstance(exc, FieldError) and isinstance(header, list) and exc.column in header:
        return f"{where}, column {header.index(exc.column) + 1} ({exc.column})"
    return where


def cell(row: dict[str, Any], name: str, convert: Any = None) -> Any:
    """The named cell, stripped and checked (``_text``), converted; any failure names its column."""
    try:
        text = _text(row, name)
        return convert(text) if convert else text
    except ValueError as exc:
        raise FieldError(name, str(exc)) from None


MAX_CHARS = {"title": 300, "url": 2048, "image": 2048, "category": 200}  # a card's strings travel in every list


def _text(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None or str(value).strip() == "":
        raise ValueError(f"missing {name}")
    text = str(value).strip()
    if len(text) > MAX_CHARS.get(name, 1000):
        raise ValueError(f"{name} longer than {MAX_CHARS.get(name, 1000)} characters")
    return text


def _stock(raw: Any) -> int:
    """Units in stock; a missing column or empty cell means "in stock" (the column is optional)."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return IN_STOCK_UNKNOWN
    if not ascii_digits(text.lstrip("-")):
        raise ValueError(f"bad stock {text!r} (a whole number of units)")
    return max(int(text), 0)


NO_IMAGE = ""  # a product without an image: its card has none, and the page shows the placeholder block


def read_catalog(path: Path, report: Report) -> list[dict[str, Any]]:
    products: list[dict[str, Any]] = []
    seen: set[str] = set()
    table = list(rows(path, CATALOG_COLUMNS[:-1], ("image", "stock", "currency", "previous_price"), report))
    try:  # one convention per price column, from all its values (imports.values)
        price, was_price = (price_convention(((w, r.get(c)) for w, r in table if "__error__" not in r), c)
                            for c in ("price", "previous_price"))
    except AmbiguousColumn as exc:
        raise InputError(f"{path.resolve()}: {exc}") from None
    for where, row in table:
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            pid = cell(row, "id")
            if not is_valid_id(pid):
                raise FieldError("id", f"invalid id {pid!r}")
            if pid in seen:
                raise FieldError("id", f"duplicate id {pid!r}")
            try:
                stock = _stock(row.get("stock"))
            except ValueError as exc:
                raise FieldError("stock", str(exc)) from None
            current = cell(row, "price", price.cents)
            previous = row.get("previous_price")
            was = cell(row, "previous_price", was_price.cents) if previous not in (None, "") else current
            image = cell(row, "image") if str(row.get("image") or "").strip() else NO_IMAGE
            # The card carries the reference price; a lower current price is a drop the edge can announce.
            products.append({"id": pid, "category": cell(row, "category"), "title": cell(row, "title"),
                             "url": cell(row, "url"), "image": image, "price": max(was, current),
                             "current": current, "currency": str(row.get("currency") or "EUR").strip(),
                             "stock": stock})
            seen.add(pid)
        except ValueError as exc:
            report.reject(where_column(where, row, exc), str(exc))
    if not products:
        raise report.nothing_valid(path, "product")
    return products


def read_events(path: Path, products: dict[str, int], report: Report) -> tuple[list[str], np.ndarray]:  # type: ignore[type-arg]
    """Events as the build's structured array; shoppers are indexed in order of first appearance."""
    shoppers: dict[str, int] = {}
    out: list[tuple[int, int, int, int]] = []
    stamps = Timestamps(path.resolve())
    for where, row in rows(path, EVENT_COLUMNS, (), report):
        report.read[str(path)] = report.read.get(str(path), 0) + 1
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            shopper, product, kind = cell(row, "shopper"), cell(row, "product"), cell(row, "kind")
            if not is_valid_id(shopper):
                raise FieldError("shopper", f"invalid shopper id {shopper!r}")
            if product not in products:
                raise FieldError("product", f"unknown product {product!r}")
            if kind not in EVENT_KINDS:
                raise FieldError("kind", f"unknown kind {kind!r} (expected {', '.join(EVENT_KINDS)})")
            ts = cell(row, "ts", lambda raw, at=where: stamps.seconds(raw, at))  # before the shopper is registered
            out.append((shoppers.setdefault(shopper, len(shoppers)), products[product], EVENT_KINDS.index(kind), ts))
        except MixedUnits as exc:
            raise InputError(str(exc)) from None
        except ValueError as exc:
            report.reject(where_column(where, row, exc), str(exc))
    events = np.array(out, dtype=[("shopper", "i4"), ("product", "i4"), ("kind", "i1"), ("ts", "i8")])
    return list(shoppers), events


def read_loyalty(path: Path | None, report: Report) -> dict[str, str]:
    out: dict[str, str] = {}
    if path is None:
        return out
    for where, row in rows(path, ("id",), ("loyalty",), report):
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            sid = cell(row, "id")
            tier = str(row.get("loyalty") or "").strip()
            if tier not in ("", "silver", "gold", "platinum"):
                raise FieldError("loyalty", f"unknown loyalty tier {tier!r}")
            out[sid] = tier
        except ValueError as exc:
            report.reject(where_column(where, row, exc), str(exc))
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
    whole = Shop(products, [{"id": i, "loyalty": loyalty.get(i)} for i in ids], ev, 0, drops)
    shop = whole.without(erased)
    report.erased = len(whole.shoppers) - len(shop.shoppers)
    if not len(ev):
        raise report.nothing_valid(events, "event")
    if not len(shop.events):
        raise InputError(f"{events.resolve()}: every event is of an erased person")
    return replace(shop, now=now if now is not None else int(shop.events["ts"].max()) + 1), report
