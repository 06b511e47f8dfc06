"""personalizer build: inputs in csv/jsonl/parquet, bad rows reported with file and line, rules, diff-friendliness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personalizer import codec, keys
from personalizer_adapters.batch.build import build
from personalizer_adapters.batch.inputs import InputError, load_shop
from personalizer_adapters.batch.seed import load_config
from personalizer_adapters.batch.seedgen import Shop, generate
from personalizer_adapters.kv.plan import Build, TargetState, make_plan, read_bulk
from tests.runtime.harness import ROOT

CFG = ROOT / "kv-seed" / "seed.toml"
# The generated shop at a third of the seed's size: plenty for the properties of the parallel stages and of
# incremental builds, at a third of the time.
MID = {"shoppers": 2000, "products": 800, "kv_profiles": 1500}
CATALOG = """id,category,title,price,url,image,stock,previous_price
p1,tents,Trail Tent,199.00,/p/p1,https://i/p1.jpg,5,249.00
p2,tents,Bivy,89.5,/p/p2,https://i/p2.jpg,3,
p3,stoves,Camp Stove,49.99,/p/p3,https://i/p3.jpg,0,
p4,stoves,Cook Set,39.99,/p/p4,https://i/p4.jpg,9,
p5,lights,Headlamp,29.99,/p/p5,https://i/p5.jpg,9,
p1,tents,Duplicate,1.00,/p/p1,https://i/p1.jpg,1,
p6,lights,No Price,,/p/p6,https://i/p6.jpg,1,
bad id,lights,Bad Id,1.00,/p/x,https://i/x.jpg,1,
"""


def events_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    t = 1_790_000_000
    for s in range(40):
        for j, p in enumerate(("p1", "p2", "p4", "p5") if s % 2 else ("p2", "p4", "p5", "p1")):
            rows.append({"shopper": f"u{s}", "product": p, "kind": "view", "ts": t + s * 100 + j})
        rows.append({"shopper": f"u{s}", "product": "p4", "kind": "purchase", "ts": t + s * 100 + 10})
    for n in range(6):  # u0 becomes a loyal buyer by the rules (orders and value)
        rows.append({"shopper": "u0", "product": "p1", "kind": "purchase", "ts": t + 5000 + n})
    rows.append({"shopper": "u1", "product": "p2", "kind": "add_to_cart", "ts": t + 20})  # an old cart
    return rows


BAD_EVENTS = ['{"shopper": "u9", "product": "nope", "kind": "view", "ts": 1}',
              '{"shopper": "u9", "product": "p1", "kind": "like", "ts": 1}',
              '{"shopper": "u9", "product": "p1", "kind": "view", "ts": "yesterday"}',
              "not json at all"]


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "catalog.csv").write_text(CATALOG)
    good = [json.dumps(r) for r in events_rows()]
    (tmp_path / "events.jsonl").write_text("\n".join(good[:3] + BAD_EVENTS + good[3:]) + "\n")
    table = pa.Table.from_pylist([{**r, "ts": str(r["ts"])} for r in events_rows()])
    pq.write_table(table, tmp_path / "events.parquet")
    with (tmp_path / "events.csv").open("w") as f:
        f.write("shopper,product,kind,ts\n" + "".join(f"{r['shopper']},{r['product']},{r['kind']},{r['ts']}\n"
                                                       for r in events_rows()))
    return {"catalog": tmp_path / "catalog.csv", "jsonl": tmp_path / "events.jsonl",
            "parquet": tmp_path / "events.parquet", "csv": tmp_path / "events.csv"}


def run_build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", "build", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def test_build_reports_every_bad_row_with_file_and_line(inputs: dict[str, Path], tmp_path: Path) -> None:
    """Bad catalog and event rows are skipped and each named with file:line; the build succeeds."""
    out = run_build("--catalog", str(inputs["catalog"]), "--events", str(inputs["jsonl"]), "--out",
                    str(tmp_path / "out"), "--config", str(CFG))
    assert out.returncode == 0, out.stderr
    err = out.stderr
    assert "skipped 3 bad row(s) in " + str(inputs["catalog"]) in err
    assert f"{inputs['catalog']}:7, column 1 (id): duplicate id 'p1'" in err
    assert f"{inputs['catalog']}:8, column 4 (price): missing price" in err
    assert "skipped 4 bad row(s) in " + str(inputs["jsonl"]) in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())  # counts only, by file and reason
    assert report["inputs"]["rows_skipped"] == {str(inputs["catalog"]): 3, str(inputs["jsonl"]): 4}
    assert report["inputs"]["by_reason"][str(inputs["catalog"])]["duplicate id"] == 1
    assert report["inputs"]["by_reason"][str(inputs["jsonl"])]["unknown product"] >= 1
    assert sum(report["inputs"]["by_reason"][str(inputs["jsonl"])].values()) == 4
    assert report["products"] > 0 and report["events"] > 0
    assert report["generation"] == Build.load(tmp_path / "out").generation
    assert "p1" not in json.dumps(report["inputs"])  # no row content
    assert f"{inputs['jsonl']}:4: unknown product 'nope'" in err and f"{inputs['jsonl']}:7: not valid JSON" in err
    built = Build.load(tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["generation"] == built.generation and set(manifest["records"]) == set(built.records)


def test_build_fails_on_the_first_bad_row_when_asked(inputs: dict[str, Path], tmp_path: Path) -> None:
    """--on-bad-row fail: exit 2 naming the row; nothing written."""
    out = run_build("--catalog", str(inputs["catalog"]), "--events", str(inputs["jsonl"]), "--out",
                    str(tmp_path / "out"), "--on-bad-row", "fail")
    assert out.returncode == 2 and f"{inputs['catalog']}:7, column 1 (id): duplicate id" in out.stderr
    assert not (tmp_path / "out").exists()


def test_formats_give_the_same_records(inputs: dict[str, Path]) -> None:
    """The same events as CSV, JSON Lines (with bad rows skipped) and Parquet build identical records."""
    cfg = load_config(CFG)
    built = [build(load_shop(inputs["catalog"], inputs[fmt], None, strict=False, now=1_790_010_000)[0], cfg)
             for fmt in ("csv", "jsonl", "parquet")]
    assert built[0].records == built[1].records == built[2].records


def test_rules_segments_loyalty_and_price_drops(inputs: dict[str, Path]) -> None:
    """Loyalty from purchases and value, a cart left behind, a previous_price drop, category affinity."""
    shop, _ = load_shop(inputs["catalog"], inputs["csv"], None, strict=False, now=1_790_100_000)
    built = build(shop, load_config(CFG))
    u0 = codec.decode(built.records[keys.profile("u0")], expect="profile").data
    u1 = codec.decode(built.records[keys.profile("u1")], expect="profile").data
    assert u0["loyalty"] == "gold" and "loyal-gold" in u0["segments"]  # 7 orders, 1,533.99: gold, not platinum
    assert "cart-left" in u1["segments"] and u1["cart"][0][0] == "p2"
    assert u1["segments"][0].startswith("likes-")
    inventory = codec.decode(built.records[keys.INVENTORY], expect="inventory").data
    assert inventory["prices"] == {"p1": 19900} and "p3" in inventory["out_of_stock"]
    p1 = next(c for c in codec.decode(built.records[keys.popular(built.generation)], expect="popular").data["cards"]
              if c[0] == "p1")
    assert p1[4] == 24900  # the card keeps the reference price; the inventory carries the drop


def test_missing_inputs_are_bad_input(tmp_path: Path) -> None:
    """An absent file or one with no valid row is an InputError (exit 2 from the CLI)."""
    with pytest.raises(InputError):
        load_shop(tmp_path / "none.csv", tmp_path / "none.jsonl", None, strict=False, now=None)
    (tmp_path / "c.csv").write_text("id,category,title,price,url,image\n")
    with pytest.raises(InputError, match="no valid product"):
        load_shop(tmp_path / "c.csv", tmp_path / "none.jsonl", None, strict=False, now=None)
    (tmp_path / "c.csv").write_text("id,category\n")
    with pytest.raises(InputError, match=r"c.csv:1: the header is id, category; expected id, category, title, "
                                         r"price, url\[, image, stock, currency, previous_price\] \(missing title"):
        load_shop(tmp_path / "c.csv", tmp_path / "none.jsonl", None, strict=False, now=None)


def test_excel_csv_with_bom_semicolons_and_spaces_builds(tmp_path: Path) -> None:
    """Excel's CSV: a UTF-8 BOM, ';' separators (European locales), categories with spaces: read as meant."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_bytes("\ufeffid;category;title;price;url;image\n".encode() + "".join(
        f"p{i};Dairy Eggs;Milk {i};1.{i:02d};/p/{i};https://img.test/{i}.jpg\n" for i in range(1, 9)).encode())
    events = tmp_path / "events.csv"
    events.write_bytes(b"\xef\xbb\xbfshopper;product;kind;ts\n" + "".join(
        f"s{n};p{(n + j) % 8 + 1};purchase;{1700000000 + n * 100 + j}\n" for n in range(6) for j in range(3)).encode())
    out = run_build("--catalog", str(catalog), "--events", str(events), "--out", str(tmp_path / "out"),
                    "--config", str(CFG), "--on-bad-row", "fail")
    assert out.returncode == 0, out.stderr
    assert "inputs: no bad rows" in out.stderr
    assert any(":seg:likes-dairy-eggs" in k for k in Build.load(tmp_path / "out").records)


@pytest.mark.parametrize("row, message", [
    ("p9,tents,Tent,12.50", "4 field(s), the header has 6 (id, category, title, price, url, image)"),
    ("p9,tents,Tent, large,12.50,/p/9,https://img.test/9.jpg",
     "7 field(s), the header has 6 (id, category, title, price, url, image) - an unquoted comma?"),
    ("p9,tents,Tent,twelve,/p/9,https://img.test/9.jpg", "column 4 (price): bad price 'twelve'"),
], ids=["short-row", "unquoted-comma", "bad-price"])
def test_a_bad_csv_row_says_where_and_what(tmp_path: Path, row: str, message: str) -> None:
    """Under --on-bad-row fail: exit 2 with file, line (and column), the field counts and the header."""
    (tmp_path / "c.csv").write_text("id,category,title,price,url,image\np1,tents,Trail Tent,199.00,/p/p1,"
                                    "https://i/p1.jpg\n" + row + "\n")
    (tmp_path / "e.csv").write_text("shopper,product,kind,ts\ns1,p1,view,1700000000\n")
    out = run_build("--catalog", str(tmp_path / "c.csv"), "--events", str(tmp_path / "e.csv"), "--out",
                    str(tmp_path / "out"), "--config", str(CFG), "--on-bad-row", "fail")
    assert out.returncode == 2 and f"{tmp_path / 'c.csv'}:3" in out.stderr and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "out").exists()


def test_changing_one_percent_of_shoppers_touches_about_one_percent_of_profiles() -> None:
    """Profiles of shoppers whose events did not change are reused byte for byte, so the push diff is small."""
    cfg = {**load_config(CFG), **MID}
    shop = generate(cfg)
    first = build(shop, cfg)
    rng = np.random.default_rng(7)
    who = rng.choice(len(shop.shoppers), len(shop.shoppers) // 100, replace=False)
    extra = np.array([(s, rng.integers(len(shop.products)), 0, shop.now - 100) for s in who], dtype=shop.events.dtype)
    changed = Shop(shop.products, shop.shoppers, np.concatenate([shop.events, extra]), shop.now)
    previous = {k[len("pz1:p:"):]: (first.digests[k[len("pz1:p:"):]], v)
                for k, v in first.records.items() if k.startswith("pz1:p:")}
    second = build(changed, cfg, previous)
    plan = make_plan(Build(second.generation, second.records), TargetState(Build(first.generation,
                                                                                   first.records).manifest()))
    profiles = [k for k in plan.writes if k.startswith("pz1:p:")]
    pushed = sum(1 for s in who if s < cfg["kv_profiles"])
    assert len(profiles) == pushed  # exactly the touched shoppers who are in KV
    assert 0.005 < len(profiles) / sum(1 for k in first.records if k.startswith("pz1:p:")) < 0.015


def catalog_without_stock(tmp_path: Path, categories: tuple[str, ...] = ("tents", "stoves", "lights")) -> Path:
    """The test catalog's products p1..p5 with no stock column, in the given categories."""
    rows = [f"p{i},{categories[(i - 1) % len(categories)]},Item {i},10.00,/p/p{i},https://i/p{i}.jpg"
            for i in range(1, 6)]
    path = tmp_path / "nostock.csv"
    path.write_text("id,category,title,price,url,image\n" + "\n".join(rows) + "\n")
    return path


def test_a_catalog_without_stock_means_everything_is_in_stock(inputs: dict[str, Path], tmp_path: Path) -> None:
    """No stock column: every product is sellable, so the popular and personal lists are not empty."""
    events = tmp_path / "events.csv"  # half the people saw p1, p2; the other half also p4, p5
    events.write_text("shopper,product,kind,ts\n" + "".join(
        f"u{s},{p},view,{1_790_000_000 + s * 10 + j}\n"
        for s in range(20) for j, p in enumerate(("p1", "p2") if s < 10 else ("p1", "p2", "p4", "p5"))))
    shop, _ = load_shop(catalog_without_stock(tmp_path), events, None, strict=False, now=1_790_100_000)
    built = build(shop, load_config(CFG))
    popular = codec.decode(built.records[keys.popular(built.generation)], expect="popular").data["cards"]
    assert {c[0] for c in popular} == {"p1", "p2", "p4", "p5"}  # every product anyone touched
    assert codec.decode(built.records[keys.INVENTORY], expect="inventory").data["out_of_stock"] == []
    u0 = codec.decode(built.records[keys.profile("u0")], expect="profile").data
    assert {c[0] for c in u0["cards"]} == {"p4", "p5"}  # what people like u0 went on to see
    assert not built.warnings


def test_an_all_out_of_stock_catalog_warns_loudly(inputs: dict[str, Path], tmp_path: Path) -> None:
    """Every product at stock 0: the build warns with counts, and fails (writing nothing) under --on-bad-row fail."""
    catalog = tmp_path / "empty-shelves.csv"
    catalog.write_text("\n".join(line.rsplit(",", 2)[0] + ",0," if n else line
                                 for n, line in enumerate(CATALOG.splitlines()[:6])) + "\n")
    warned = run_build("--catalog", str(catalog), "--events", str(inputs["csv"]), "--out", str(tmp_path / "a"))
    assert warned.returncode == 0, warned.stderr
    assert "warning: the popular list is empty: 5 of 5 products are out of stock (check the stock column)" \
        in warned.stderr
    assert "personal lists are empty" in warned.stderr
    failed = run_build("--catalog", str(catalog), "--events", str(inputs["csv"]), "--out", str(tmp_path / "b"),
                       "--on-bad-row", "fail")
    assert failed.returncode == 2 and "nothing written" in failed.stderr and not (tmp_path / "b").exists()


def test_categories_with_spaces_become_safe_segment_ids(inputs: dict[str, Path], tmp_path: Path) -> None:
    """Real category names ("Dairy Eggs", "Children's") build; segment ids are slugs of them."""
    names = ("Dairy Eggs", "Children's", "dairy-eggs")
    shop, _ = load_shop(catalog_without_stock(tmp_path, names), inputs["csv"], None, strict=False,
                        now=1_790_100_000)
    built = build(shop, load_config(CFG))
    segments = codec.decode(built.records[keys.MANIFEST], expect="manifest").data["segments"]
    assert {g for g in segments if g.startswith("likes-")} <= {"likes-children-s", "likes-dairy-eggs",
                                                                 "likes-dairy-eggs-2"}
    # without a campaigns file, no banners at all: never another shop's (the demo's) copy
    assert codec.decode(built.records[keys.banners(built.generation)], expect="banners").data["rules"] == []


COFFEE = """
[[campaigns]]
id = "everyone"
kind = "generic"
  [[campaigns.variants]]
  id = "beans"
  title = "Fresh beans, roasted Monday"
  body = "Single origins from our roastery."
  cta = "Shop coffee"
  url = "/c/coffee"
  image = "https://img.coffee.example/beans.jpg"

[[campaigns]]
id = "espresso-fans"
priority = 50
kind = "segment"
segment = "likes-dairy-eggs"
  [[campaigns.variants]]
  id = "espresso"
  title = "For your morning cup"
  body = "Milk-friendly roasts."
  cta = "See roasts"
  url = "/c/milk-roasts"
  image = "https://img.coffee.example/milk.jpg"
"""


def test_a_shops_build_has_only_its_own_campaigns(inputs: dict[str, Path], tmp_path: Path) -> None:
    """The banner record is the shop's campaigns file, compiled; a segment lists its own campaigns."""
    (tmp_path / "campaigns.toml").write_text(COFFEE)
    catalog = str(catalog_without_stock(tmp_path, ("Dairy Eggs",)))
    made = run_build("--catalog", catalog, "--events", str(inputs["csv"]), "--out", str(tmp_path / "out"),
                     "--campaigns", str(tmp_path / "campaigns.toml"))
    assert made.returncode == 0, made.stderr
    pairs = dict(read_bulk(tmp_path / "out" / "kv.json"))
    gen = (tmp_path / "out" / "generation.txt").read_text().strip()
    rules = codec.decode(pairs[keys.banners(gen)], expect="banners").data["rules"]
    assert [r["id"] for r in rules] == ["everyone", "espresso-fans"]
    assert not any("/img/banners/" in json.dumps(r) or "autumn" in json.dumps(r) for r in rules)
    segment = codec.decode(pairs[keys.segment(gen, "likes-dairy-eggs")], expect="segment").data
    assert segment["banners"] == ["espresso-fans"]
    (tmp_path / "bad.toml").write_text(COFFEE.replace('kind = "segment"', 'kind = "segmnt"'))
    refused = run_build("--catalog", catalog, "--events", str(inputs["csv"]), "--out", str(tmp_path / "bad"),
                        "--campaigns", str(tmp_path / "bad.toml"))
    assert refused.returncode == 2 and "unknown trigger 'segmnt'" in refused.stderr
    assert "bad.toml:16: campaign 'espresso-fans' kind:" in refused.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(("names", "ids"), [
    pytest.param(["Dairy Eggs", "dairy eggs", "dairy-eggs"], ["dairy-eggs", "dairy-eggs-2", "dairy-eggs-3"],
                 id="collisions"),
    pytest.param(["ski", "Frozen  Foods!"], ["ski", "frozen-foods"], id="slugs-kept-and-made"),
    pytest.param(["!!!", "Ünïcode"], ["category", "n-code"], id="nothing-left"),
    pytest.param(["x" * 80], ["x" * 48], id="long"),
])
def test_category_ids_are_distinct_ids(names: list[str], ids: list[str]) -> None:
    """Each category name maps to a distinct id short enough for "likes-" + id; collisions get a suffix."""
    from personalizer_adapters.batch.model import category_ids

    assert category_ids(names) == ids
    assert all(keys.is_valid_id(f"likes-{i}") for i in ids)


@pytest.mark.parametrize("row", [
    pytest.param("p9,tents,Sup,1²,/p/p9,https://i/p9.jpg,1", id="superscript-price"),
    pytest.param("p9,tents,Sup,1.00,/p/p9,https://i/p9.jpg,٣", id="arabic-indic-stock"),
    pytest.param("p9,tents,Sup,1.00,/p/p9,https://i/p9.jpg,many", id="word-stock"),
])
def test_numbers_are_ascii_digits_only(tmp_path: Path, row: str) -> None:
    """A Unicode digit that int() refuses is a bad row with its line, never a crash."""
    (tmp_path / "c.csv").write_text(CATALOG.splitlines()[0] + "\n" + row + "\n" + CATALOG.splitlines()[1] + "\n")
    from personalizer_adapters.batch.inputs import Report, read_catalog

    report = Report(strict=False)
    assert [p["id"] for p in read_catalog(tmp_path / "c.csv", report)] == ["p1"]
    assert report.examples[0].startswith(f"{tmp_path / 'c.csv'}:2, column ")
    assert ": bad " in report.examples[0]




def test_profiles_are_the_same_bytes_on_any_number_of_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The profile stage forked over two workers gives the outcomes of one process, in shopper order."""
    from personalizer_adapters.batch import profiles
    from personalizer_adapters.batch.build import by_shopper
    from personalizer_adapters.batch.profiles import ProfileJob, profile_outcomes

    monkeypatch.setattr(profiles, "CHUNK", 300)  # several chunks per worker, as in a large build

    cfg = {**load_config(CFG), **MID}
    shop = generate(cfg)
    job = ProfileJob(shop, build(shop, cfg).model, by_shopper(shop.events, len(shop.shoppers)), {}, 1200, shop.now)
    serial = [o for _, chunk in profile_outcomes(job, workers=1) for o in chunk]
    forked = [o for _, chunk in profile_outcomes(job, workers=2, parallel_min=0) for o in chunk]
    assert len(serial) == len(shop.shoppers) and serial == forked
    assert sum(o.record is not None for o in forked) == 1200


def test_outputs_written_with_the_store_in_a_child_are_the_outputs_written_in_turn(tmp_path: Path) -> None:
    """A large build writes the origin's store in a forked child beside the KV files: the same files, the same
    store; and what goes wrong in the child is raised by the build, as it would be in one process."""
    import sqlite3
    from contextlib import closing

    from personalizer_adapters.batch.seed import write_outputs

    cfg = {**load_config(CFG), **MID}
    shop = generate(cfg)
    built = build(shop, cfg)
    for name, alongside_min in (("turn", 10**12), ("child", 0)):
        write_outputs(shop, built, tmp_path / name, alongside_min=alongside_min)
    for name in ("kv.json", "manifest.json", "profiles.digests.json", "generation.txt", "origin/model.json"):
        assert (tmp_path / "turn" / name).read_bytes() == (tmp_path / "child" / name).read_bytes(), name
    dumps = []
    for name in ("turn", "child"):
        with closing(sqlite3.connect(tmp_path / name / "origin" / "store.sqlite")) as db:
            dumps.append([db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                          for t in ("shoppers", "events", "records", "meta", "artifacts")])
    assert len(dumps[0][1]) == len(shop.events) and dumps[0] == dumps[1]
    for alongside_min in (10**12, 0):
        with pytest.raises(ValueError, match="postgresql://"):
            write_outputs(shop, built, tmp_path / "bad", database="mysql://x", alongside_min=alongside_min)


def test_an_oversized_profile_is_trimmed_to_the_edge_bound() -> None:
    """A profile whose encoding passes MAX_PROFILE_BYTES is shortened until it fits, and says so."""
    from personalizer import codec as core_codec
    from personalizer_adapters.batch.profiles import fit_profile

    card = ["p1", "T" * 290, "/p/p1", "https://i/p1.jpg", 100, "EUR", "c" * 190]
    big = {"id": "u1", "segments": ["new"], "cards": [card] * 48, "recent": [card] * 48,
           "bought": [f"p{n:06d}" for n in range(5000)], "cart": [], "cart_updated_at": 0, "loyalty": "",
           "categories": ["c"], "watched": ["p1"]}
    record, trimmed = fit_profile(big, 1)
    assert trimmed and record is not None and len(record) <= core_codec.MAX_PROFILE_BYTES
    small, was_trimmed = fit_profile({**big, "cards": [card], "recent": [], "bought": []}, 1)
    assert not was_trimmed and small is not None
    assert core_codec.decode(record, expect="profile").data["cards"]  # still useful after trimming


def test_a_lifetime_of_orders_keeps_the_profile_bounded(tmp_path: Path) -> None:
    """A shopper with 3,000 distinct purchases: the build pushes a profile within the edge's bound."""
    from personalizer import codec as core_codec
    from personalizer_adapters.batch.model import MAX_BOUGHT

    (tmp_path / "c.csv").write_text("id,category,title,price,url,image\n" + "".join(
        f"p{i},cat,Item {i},1.00,/p/p{i},https://i/p{i}.jpg\n" for i in range(3000)))
    (tmp_path / "e.csv").write_text("shopper,product,kind,ts\n" + "".join(
        f"u1,p{i},purchase,{1_790_000_000 + i}\n" for i in range(3000)) + "u2,p1,view,1790000000\n")
    shop, _ = load_shop(tmp_path / "c.csv", tmp_path / "e.csv", None, strict=False, now=None)
    built = build(shop, {**load_config(CFG), "ease_max_items": 0})  # cosine neighbours: 3,000 items, no EASE
    record = built.records[keys.profile("u1")]
    assert len(record) <= core_codec.MAX_PROFILE_BYTES
    bought = core_codec.decode(record, expect="profile").data["bought"]
    assert len(bought) == MAX_BOUGHT and "p2999" in bought and "p0" not in bought  # the most recent kept


def test_the_generation_changes_when_only_the_catalog_does(inputs: dict[str, Path], tmp_path: Path) -> None:
    """Same events and config, one title changed: a new generation id (same inputs: the same id)."""
    cfg = load_config(CFG)
    first = build(load_shop(inputs["catalog"], inputs["csv"], None, strict=False, now=1_790_100_000)[0], cfg)
    again = build(load_shop(inputs["catalog"], inputs["csv"], None, strict=False, now=1_790_100_000)[0], cfg)
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(CATALOG.replace("Trail Tent", "Trail Tent 2"))
    changed = build(load_shop(renamed, inputs["csv"], None, strict=False, now=1_790_100_000)[0], cfg)
    assert first.generation == again.generation != changed.generation


def test_every_command_shows_an_example_in_its_help() -> None:
    """`personalizer --help` lists an example per command; each command's --help has its own."""
    from personalizer_adapters.cli import EXAMPLES

    top = subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert top.returncode == 0 and all(example in top.stdout for example in EXAMPLES.values())
    for command, example in EXAMPLES.items():
        own = subprocess.run([sys.executable, "-m", "personalizer_adapters.cli", command, "--help"],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert own.returncode == 0 and f"example: {example}" in " ".join(own.stdout.split()), command


def test_kv_json_is_wranglers_bulk_format_whatever_the_key() -> None:
    """kv.json's lines are made without json.dumps per pair: still one compact JSON array, keys escaped."""
    import base64

    from personalizer_adapters.batch.seed import bulk_json

    records = {"pz1:p:u1": b"\x00\x01", 'odd "key" \\ é \u2028\n': b"\xff" * 70, "empty": b""}
    text = bulk_json(records)
    assert json.loads(text) == [{"key": k, "value": base64.b64encode(records[k]).decode(), "base64": True}
                                for k in sorted(records)]
    assert text.isascii() and text.count("\n") == len(records) + 2  # "[", a line a pair, "]"
