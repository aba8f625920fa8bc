"""Temporary tables in the system-of-record database, filled from DuckDB in bulk.

Set-based writes (insert the new, update the changed, close the missing) take one statement
each once the rows are on the database side; row-at-a-time ORM writes of a country's profiles
would take hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.engine import Connection

from qamqor.kit.columnar import read_batches, read_table, text_array
from qamqor.kit.db import Base
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


def copy_into(
    con: duckdb.DuckDBPyConnection,
    target: str,
    connection: Connection,
    model: type[Base],
    columns: Sequence[str],
    key: str | None = None,
    keys: Sequence[Any] | None = None,
) -> None:
    """Rows of ``model``'s table into the DuckDB table ``target`` (made by the caller,
    ``columns`` in its order): all of them in bulk as Arrow, or those whose ``key`` is one of
    ``keys`` (text) by indexed lookups (on PostgreSQL one query with the keys as an array,
    elsewhere 500 keys a query)."""
    if keys is None:
        batches: Iterable[pa.RecordBatch] = read_batches(
            connection.engine, f"SELECT {', '.join(columns)} FROM {model.__tablename__}"
        )
    else:
        assert key is not None
        if connection.dialect.name == "postgresql":
            # one query with the keys as an array, read as Arrow on a pooled connection:
            # SQLAlchemy's rows and 500-value IN lists cost more than the query itself. (Under
            # READ COMMITTED another connection sees what this transaction would: the callers
            # read before they write.)
            sql = (
                f"SELECT {', '.join(columns)} FROM {model.__tablename__} "
                f"WHERE {key} = ANY({text_array(str(k) for k in keys)})"
            )
            batches = read_table(connection.engine, sql).to_batches()
        else:
            table = model.__table__
            selected = [table.c[c] for c in columns]
            rows: list[Any] = []
            for i in range(0, len(keys), 500):
                rows.extend(
                    connection.execute(select(*selected).where(table.c[key].in_(keys[i : i + 500])))
                )
            if not rows:
                return
            batches = pa.table(
                {c: [r[i] for r in rows] for i, c in enumerate(columns)}
            ).to_batches()
    for batch in batches:
        con.register("incoming", batch)
        con.execute(f"INSERT INTO {target} SELECT * FROM incoming")
        con.unregister("incoming")
