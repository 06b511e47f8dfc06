"""An event directory (``personalizer export-events``' layout: ``day=YYYY-MM-DD/*.parquet``, or any Parquet
files with its columns) read by DuckDB: customers' events once each, whatever file they are in (a re-exported
range, a late file), in time order, as the build's event rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# One dialect (DuckDB's); each event line kept once, the first received.
CLEAN = """
SELECT person AS shopper, item AS product, type AS kind, ts, quantity, "order", event_id, line
FROM raw
WHERE who = 'customer'
QUALIFY row_number() OVER (PARTITION BY who, person, event_id, line ORDER BY received, ts) = 1
ORDER BY ts, person, event_id, line
"""
BATCH = 65_536


def event_directory_rows(path: str, report: Any = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` pairs in the build's event columns; ``where`` names the file set and the event."""
    import duckdb
    import pyarrow.dataset as ds

    from personalizer_adapters.store.export import destination

    filesystem, root = destination(path)
    dataset = ds.dataset(root, format="parquet", partitioning="hive", filesystem=filesystem,
                         exclude_invalid_files=True, ignore_prefixes=[".", "_"])
    if report is not None:
        report.formats[path] = f"Parquet event directory ({len(dataset.files)} files)"
    con = duckdb.connect()
    try:
        con.register("raw", dataset)
        result = con.execute(CLEAN)
        while chunk := result.fetchmany(BATCH):
            for shopper, product, kind, ts, quantity, order, event_id, line in chunk:
                yield (f"{path}: event {event_id}" + (f" line {line + 1}" if line else ""),
                       {"shopper": shopper, "product": product, "kind": kind, "ts": ts, "quantity": quantity,
                        "order": order})
    finally:
        con.close()
