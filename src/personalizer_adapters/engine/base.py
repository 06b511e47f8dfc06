"""The contract of a batch engine: tables in (Arrow), SQL in one dialect (DuckDB's), tables out (Arrow).

The build's relational stages (``stages``) are written once, as SQL in DuckDB's dialect. DuckDB runs them as
written, in process and out of core; Spark runs them transpiled by SQLGlot (``spark``), locally or on a
cluster. An engine keeps what a stage makes under the stage's name, for the stages after it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

ENGINES = ("duckdb", "spark")


class EngineMissing(RuntimeError):
    """The engine asked for cannot start here: what to install, in one line."""


class Engine(Protocol):
    name: str
    local: bool  # runs in this process (the co-occurrence is then a sparse product here: ``cooccurrence``)

    def load(self, name: str, table: pa.Table) -> None:
        """Make ``table`` readable by later SQL as ``name``."""

    def load_parquet(self, name: str, path: str) -> int:
        """A directory of Parquet files (``key=value`` partition folders) as ``name``; how many files it has."""

    def stage(self, name: str, sql: str) -> None:
        """Run ``sql`` (a SELECT) and keep its result as ``name``, for the SQL that follows."""

    def fetch(self, sql: str) -> pa.Table:
        """Run ``sql`` (a SELECT) and return its rows."""

    def batches(self, sql: str, size: int) -> Iterator[pa.RecordBatch]:
        """Run ``sql`` (a SELECT) and hand its rows over in batches of about ``size``, in its order."""

    def forget(self, names: list[str]) -> None:
        """Let go of these tables (loaded or staged): their memory is the next stage's."""

    def close(self) -> None:
        """Let go of everything the engine holds."""


def open_engine(name: str, *, progress: Callable[[str], None] = lambda _: None) -> Engine:
    """An engine by name: ``duckdb`` (the default) or ``spark`` (``PZ_SPARK_MASTER``, default ``local[2]``)."""
    if name == "duckdb":
        from .duck import DuckDBEngine

        return DuckDBEngine()
    if name == "spark":
        from .spark import SparkEngine

        return SparkEngine(progress=progress)
    raise ValueError(f"unknown engine {name!r}: one of {', '.join(ENGINES)}")


@contextmanager
def borrowed(engine: Engine | None, progress: Callable[[str], None] = lambda _: None) -> Iterator[Engine]:
    """The caller's engine, left open; or, given none, a DuckDB of the block's own, closed after it."""
    if engine is not None:
        yield engine
        return
    own = open_engine("duckdb", progress=progress)
    try:
        yield own
    finally:
        own.close()
