"""The event lake: `personalizer export-events` (the store's events as Parquet by day, incremental) and the
build reading such a directory through DuckDB (personalizer_adapters.engine), late files and duplicates across
files included."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from personalizer.events import clean_event, message
from personalizer_adapters.batch.inputs import load_shop
from personalizer_adapters.store.eventlog import EventLog
from personalizer_adapters.store.export import export_events
from tests.test_events import NOW
from tests.test_exports import build, cli
from tests.test_imports import HEADER, catalog_rows

DAY = 86_400
T = (NOW // DAY - 3) * DAY + 3600  # three days before the beacons' arrival, 01:00 UTC


def beacon(customer: str | None, events: list[dict[str, Any]], visitor: str | None = None,
           flags: list[str] | None = None) -> dict[str, Any]:
    """A queue message received a minute after its last event (the edge clamps events into the day before)."""
    received = int(max(e["ts"] for e in events)) + 60
    return message(customer, visitor, flags or [], [clean_event(e, received) for e in events], received)


def views(person: str, day: int, n: int, tag: str) -> dict[str, Any]:
    return beacon(person, [{"id": f"{tag}{k}", "type": "view", "ts": T + day * DAY + k, "item": f"p{k % 8 + 1}"}
                           for k in range(n)])


def purchase(person: str, day: int, tag: str, qty: int) -> dict[str, Any]:
    return beacon(person, [{"id": tag, "type": "purchase", "ts": T + day * DAY + 500, "order": f"o-{tag}",
                            "items": [{"item": "p3", "quantity": qty, "price": "3.49"},
                                      {"item": "p5", "quantity": 1, "price": "3.49"}]}])


def files(lake: Path) -> list[str]:
    return sorted(str(p.relative_to(lake)) for p in lake.rglob("*.parquet"))


@pytest.fixture()
def log(tmp_path: Path) -> EventLog:
    (tmp_path / "origin").mkdir()
    log = EventLog(tmp_path / "origin" / "events.sqlite")
    log.ingest([views("c1", 0, 4, "a"), views("c2", 1, 3, "b"), purchase("c1", 1, "buy1", 2),
                beacon(None, [{"id": "v", "type": "view", "ts": T, "item": "p1"}], visitor="v9"),
                beacon("robot", [{"id": "r", "type": "view", "ts": T, "item": "p1"}], flags=["prefetch"])],
               lambda ids: set())
    return log


def test_export_is_by_day_incremental_and_idempotent(log: EventLog, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first = export_events(log, str(lake))
    days = sorted({f.split("/")[0] for f in files(lake)})
    assert first.files == 2 and len(days) == 2 and days[0].startswith("day=")
    table = pq.read_table(lake / days[1]).to_pylist()
    assert {(r["person"], r["type"], r["item"], r["quantity"], r["order"]) for r in table if r["type"] == "purchase"} \
        == {("c1", "purchase", "p3", 2, "o-buy1"), ("c1", "purchase", "p5", 1, "o-buy1")}
    everyone = [r for day in days for r in pq.read_table(lake / day).to_pylist()]
    assert {r["who"] for r in everyone} == {"customer", "visitor"} and "robot" not in {r["person"] for r in everyone}
    assert export_events(log, str(lake)).files == 0  # nothing new
    log.ingest([views("c3", 0, 2, "late")], lambda ids: set())  # arrives now, about three days ago
    late = export_events(log, str(lake))
    assert late.files == 1 and len(files(lake)) == 3
    assert len([f for f in files(lake) if f.startswith(days[0])]) == 2  # the late file in its own day
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3.49"] * 8))
    once = load_shop(catalog, lake, None, strict=True, now=None)[0]
    log.set_watermark(f"export:{lake.resolve()}", 0)  # a run cut short before its watermark moved
    export_events(log, str(lake))
    assert len(files(lake)) == 5  # the range written again: duplicates across files ...
    again = load_shop(catalog, lake, None, strict=True, now=None)[0]
    assert again.events.tolist() == once.events.tolist()  # ... which the reader takes once


def test_the_build_reads_the_lake_once_per_event(log: EventLog, tmp_path: Path) -> None:
    """A re-delivered file (the same range exported again under another name) and a late file: every
    customer event once, as a build from the same events in a CSV would read them."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3.49"] * 8))
    lake = tmp_path / "lake"
    export_events(log, str(lake))
    day_dir = sorted(lake.iterdir())[0]
    original = sorted(day_dir.glob("*.parquet"))[0]
    shutil.copy(original, day_dir / "events-copy-again.parquet")  # duplicates across files
    log.ingest([views("c3", 0, 2, "late")], lambda ids: set())
    export_events(log, str(lake))
    shop, report = load_shop(catalog, lake, None, strict=True, now=None)
    assert report.formats[str(lake)] == "Parquet event directory (4 files)"
    assert len(shop.events) == 4 + 3 + 2 + 2  # c1's views, c2's, c1's two purchase lines, c3's late views
    csv = tmp_path / "events.csv"
    csv.write_text("shopper,product,kind,ts,quantity,order\n" + "".join(
        f"{p},{i},{k},{t},{q},{o}\n" for p, i, k, t, q, o in
        [("c1", f"p{k % 8 + 1}", "view", T + k, 1, "") for k in range(4)]
        + [("c2", f"p{k % 8 + 1}", "view", T + DAY + k, 1, "") for k in range(3)]
        + [("c1", "p3", "purchase", T + DAY + 500, 2, "o-buy1"), ("c1", "p5", "purchase", T + DAY + 500, 1, "o-buy1")]
        + [("c3", f"p{k % 8 + 1}", "view", T + k, 1, "") for k in range(2)]))
    from_csv, _ = load_shop(catalog, csv, None, strict=True, now=None)
    def named(s: Any) -> list[tuple[Any, ...]]:
        return sorted((s.shoppers[e[0]]["id"], *e[1:]) for e in s.events.tolist())

    assert named(shop) == named(from_csv)


def test_export_events_and_build_from_the_command_line(log: EventLog, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(HEADER + catalog_rows(["3.49"] * 8))
    lake = tmp_path / "lake"
    made = cli("export-events", "--out", str(lake), "--data", str(tmp_path / "origin"), env={"PZ_DATABASE_URL": ""})
    assert made.returncode == 0 and "rows in 2 new file(s)" in made.stderr, made.stderr
    code, err, out = build(tmp_path, catalog, lake)
    assert code == 0 and f"{lake} is a Parquet event directory (2 files)" in err, err
    assert (out / "kv.json").exists()
    missing = cli("export-events", "--out", str(lake), "--data", str(tmp_path / "nothing"),
                  env={"PZ_DATABASE_URL": ""})
    assert missing.returncode == 2 and "nothing has been ingested yet" in missing.stderr


def test_export_and_build_through_an_object_store(log: EventLog, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """s3://: export-events writes the lake to an object store and the build reads it from there, with the
    records of a build from the same lake on disk. The store is moto's S3 server on loopback (a real bucket is
    out of reach here; it answers the S3 API's published contract, which pyarrow speaks)."""
    from moto.server import ThreadedMotoServer
    from pyarrow import fs

    from tests.test_edge_events import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):
            monkeypatch.setenv(name, value)
        fs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1",
                        allow_bucket_creation=True).create_dir("shop")
        url = f"s3://shop/events?endpoint_override=127.0.0.1%3A{port}&scheme=http&region=us-east-1"
        catalog = tmp_path / "catalog.csv"
        catalog.write_text(HEADER + catalog_rows(["3.49"] * 8))
        made = cli("export-events", "--out", url, "--data", str(tmp_path / "origin"), env={"PZ_DATABASE_URL": ""})
        assert made.returncode == 0 and "rows in 2 new file(s)" in made.stderr, made.stderr
        remote = tmp_path / "remote"
        remote.mkdir()
        code, err, out = build(remote, catalog, url)  # type: ignore[arg-type]
        assert code == 0 and "is a Parquet event directory (2 files)" in err, err
        lake = tmp_path / "lake"
        export_events(log, str(lake))
        local = tmp_path / "local"
        local.mkdir()
        code, err, here = build(local, catalog, lake)
        assert code == 0, err
        assert (out / "kv.json").read_bytes() == (here / "kv.json").read_bytes()
    finally:
        server.stop()
