"""The batch on an existing engine. DuckDB, in process and out of core, reads the event lake the store exports
(``events``): a directory of Parquet files partitioned by day, late files and duplicates across files
included, cleaned up by one SQL statement.
"""
