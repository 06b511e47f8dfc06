"""Shops' files as they are (personalizer_adapters.imports): encodings, compression, JSON forms, prices and
timestamps as written, errors that always give their reasons."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from personalizer_adapters.batch.inputs import Report, load_shop, read_catalog
from personalizer_adapters.imports.values import AmbiguousColumn, Convention, Timestamps, price_convention
from tests.test_build import run_build

CFG = "kv-seed/seed.toml"
HEADER = "id;category;title;price;url;image\n"
T0 = 1_790_000_000


def catalog_rows(prices: list[str], sep: str = ";") -> str:
    return "".join(sep.join([f"p{i}", "Crèmerie", f"Crème brûlée {i}", price, f"/p/{i}", f"https://img.test/{i}.jpg"])
                   + "\n" for i, price in enumerate(prices, 1))


def events_csv(n: int = 8, unit: int = 1) -> str:
    return "shopper,product,kind,ts\n" + "".join(
        f"s{k % 4},p{k % n + 1},{'purchase' if k % 3 == 0 else 'view'},{(T0 + k * 60) * unit}\n" for k in range(24))


def build(tmp_path: Path, catalog: Path, events: Path, *more: str) -> tuple[int, str]:
    out = run_build("--catalog", str(catalog), "--events", str(events), "--out", str(tmp_path / "out"),
                    "--config", CFG, *more)
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, out.stderr


def test_excels_windows_1252_csv_with_decimal_commas_builds(tmp_path: Path) -> None:
    """What "Save as CSV" writes on a French PC: Windows-1252, ';' separators, decimal commas, euro signs."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_bytes((HEADER + catalog_rows(["3,49", "12,00 €", "€1.234,50", "0,99"] * 2)).encode("cp1252"))
    events = tmp_path / "events.csv"
    events.write_text(events_csv())
    code, err = build(tmp_path, catalog, events, "--on-bad-row", "fail")
    assert code == 0, err
    assert f"{catalog} as Windows-1252" in err and f"{events} as UTF-8" in err
    products = read_catalog(catalog, Report(strict=True))
    assert [p["current"] for p in products[:4]] == [349, 1200, 123450, 99]
    assert products[0]["title"] == "Crème brûlée 1" and products[0]["category"] == "Crèmerie"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["inputs"]["encodings"][str(catalog)] == "Windows-1252"


@pytest.mark.parametrize("encoding, bom, label", [("utf-16-le", b"\xff\xfe", "UTF-16 LE"),
                                                  ("utf-16-be", b"\xfe\xff", "UTF-16 BE"),
                                                  ("utf-8", b"\xef\xbb\xbf", "UTF-8 with BOM")])
def test_unicode_text_with_a_byte_order_mark(tmp_path: Path, encoding: str, bom: bytes, label: str) -> None:
    """Excel's "Unicode text" (UTF-16 with its BOM, tab-separated) and "CSV UTF-8" (a BOM) read as meant."""
    catalog = tmp_path / "catalog.txt"
    catalog.write_bytes(bom + (HEADER + catalog_rows(["3.49", "4.99"] * 4)).replace(";", "\t").encode(encoding))
    report = Report(strict=True)
    products = read_catalog(catalog, report)
    assert [p["title"] for p in products][:2] == ["Crème brûlée 1", "Crème brûlée 2"]
    assert report.encodings == {str(catalog): label}


def test_gzip_and_both_json_forms_give_the_same_shop(tmp_path: Path) -> None:
    """events.csv.gz, events.json (JSON lines) and events.json (one array): the same events as the plain CSV."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3.49"] * 8))
    plain = tmp_path / "events.csv"
    plain.write_text(events_csv())
    zipped = tmp_path / "events.csv.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    rows = [dict(zip(["shopper", "product", "kind", "ts"], line.split(","), strict=True))
            for line in plain.read_text().splitlines()[1:]]
    lines, array = tmp_path / "lines" / "events.json", tmp_path / "array" / "events.json"
    for path in (lines, array):
        path.parent.mkdir()
    lines.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    array.write_bytes(gzip.compress(json.dumps(rows).encode()))  # a gzipped file whatever its name says
    shops = [load_shop(catalog, events, None, strict=True, now=None)[0] for events in (plain, zipped, lines, array)]
    assert len(shops[0].events) == 24
    for shop in shops[1:]:
        assert shop.events.tolist() == shops[0].events.tolist()


@pytest.mark.parametrize("unit", [1, 1000, 1_000_000], ids=["seconds", "milliseconds", "microseconds"])
def test_timestamps_in_any_unit_mean_the_same_time(tmp_path: Path, unit: int) -> None:
    """GA4's microseconds no longer make a generation 55 million years ahead: the unit is told by magnitude."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3.49"] * 8))
    events = tmp_path / "events.csv"
    events.write_text(events_csv(unit=unit))
    shop, _ = load_shop(catalog, events, None, strict=True, now=None)
    assert int(shop.events["ts"].min()) == T0 and shop.now == T0 + 23 * 60 + 1


def test_a_file_that_mixes_timestamp_units_is_refused_in_one_line(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3.49"] * 8))
    events = tmp_path / "events.csv"
    events.write_text(events_csv() + f"s1,p1,view,{T0 * 1000}\n")
    code, err = build(tmp_path, catalog, events)
    assert code == 2 and "timestamps in seconds" in err and "and in milliseconds" in err and f"{events}:26" in err


@pytest.mark.parametrize("raw, seconds", [
    ("1790000000", T0), ("1790000000.75", T0), (1790000000.5, T0), ("1790000000123", T0),
    ("2026-09-21T14:13:20Z", T0), ("2026-09-21T16:13:20+02:00", T0), ("2026-09-21 14:13:20", T0),
])
def test_timestamp_forms(raw: object, seconds: int) -> None:
    assert Timestamps("f").seconds(raw, "f:1") == seconds


@pytest.mark.parametrize("values, cents", [
    (["3.49", "12", "1,234.50"], [349, 1200, 123450]),
    (["3,49", "12", "1.234,50"], [349, 1200, 123450]),
    (["€3.49", "$ 12.00", "EUR 7.5", "7,50 €", "CHF 1'234.50"], None),  # mixes ',' and '.' decimals: refused
    (["€3.49", "$ 12.00", "EUR 7.5", "CHF 1'234.50", "1 234.00"], [349, 1200, 750, 123450, 123400]),
    (["1,234", "2,000"], [123400, 200000]),  # a mark before three digits separates thousands
    (["3,49", "1,234"], None),  # ',' as decimals and as thousands: refused
    (["1,234", "1.234"], None),
    ([3.49, 12, "7"], [349, 1200, 700]),  # numbers from JSON or Parquet
])
def test_prices_as_shops_write_them(values: list[object], cents: list[int] | None) -> None:
    pairs = [(f"f:{n}", v) for n, v in enumerate(values, 2)]
    if cents is None:
        with pytest.raises(AmbiguousColumn, match=r"mixes decimal conventions .* at f:\d+.* at f:\d+"):
            price_convention(pairs, "price")
        return
    convention = price_convention(pairs, "price")
    assert [convention.cents(v) for v in values] == cents


def test_an_ambiguous_price_column_is_refused_with_its_reason(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3,49", "3.49"] * 4))
    events = tmp_path / "events.csv"
    events.write_text(events_csv())
    code, err = build(tmp_path, catalog, events)
    assert code == 2 and "the price column mixes decimal conventions ('3,49' at" in err


@pytest.mark.parametrize("text", ["3.499", "-3", "3.4.9,1", "abc"])
def test_prices_that_are_no_price(text: str) -> None:
    with pytest.raises(ValueError, match="price"):
        Convention(".").cents(text)


@pytest.mark.parametrize("content, says", [
    (b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), "an Excel workbook (.xlsx): save the sheet as CSV"),
    (b"%PDF-1.7\n" + bytes(50), "a PDF document"),
    (bytes(range(256)) * 4, "not a text file (NUL bytes"),
    (b"\x1f\x8b\x08\x00broken gzip", "cannot be read"),
    (b"PAR1" + bytes(40), "give it the .parquet suffix"),
], ids=["xlsx", "pdf", "binary", "broken-gzip", "parquet-named-csv"])
def test_non_text_input_is_one_line_naming_the_file(tmp_path: Path, content: bytes, says: str) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_bytes(content)
    events = tmp_path / "events.csv"
    events.write_text(events_csv())
    code, err = build(tmp_path, catalog, events)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and str(catalog) in lines[0] and says in lines[0], err


def test_no_valid_event_says_why_with_counts(tmp_path: Path) -> None:
    """The old "no valid event" with no reason at all: now the reasons, counted, and the first rows."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3.49"] * 8))
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps({"shopper": "s1", "product": f"x{i}", "kind": "view", "ts": T0})
                                for i in range(5)) + '\n{"shopper": "s1"}\n')
    code, err = build(tmp_path, catalog, events)
    assert code == 2 and "no valid event: all 6 rows skipped: 5 unknown product, 1 missing kind" in err, err
    assert f"{events}:1, column" not in err and f"{events}:1: unknown product 'x0'" in err


def test_a_product_without_an_image_keeps_its_events(tmp_path: Path) -> None:
    """The old "missing image" dropped the product and then every event for it: now it has no image."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3.49"] * 8).replace("https://img.test/1.jpg", ""))
    events = tmp_path / "events.csv"
    events.write_text(events_csv())
    shop, report = load_shop(catalog, events, None, strict=True, now=None)
    assert shop.products[0]["image"] == "" and len(shop.events) == 24 and not report.bad


def test_more_than_half_the_events_skipped_warns(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3.49"] * 8))
    events = tmp_path / "events.csv"
    events.write_text(events_csv() + "".join(f"s1,nope{i},view,{T0}\n" for i in range(30)))
    code, err = build(tmp_path, catalog, events)
    assert code == 0 and f"warning: more than half the rows of {events} were skipped (30 of 54)" in err
    code, err = build(tmp_path, catalog, events, "--on-bad-row", "fail")
    assert code == 2 and "unknown product 'nope0'" in err
