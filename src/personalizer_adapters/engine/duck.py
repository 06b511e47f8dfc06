"""DuckDB: the batch's engine on one machine, in process; it spills to disk what does not fit in memory."""

from __future__ import annotations

import tempfile
from typing import Any

from .base import EngineMissing


class DuckDBEngine:
    name = "duckdb"
    local = True  # in this process: results come back at no cost

    def __init__(self, memory_limit: str | None = None) -> None:
        try:
            import duckdb
        except ImportError as exc:  # the batch extra brings it
            raise EngineMissing("the DuckDB engine needs duckdb: pip install '.[batch]'") from exc
        self._spill = tempfile.TemporaryDirectory(prefix="pz-duckdb-")
        self.con = duckdb.connect(config={"temp_directory": self._spill.name,
                                          **({"memory_limit": memory_limit} if memory_limit else {})})

    def load(self, name: str, table: Any) -> None:
        self.con.register(name, table)

    def stage(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def fetch(self, sql: str) -> Any:
        return self.con.sql(sql).to_arrow_table()

    def close(self) -> None:
        self.con.close()
        self._spill.cleanup()
