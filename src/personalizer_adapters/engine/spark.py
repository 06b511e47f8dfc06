"""Apache Spark through PySpark: the same stages as DuckDB's, transpiled from DuckDB's dialect by SQLGlot.

Locally (``local[2]``, the default) or on a cluster: ``PZ_SPARK_MASTER`` names the master, and a job submitted
to EMR Serverless, Glue, Dataproc or Databricks gets its session from the platform (``getOrCreate``). One
session per process: the tests share it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from typing import Any

from .base import EngineMissing

SPARK_HELP = "pip install '.[spark]' and Java 17 or later (Debian: apt-get install openjdk-17-jre-headless)"


def transpile(sql: str) -> str:
    """DuckDB's SQL as Spark SQL."""
    import sqlglot

    return str(sqlglot.transpile(sql, read="duckdb", write="spark")[0])


def session(master: str | None = None) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise EngineMissing(f"the Spark engine needs PySpark: {SPARK_HELP}") from exc
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise EngineMissing(f"the Spark engine needs Java: {SPARK_HELP}")
    master = master or os.environ.get("PZ_SPARK_MASTER") or "local[2]"
    # Shuffles in as many partitions as local mode has cores (Spark's 200 are for a cluster, which keeps its own).
    cores = re.fullmatch(r"local\[(\d+)\]", master)
    partitions = os.environ.get("PZ_SPARK_PARTITIONS") or (cores.group(1) if cores else None)
    builder = SparkSession.builder.appName("personalizer-build").master(master)
    if partitions:
        builder = builder.config("spark.sql.shuffle.partitions", partitions)
    if master.startswith("local"):  # one machine: nothing listens beyond loopback, no web UI
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
                   .config("spark.ui.enabled", "false")
                   # local mode's executors are the driver's JVM: Spark's 1g default runs out on 2M events
                   .config("spark.driver.memory", os.environ.get("PZ_SPARK_DRIVER_MEMORY") or "4g"))
    builder = (builder
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC"))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class SparkEngine:
    name = "spark"
    local = False  # a cluster (or a JVM): what can stay there, stays

    def __init__(self, progress: Callable[[str], None] = lambda _: None) -> None:
        progress("engine: starting Spark")
        self.spark = session()
        self.views: set[str] = set()  # what this build made: the session outlives it (one per process)

    def load(self, name: str, table: Any) -> None:
        self.spark.createDataFrame(table).createOrReplaceTempView(name)
        self.views.add(name)

    def load_parquet(self, name: str, path: str) -> int:
        """A Parquet directory (partitioned by ``key=value`` folders) as ``name``; how many files it has."""
        frame = self.spark.read.option("recursiveFileLookup", "false").parquet(path)
        frame.createOrReplaceTempView(name)
        self.views.add(name)
        return len(frame.inputFiles())

    def stage(self, name: str, sql: str) -> None:
        frame = self.spark.sql(transpile(sql)).persist()
        frame.createOrReplaceTempView(name)
        self.views.add(name)

    def fetch(self, sql: str) -> Any:
        return self.spark.sql(transpile(sql)).toArrow()

    def batches(self, sql: str, size: int) -> Iterator[Any]:
        yield from self.fetch(sql).to_batches(size)

    def forget(self, names: list[str]) -> None:
        for name in names:
            if self.spark.catalog.tableExists(name):
                self.spark.table(name).unpersist()
            self.spark.catalog.dropTempView(name)
            self.views.discard(name)

    def close(self) -> None:
        self.forget(sorted(self.views))
