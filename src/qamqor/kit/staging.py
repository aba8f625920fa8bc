"""Temporary tables in the system-of-record database, filled from DuckDB in bulk.

Set-based writes (insert the new, update the changed, close the missing) take one statement
each once the rows are on the database side; row-at-a-time ORM writes of a country's profiles
would take hours.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
from sqlalchemy.engine import Connection

from qamqor.registry.loading import bulk_insert

BATCH_ROWS = 50_000


def stage(
    connection: Connection,
    name: str,
    columns: dict[str, str],
    con: duckdb.DuckDBPyConnection,
    query: str,
) -> int:
    """Create temp table ``name`` (column -> SQL type) and fill it with ``query``'s rows."""
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    definition = ", ".join(f"{c} {t}" for c, t in columns.items())
    connection.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} ({definition})")
    return bulk_insert(connection, name, list(columns), arrow_batches(con, query))


def arrow_batches(con: duckdb.DuckDBPyConnection, query: str) -> pa.RecordBatchReader:
    relation = con.sql(query)
    # DuckDB 2 renamed fetch_arrow_reader to to_arrow_reader.
    to_reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
    return to_reader(BATCH_ROWS)
