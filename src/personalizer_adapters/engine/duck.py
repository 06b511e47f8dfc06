"""DuckDB: the batch's engine on one machine, in process; it spills to disk what does not fit in memory."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

from .base import EngineMissing


class DuckDBEngine:
    name = "duckdb"
    local = True  # in this process: results come back at no cost

    def __init__(self) -> None:
        try:
            import duckdb
        except ImportError as exc:  # the batch extra brings it
            raise EngineMissing("the DuckDB engine needs duckdb: pip install '.[batch]'") from exc
        self._spill = tempfile.TemporaryDirectory(prefix="pz-duckdb-")
        self.loaded: set[str] = set()  # Arrow tables registered (views), not tables of DuckDB's
        config: dict[str, str | bool | int | float | list[str]] = {"temp_directory": self._spill.name}
        if os.environ.get("PZ_DUCKDB_MEMORY"):  # DuckDB's memory limit (e.g. "1GB"): past it, it spills to disk
            config["memory_limit"] = os.environ["PZ_DUCKDB_MEMORY"]
        self.con = duckdb.connect(config=config)

    def load(self, name: str, table: Any) -> None:
        self.con.register(name, table)
        self.loaded.add(name)

    def load_parquet(self, name: str, path: str) -> int:
        import pyarrow.dataset as ds

        from personalizer_adapters.store.export import destination

        filesystem, root = destination(path)
        dataset = ds.dataset(root, format="parquet", partitioning="hive", filesystem=filesystem,
                             exclude_invalid_files=True, ignore_prefixes=[".", "_"])
        self.load(name, dataset)
        return len(dataset.files)

    def stage(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def fetch(self, sql: str) -> Any:
        return self.con.sql(sql).to_arrow_table()

    def batches(self, sql: str, size: int) -> Iterator[Any]:
        yield from self.con.sql(sql).to_arrow_reader(size)  # streamed: never the whole result at once

    def forget(self, names: list[str]) -> None:
        for name in names:
            if name in self.loaded:
                self.con.unregister(name)
                self.loaded.discard(name)
            else:
                self.con.execute(f"DROP TABLE IF EXISTS {name}")

    def close(self) -> None:
        self.con.close()
        self._spill.cleanup()
