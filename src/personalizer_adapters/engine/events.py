"""An event directory (``personalizer export-events``' layout: ``day=YYYY-MM-DD/*.parquet``, or any Parquet
files with its columns) read by the build's engine with one statement (DuckDB here, streamed; Spark where it
runs): customers' events once each, whatever file they are in (a re-exported range, a late file), in time
order, as the build's event rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import Engine, borrowed

# One dialect (DuckDB's); each event line kept once, the first received.
CLEAN = """
SELECT person AS shopper, item AS product, type AS kind, ts, quantity, "order", event_id, line
FROM raw
WHERE who = 'customer'
QUALIFY row_number() OVER (PARTITION BY who, person, event_id, line ORDER BY received, ts) = 1
ORDER BY ts, person, event_id, line
"""
BATCH = 65_536


def _row(path: str, shopper: Any, product: Any, kind: Any, ts: Any, quantity: Any, order: Any, event_id: Any,
         line: Any) -> tuple[str, dict[str, Any]]:
    return (f"{path}: event {event_id}" + (f" line {line + 1}" if line else ""),
            {"shopper": shopper, "product": product, "kind": kind, "ts": ts, "quantity": quantity, "order": order})


def event_directory_rows(path: str, report: Any = None,
                         engine: Engine | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` pairs in the build's event columns; ``where`` names the file set and the event.
    ``engine``: the build's, which reads the directory (Spark reads it there); none, a DuckDB of its own."""
    with borrowed(engine) as on:
        try:
            files = on.load_parquet("raw", path)
            if report is not None:
                report.formats[path] = f"Parquet event directory ({files} files)"
            for batch in on.batches(CLEAN, BATCH):
                for values in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                    yield _row(path, *values)
        finally:
            on.forget(["raw"])
