"""The store's events as Parquet, partitioned by day (``personalizer export-events``): what the batch reads on
an engine (``personalizer_adapters.engine``) instead of the store itself, and what a data team loads into its
lake.

Incremental: each run appends the events stored since the last run into the destination
(a directory, or an object-store URL that pyarrow's file systems open, such as ``s3://bucket/events/``), one
file per day and run, named by the range of the log's sequence numbers it holds, and then moves the
destination's watermark (in the store, so any host may run the next export). A run cut short before its
watermark moved writes that range again next time, in files of other names: readers take each event once by
its key (who, person, event_id, line), as the build does (``engine.events``). An event that arrives late lands
in its own day's partition, in a new file. One row per event, one per line for a purchase:

    day=YYYY-MM-DD/events-<first seq>-<last seq>.parquet
    who, person, event_id, line, type, item, ts, quantity, order, received

Robots' and prefetches' events and anonymous senders' are left out; views, cart changes and purchases are kept
(the events a profile is made of).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .base import EventStore

KINDS = ("view", "add_to_cart", "remove_from_cart", "purchase")
COLUMNS = ("who", "person", "event_id", "line", "type", "item", "ts", "quantity", "order", "received")


@dataclass(frozen=True)
class Exported:
    files: int
    rows: int
    seq: int  # the watermark after the run
    seconds: float


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([("who", pa.string()), ("person", pa.string()), ("event_id", pa.string()),
                      ("line", pa.int16()), ("type", pa.string()), ("item", pa.string()), ("ts", pa.float64()),
                      ("quantity", pa.int32()), ("order", pa.string()), ("received", pa.int64())])


def event_rows(e: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A stored event as export rows (a purchase: one per line); none for what a profile is not made of."""
    if e["robot"] or e["who"] == "anonymous" or e["type"] not in KINDS:
        return []
    base = (e["who"], e["person"], e["id"])
    if e["type"] == "purchase":
        return [(*base, n, "purchase", line["item"], float(e["ts"]), int(line.get("quantity") or 1),
                 str(e.get("order") or ""), int(e["received"])) for n, line in enumerate(e["items"])]
    return [(*base, 0, e["type"], e["item"], float(e["ts"]), 1, "", int(e["received"]))]


def destination(out: str) -> tuple[Any, str]:
    """(pyarrow file system, root path) of a directory or an object-store URL."""
    from pyarrow import fs

    if "://" in out:
        filesystem, root = fs.FileSystem.from_uri(out)
        return filesystem, str(root)
    from pathlib import Path

    return fs.LocalFileSystem(), str(Path(out).resolve())


def export_events(log: EventStore, out: str, *, since: float | None = None, batch: int = 50_000,
                  progress: Callable[[str], None] = lambda _: None) -> Exported:
    """Append the events stored since the destination's watermark (``since``: none older than this, epoch
    seconds) to ``out``; see the module."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    filesystem, root = destination(out)
    remote = "://" in out
    mark = f"export:{out if remote else root}"
    seq = log.watermark(mark)
    files = rows = 0
    while True:
        chunk = log.after(seq, batch)
        if not chunk:
            break
        first, last = chunk[0][0], chunk[-1][0]
        by_day: dict[str, list[tuple[Any, ...]]] = {}
        for _, e in chunk:
            if since is not None and e["ts"] < since:
                continue
            day = datetime.fromtimestamp(float(e["ts"]), UTC).strftime("%Y-%m-%d")
            by_day.setdefault(day, []).extend(event_rows(e))
        for day, day_rows in sorted(by_day.items()):
            if not day_rows:
                continue
            table = pa.Table.from_pylist([dict(zip(COLUMNS, r, strict=True)) for r in day_rows], schema=_schema())
            directory = f"{root}/day={day}"
            filesystem.create_dir(directory, recursive=True)
            name = f"{directory}/events-{first:012d}-{last:012d}.parquet"
            tmp = name if remote else name + ".tmp"  # a local file appears whole, as an object's PUT does
            pq.write_table(table, tmp, filesystem=filesystem)
            if tmp != name:
                filesystem.move(tmp, name)
            files += 1
            rows += len(day_rows)
        seq = last
        log.set_watermark(mark, seq)
        progress(f"export-events: {rows:,} rows in {files} file(s), up to event #{seq} "
                 f"({time.perf_counter() - t0:.1f}s)")
    return Exported(files, rows, seq, time.perf_counter() - t0)
