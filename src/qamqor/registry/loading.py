"""Bulk writes into the system-of-record database: COPY on PostgreSQL, executemany on SQLite.

Row-at-a-time ORM inserts run at a few thousand rows/s; a country's extracts hold ~10^8 rows.
Both paths take Arrow record batches and write through the DBAPI connection underneath the
caller's SQLAlchemy connection, so the rows share the caller's transaction.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy.engine import Connection


def bulk_insert(
    connection: Connection, table: str, columns: Sequence[str], batches: Iterable[pa.RecordBatch]
) -> int:
    """Insert every row of ``batches`` (columns in ``columns`` order); returns the row count."""
    dialect = connection.dialect.name
    driver = connection.connection.driver_connection
    column_list = ", ".join(f'"{c}"' for c in columns)
    written = 0
    if dialect == "postgresql":
        copy_sql = f'COPY "{table}" ({column_list}) FROM STDIN (FORMAT csv)'
        with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:  # type: ignore[union-attr]
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                buffer = io.BytesIO()
                pacsv.write_csv(
                    batch,
                    buffer,
                    write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"),
                )
                copy.write(buffer.getbuffer())
                written += batch.num_rows
        return written
    placeholders = ", ".join("?" for _ in columns)
    sql = f'INSERT INTO "{table}" ({column_list}) VALUES ({placeholders})'
    cursor = driver.cursor()  # type: ignore[union-attr]
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            cursor.executemany(sql, zip(*(col.to_pylist() for col in batch.columns), strict=True))
            written += batch.num_rows
    finally:
        cursor.close()
    return written
