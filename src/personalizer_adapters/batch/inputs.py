"""Batch inputs: catalog, events and (optionally) shoppers from CSV, JSON Lines or Parquet.

Every row is validated; a bad row is reported with its file and line (Parquet: row number) and either
skipped or, with ``strict``, fails the build. Nothing is dropped silently: the report counts every skip.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from personalizer import jsontext
from personalizer.digits import ascii_digits
from personalizer.keys import is_valid_id
from personalizer_adapters.imports import formats
from personalizer_adapters.imports.files import NotText, data_suffix, open_text
from personalizer_adapters.imports.identity import NoIdKey, People
from personalizer_adapters.imports.values import AmbiguousColumn, MixedUnits, Timestamps, price_convention
from personalizer_adapters.store.base import order_key

from .seedgen import EVENT_KINDS, Shop

MAX_REPORTED = 50
CATALOG_COLUMNS = ("id", "category", "title", "price", "url", "image")
EVENT_COLUMNS = ("shopper", "product", "kind", "ts")  # and optionally quantity, order
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
    formats: dict[str, str] = field(default_factory=dict)  # file -> the export recognised in it
    left_out: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> rule -> rows (refunds, ...)
    pseudonymised: int = 0  # distinct identifiers (emails, ...) turned into pseudonymous ids

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
        read += [f"inputs: {path} is a {name}" for path, name in self.formats.items()]
        read += [f"inputs: left out {sum(per.values())} row(s) of {path} by rule: {_by_count(per)}"
                 for path, per in self.left_out.items()]
        if self.pseudonymised:
            read.append(f"inputs: {self.pseudonymised} identifier(s) (emails, ...) turned into pseudonymous ids")
        if not self.bad:
            return "\n".join(read + ["inputs: no bad rows"])
        return "\n".join(read + [self.skipped(path) for path in self.bad] + [f"  {e}" for e in self.examples])

    def leave(self, where: str, reason: str) -> None:
        """A row a rule leaves out (a refunded order, an event kind not used): counted, not a bad row."""
        path = where.rsplit(":", 1)[0]
        per = self.left_out.setdefault(path, {})
        per[reason] = per.get(reason, 0) + 1

    def mostly_bad(self) -> list[str]:
        """Warnings for the files of which more than half the rows were skipped."""
        return [f"more than half the rows of {path} were skipped ({self.bad[path]} of {n}): check its columns and "
                "formats" for path, n in self.read.items() if self.bad.get(path, 0) * 2 > n]

    def skipped(self, path: str) -> str:
        return f"inputs: skipped {self.bad.get(path, 0)} bad row(s) in {path}: {self.why(path)}"

    def why(self, path: str) -> str:
        """One file's skipped rows by reason, most frequent first."""
        return _by_count(self.reasons.get(path, {}))

    def nothing_valid(self, path: Path | str, what: str) -> InputError:
        """The error for a file with no usable row: its rows' reasons, counted, and the first examples."""
        key = str(path)
        rules = self.left_out.get(key, {})
        if not self.bad.get(key) and rules:
            return InputError(f"{shown(path)}: no valid {what}: all {sum(rules.values())} rows left out by rule: "
                              f"{_by_count(rules)}")
        if not self.bad.get(key):
            return InputError(f"{shown(path)}: no valid {what} (the file has no rows)")
        first = [e for e in self.examples if e.startswith(key + ":")][:3]
        return InputError(f"{shown(path)}: no valid {what}: all {self.bad[key]} rows skipped: {self.why(key)}"
                          + "".join(f"\n  {e}" for e in first))

    def as_json(self) -> dict[str, Any]:
        """Counts only (no row content, which may name people): for the build's report file."""
        return {"rows_read": dict(self.read), "rows_skipped": dict(self.bad), "by_reason": self.reasons,
                "left_out_by_rule": self.left_out, "formats": dict(self.formats), "encodings": dict(self.encodings),
                "pseudonymised_ids": self.pseudonymised, "erased_shoppers_left_out": self.erased}


def _by_count(counts: dict[str, int]) -> str:
    """``"5 unknown product, 1 missing kind"``: counts by reason, the most frequent first."""
    return ", ".join(f"{c} {k}" for k, c in sorted(counts.items(), key=lambda x: -x[1]))


class FieldError(ValueError):
    """A bad value in a named column; the report says which column it is."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


DELIMITERS = (",", ";", "\t", "|")


def _delimiter(line: str) -> str:
    """The one of , ; tab | that splits the header line into the most fields (Excel writes ; in much of Europe)."""
    return max(DELIMITERS, key=lambda d: (line.count(d), d == ","))


def shown(path: Path | str) -> str:
    """A file as errors name it: its full path, or the URL as given."""
    return path if isinstance(path, str) else str(path.resolve())


def rows(path: Path | str, required: tuple[str, ...] = (), optional: tuple[str, ...] = (),
         report: Report | None = None, kind: str = "", mapping: dict[str, str] | None = None,
         engine: Any = None) -> Iterator[
        tuple[str, dict[str, Any]]]:
    """``(where, row)`` pairs from a .csv, .jsonl/.ndjson/.json or .parquet file (the text ones also gzipped,
    ``.csv.gz``), ``where`` being ``file:line``; the text's encoding is detected (``imports.files``) and noted
    in ``report``. Rows come in the build's columns: as the file has them, renamed by ``mapping`` (``--map``), or
    converted from an export recognised by its columns (``imports.formats``, for ``kind``).

    A CSV's header must name the ``required`` columns (``InputError`` with the expected header if not); a row
    with more or fewer fields than the header is reported with both counts (an unquoted comma, a short row).
    """
    if isinstance(path, str) or (kind == "events" and path.is_dir()):
        # an event directory (export-events' Parquet lake), here or at an object-store URL, read by the engine
        if kind != "events":
            raise InputError(f"{path}: only events are read from an object store (s3://...); give a file")
        from personalizer_adapters.engine.events import event_directory_rows

        yield from event_directory_rows(str(path), report, engine)
        return
    suffix = data_suffix(path)
    if not path.exists():
        raise InputError(f"{path.resolve()}: no such file")
    if suffix not in (".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json", ".parquet"):
        raise InputError(f"{path.resolve()}: unknown format {suffix!r} (use .csv, .jsonl, .json or .parquet, "
                         "each text one also as .gz)")
    try:
        with _raw_rows(path, suffix, report) as (header, raw):
            if mapping:
                header = None if header is None else header + [c for c, src in mapping.items() if src in header]
                raw = formats.mapped(mapping)(raw)
            elif (found := formats.recognise(kind, header or [])) is not None:
                if report is not None:
                    report.formats[str(path)] = found.name
                yield from found.convert(raw)
                return
            missing = [c for c in required if header is not None and c not in header]
            if missing:
                expected = ", ".join(required) + (f"[, {', '.join(optional)}]" if optional else "")
                raise InputError(f"{path.resolve()}:1: the header is {', '.join(header or []) or '(empty)'}; "
                                 f"expected {expected} (missing {', '.join(missing)}); or a recognised export, or "
                                 f"--map {kind}.COLUMN=YOURS")
            for where, row in raw:
                if "__header__" in row and any(row.get(h) is None for h in required):
                    given = sum(1 for h in row["__header__"] if row.get(h) is not None)
                    row = {"__error__": f"{given} field(s), the header has {len(row['__header__'])} "
                                        f"({', '.join(row['__header__'])})"}
                yield where, row
    except NotText as exc:
        raise InputError(str(exc)) from None
    except UnicodeDecodeError as exc:  # UTF-16 with a BOM that breaks off, say
        raise InputError(f"{path.resolve()}: not valid text in its encoding ({exc.reason})") from None


@contextmanager
def _raw_rows(path: Path, suffix: str, report: Report | None) -> Iterator[tuple[list[str] | None, Iterator[
        tuple[str, dict[str, Any]]]]]:
    """(the columns: a CSV's header, or the first JSON object's or Parquet row's fields; the rows as read)."""
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # imported only when a Parquet file is given

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow's errors share no base: one line, the file named
            raise InputError(f"{path.resolve()}: not a readable Parquet file ({type(exc).__name__})") from None
        yield list(parquet.schema_arrow.names), _parquet_rows(path, parquet)
        return
    with open_text(path) as (text, encoding):
        if report is not None:
            report.encodings[str(path)] = encoding
        if suffix in (".jsonl", ".ndjson", ".json"):
            objects = _json_rows(path, text)
            first = next(objects, None)
            if first is None:
                yield [], iter(())
                return
            yield [k for k in first[1] if not k.startswith("__")], itertools.chain([first], objects)
        else:
            first_line = text.readline()
            reader = csv.DictReader(itertools.chain([first_line], text), delimiter=_delimiter(first_line))
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            yield header, _csv_rows(path, reader, header)


def _parquet_rows(path: Path, parquet: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    n = 0
    for batch in parquet.iter_batches(batch_size=65536):
        for row in batch.to_pylist():
            n += 1
            yield f"{path}:row {n}", row


def _csv_rows(path: Path, reader: csv.DictReader[str], header: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    for row in reader:
        where = f"{path}:{reader.line_num}"
        extra = row.pop(None, None)
        if extra:
            yield where, {"__error__": f"{len(header) + len(extra)} field(s), the header has {len(header)} "
                                       f"({', '.join(header)}) - an unquoted comma?"}
            continue
        yield where, {**row, "__header__": header}  # a short row: None in its last columns (rows() checks)


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


def read_catalog(path: Path, report: Report, mapping: dict[str, str] | None = None,
                 currency: str = "EUR") -> list[dict[str, Any]]:
    """The catalog's products; a product from an export with variants keeps their SKUs (``skus``), which
    events may name instead of the product's id."""
    products: list[dict[str, Any]] = []
    seen: set[str] = set()
    table = list(rows(path, CATALOG_COLUMNS[:-1], ("image", "stock", "currency", "previous_price"), report,
                      "catalog", mapping))
    usable = [(w, r) for w, r in table if "__error__" not in r and "__left_out__" not in r]
    try:  # one convention per price column, from all its values (imports.values)
        price, was_price = (price_convention(((w, r.get(c)) for w, r in usable), c)
                            for c in ("price", "previous_price"))
    except AmbiguousColumn as exc:
        raise InputError(f"{path.resolve()}: {exc}") from None
    for where, row in table:
        if "__left_out__" in row:
            report.leave(where, row["__left_out__"])
            continue
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
                             "current": current, "currency": str(row.get("currency") or currency).strip(),
                             "stock": stock, "skus": row.get("__skus__", ())})
            seen.add(pid)
        except ValueError as exc:
            report.reject(where_column(where, row, exc), str(exc))
    if not products:
        raise report.nothing_valid(path, "product")
    return products


EVENT_KINDS_READ = (*EVENT_KINDS, "remove_from_cart")
# The events of files: the generated shop's columns, with each line's quantity and its order's key
EVENTS_READ = [("shopper", "i4"), ("product", "i4"), ("kind", "i1"), ("ts", "i8"), ("qty", "i4"), ("order", "i8")]


@dataclass
class Catalog:
    """How events name products: by id, by a variant's SKU, or (an order line's name) by title."""

    index: dict[str, int]
    skus: dict[str, int] = field(default_factory=dict)
    titles: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, products: list[dict[str, Any]]) -> Catalog:
        index = {p["id"]: i for i, p in enumerate(products)}
        skus = {sku: i for i, p in enumerate(products) for sku in p.get("skus", ()) if sku not in index}
        return cls(index, skus, {p["title"]: i for i, p in enumerate(products)})

    def find(self, product: str, name: str = "") -> int | None:
        found = self.index.get(product, self.skus.get(product))
        if found is None and name:  # "Title - Variant", as order exports name a line
            found = self.titles.get(name, self.titles.get(name.rsplit(" - ", 1)[0]))
        return found


def read_events(path: Path | str, products: dict[str, int] | Catalog, report: Report, people: People | None = None,
                mapping: dict[str, str] | None = None, engine: Any = None) -> tuple[list[str], np.ndarray]:  # type: ignore[type-arg]
    """Events as the build's structured array; shoppers are indexed in order of first appearance. A removal
    from the cart takes back that person's earlier adds of the item; ids that are emails or otherwise not
    plain ids become pseudonyms (``imports.identity``)."""
    catalog = products if isinstance(products, Catalog) else Catalog(products)
    people = people or People(None)
    shoppers: dict[str, int] = {}
    out: list[tuple[int, int, int, int, int, int]] = []
    removes: list[tuple[int, int, int]] = []
    stamps = Timestamps(shown(path))
    for where, row in rows(path, EVENT_COLUMNS, (), report, "events", mapping, engine):
        report.read[str(path)] = report.read.get(str(path), 0) + 1
        if "__left_out__" in row:
            report.leave(where, row["__left_out__"])
            continue
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            raw_shopper, kind = cell(row, "shopper"), cell(row, "kind")
            name = str(row.get("__product_name__") or "").strip()  # an order line's name, when its SKU is blank
            product = cell(row, "product") if not name else str(row.get("product") or "").strip()
            shopper = people.id(raw_shopper, "shopper")
            found = catalog.find(product, name)
            if found is None:
                raise FieldError("product", f"unknown product {product or name!r}")
            if kind not in EVENT_KINDS_READ:
                raise FieldError("kind", f"unknown kind {kind!r} (expected {', '.join(EVENT_KINDS_READ)})")
            ts = cell(row, "ts", lambda raw, at=where: stamps.seconds(raw, at))  # before the shopper is registered
            qty = _quantity(row.get("quantity"))
            key = order_key(str(row.get("order") or "").strip())
            person = shoppers.setdefault(shopper, len(shoppers))
            if kind == "remove_from_cart":
                removes.append((person, found, ts))
            else:
                out.append((person, found, EVENT_KINDS.index(kind), ts, qty, key))
        except (MixedUnits, NoIdKey) as exc:
            raise InputError(f"{shown(path)}: {exc}" if isinstance(exc, NoIdKey) else str(exc)) from None
        except ValueError as exc:
            report.reject(where_column(where, row, exc), str(exc))
    events = np.array(out, dtype=EVENTS_READ)
    return list(shoppers), _take_back(events, removes)


MAX_QUANTITY = 10_000


def _quantity(raw: Any) -> int:
    """A line's quantity: a whole number from 1 to ``MAX_QUANTITY``; none given: 1."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return 1
    if text.endswith(".0"):  # JSON and Parquet numbers
        text = text[:-2]
    if not ascii_digits(text) or not 1 <= int(text) <= MAX_QUANTITY:
        raise FieldError("quantity", f"bad quantity {text!r} (a whole number from 1 to {MAX_QUANTITY})")
    return int(text)


def _take_back(events: np.ndarray, removes: list[tuple[int, int, int]]) -> np.ndarray:  # type: ignore[type-arg]
    """The events without the cart adds a later removal of the same item by the same person took back."""
    if not removes:
        return events
    gone = np.array(removes, dtype=np.int64)
    pair = gone[:, 0] << 32 | gone[:, 1]
    order = np.lexsort((gone[:, 2], pair))  # by person-product, then time: each pair's latest removal last
    pairs, last_of = pair[order], gone[order, 2]
    ends = np.r_[pairs[1:] != pairs[:-1], True]
    pairs, last = pairs[ends], last_of[ends]
    key = events["shopper"].astype(np.int64) << 32 | events["product"].astype(np.int64)
    at = np.minimum(np.searchsorted(pairs, key), len(pairs) - 1)
    taken = (events["kind"] == EVENT_KINDS.index("add_to_cart")) & (pairs[at] == key) & (events["ts"] <= last[at])
    kept: np.ndarray = events[~taken]  # type: ignore[type-arg]
    return kept


def read_loyalty(path: Path | None, report: Report, people: People | None = None,
                 mapping: dict[str, str] | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    if path is None:
        return out
    people = people or People(None)
    for where, row in rows(path, ("id",), ("loyalty",), report, "shoppers", mapping):
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            sid = people.id(cell(row, "id"), "id")
            tier = str(row.get("loyalty") or "").strip()
            if tier not in ("", "silver", "gold", "platinum"):
                raise FieldError("loyalty", f"unknown loyalty tier {tier!r}")
            out[sid] = tier
        except NoIdKey as exc:
            raise InputError(f"{path.resolve()}: {exc}") from None
        except ValueError as exc:
            report.reject(where_column(where, row, exc), str(exc))
    return out


def load_shop(catalog: Path, events: Path | str, shoppers: Path | None, *, strict: bool, now: int | None,
              erased: set[str] | frozenset[str] = frozenset(), id_key: str | None = None,
              mapping: dict[str, dict[str, str]] | None = None, currency: str = "EUR",
              engine: Any = None) -> tuple[Shop, Report]:
    """Read and validate the inputs into the build's in-memory shop; tombstoned people are left out.
    ``id_key``: the key of the pseudonyms of ids that are not plain ids (emails); ``mapping``: ``--map``;
    ``currency``: the catalog's when its rows do not say (an export that has none); ``engine``: the build's
    (Spark reads an event directory itself)."""
    report = Report(strict)
    mapping = mapping or {}
    try:
        people = People(id_key)
    except NoIdKey as exc:
        raise InputError(str(exc)) from None
    products = read_catalog(catalog, report, mapping.get("catalog"), currency)
    ids, ev = read_events(events, Catalog.of(products), report, people, mapping.get("events"), engine)
    loyalty = read_loyalty(shoppers, report, people, mapping.get("shoppers"))
    report.pseudonymised = people.pseudonymised
    for p in products:
        p.pop("skus", None)
    ev.sort(order=["ts", "shopper"], kind="stable")
    drops = {i: p["current"] for i, p in enumerate(products) if p["current"] < p["price"]}
    # No tier given: None, so the build's loyalty rules (purchases and value) decide.
    whole = Shop(products, [{"id": i, "loyalty": loyalty.get(i)} for i in ids], ev, 0, drops)
    shop = whole.without(erased)
    report.erased = len(whole.shoppers) - len(shop.shoppers)
    if not len(ev):
        raise report.nothing_valid(events, "event")
    if not len(shop.events):
        raise InputError(f"{shown(events)}: every event is of an erased person")
    return replace(shop, now=now if now is not None else int(shop.events["ts"].max()) + 1), report
