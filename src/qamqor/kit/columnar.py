"""Reading query results from the system-of-record database as Arrow, fast.

PostgreSQL: the ADBC driver in this process (binary COPY straight into Arrow). Bulk reads
(``read_batches``) open a connection of their own; the many small indexed reads of a worker's
micro-batches (``read_table``) take one from a per-process pool, since opening one costs
~30 ms of CPU (the driver reads the server's type catalogue).

SQLite: the ADBC driver too (about 5x the Python driver: 1.25 M against 0.26 M rows/s here),
but in a child process. The ADBC SQLite driver carries its own copy of the SQLite library, and
two copies in one process break SQLite's POSIX locks: closing one copy's file descriptor drops
every lock the process holds on the file, which showed here as "disk I/O error" on the next
connection. In a child process the copies never meet; the rows come back as an Arrow IPC stream
on a pipe, and the parent decodes them while the child reads on (two cores, two processes).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import urllib.parse
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from qamqor.kit.errors import QamqorError

BATCH_ROWS = 65_536


def postgres_uri(engine: Engine) -> str:
    """A libpq URI for ``engine``'s database with its search path (a test's schema): for
    connections outside SQLAlchemy's pool (ADBC here, the worker's ``LISTEN``)."""
    url = engine.url
    with engine.connect() as conn:
        search_path = str(conn.exec_driver_sql("SHOW search_path").scalar_one())
    netloc = urllib.parse.quote(url.username or "postgres", safe="")
    if url.password:
        netloc += ":" + urllib.parse.quote(str(url.password), safe="")
    netloc += f"@{url.host or '127.0.0.1'}:{url.port or 5432}"
    # libpq splits options at spaces: '"$user", public' must travel as '"$user",public'.
    search_path = ",".join(part.strip() for part in search_path.split(","))
    options = urllib.parse.quote(f"-csearch_path={search_path}", safe="")
    return f"postgresql://{netloc}/{url.database}?options={options}"


_POOL_SIZE = 4  # idle connections kept per engine; more are opened when needed, then closed


class _AdbcPool:
    """Idle ADBC connections to one engine's database, for this process only."""

    def __init__(self, engine: Engine) -> None:
        self.uri = postgres_uri(engine)
        self.pid = os.getpid()
        self.idle: queue.LifoQueue[Any] = queue.LifoQueue()

    def close(self) -> None:
        while True:
            try:
                conn = self.idle.get_nowait()
            except queue.Empty:
                return
            if self.pid == os.getpid():  # a forked child leaves its parent's sockets alone
                conn.close()


_pools: weakref.WeakKeyDictionary[Engine, _AdbcPool] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def _pool_of(engine: Engine) -> _AdbcPool:
    with _pools_lock:
        pool = _pools.get(engine)
        if pool is not None and pool.pid == os.getpid():
            return pool
        fresh = _pools[engine] = _AdbcPool(engine)
        # the engine's pool goes when the engine is disposed (an engine can be used again
        # after that: one listener however often)
        if not event.contains(engine, "engine_disposed", _dispose_pool):
            event.listen(engine, "engine_disposed", _dispose_pool)
        return fresh


def _dispose_pool(engine: Engine) -> None:
    with _pools_lock:
        pool = _pools.pop(engine, None)
    if pool is not None:
        pool.close()


# The pooled connections serve keyed lookups (a few thousand keys in an array) on data the
# server has cached: PostgreSQL's default random_page_cost (4, for spinning disks) made it scan
# the whole of fact_property in parallel (115 ms) instead of its index (20 ms) once a cycle held
# 3,000 households.
_SESSION = "SET random_page_cost = 1.1"


def _connect(uri: str) -> Any:
    import adbc_driver_postgresql.dbapi

    conn = adbc_driver_postgresql.dbapi.connect(uri, autocommit=True)
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(_SESSION)
        finally:
            cursor.close()
    except BaseException:
        conn.close()
        raise
    return conn


def _fetch(conn: Any, sql: str) -> pa.Table:
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetch_arrow_table()
    finally:
        cursor.close()


def read_table(engine: Engine, sql: str) -> pa.Table:
    """The rows of ``sql`` (a PostgreSQL query) as one Arrow table, through a pooled ADBC
    connection in autocommit mode (no transaction stays open between reads), planned for
    keyed lookups on cached data (``_SESSION``). Values travel inside the SQL: build them with
    ``text_array`` or from integers. About half the client CPU of the same rows through
    psycopg and ``pa.array`` (a thousand households' facts).

    A pooled connection that fails (the server may have closed it while idle) is dropped and
    the read tried once more on a new one; a new connection's failure is raised."""
    import adbc_driver_postgresql.dbapi

    pool = _pool_of(engine)
    try:
        conn = pool.idle.get_nowait()
        reused = True
    except queue.Empty:
        conn = _connect(pool.uri)
        reused = False
    try:
        table = _fetch(conn, sql)
    except adbc_driver_postgresql.dbapi.Error:
        conn.close()
        if not reused:
            raise
        conn = _connect(pool.uri)
        try:
            table = _fetch(conn, sql)
        except BaseException:
            conn.close()
            raise
    except BaseException:
        conn.close()  # its state is unknown: never reused
        raise
    if pool.idle.qsize() < _POOL_SIZE:
        pool.idle.put(conn)
    else:
        conn.close()
    return table


def text_array(values: Iterable[str]) -> str:
    """A SQL literal of a PostgreSQL ``text[]`` holding ``values`` exactly: each element
    double-quoted with its backslashes and double quotes escaped, the whole a standard string
    literal (single quotes doubled)."""
    items = [str(v) for v in values]
    if not items:
        return "'{}'::text[]"
    joined = '","'.join(items)
    if "\\" in joined or '"' in joined:  # escaped only when needed: most keys are digits
        joined = '","'.join(v.replace("\\", "\\\\").replace('"', '\\"') for v in items)
    return "'{\"" + joined.replace("'", "''") + "\"}'::text[]"


def read_batches(engine: Engine, sql: str) -> Iterator[pa.RecordBatch]:
    """The rows of ``sql`` as Arrow record batches (types as the driver infers them).

    On SQLite the driver infers a column's type from its first batch: select text columns
    that may start with NULLs as ``COALESCE(col, '')``.
    """
    if engine.dialect.name == "postgresql":
        import adbc_driver_postgresql.dbapi

        with adbc_driver_postgresql.dbapi.connect(postgres_uri(engine)) as conn:
            cursor = conn.cursor()
            cursor.execute(sql)
            yield from cursor.fetch_record_batch()
            cursor.close()
        return
    path = engine.url.database
    if not path or path == ":memory:":
        raise QamqorError("a bulk read needs an SQLite database file, not an in-memory one")
    child = subprocess.Popen(
        [sys.executable, "-m", "qamqor.kit.columnar", path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    child.stdin.write(sql.encode("utf-8"))
    child.stdin.close()
    try:
        try:
            reader = pa.ipc.open_stream(child.stdout)
            yield from reader
        except pa.ArrowInvalid:
            pass  # the child failed before writing a stream: its stderr says why
        error = child.stderr.read().decode("utf-8", "replace").strip()
        if child.wait() != 0:
            raise QamqorError(f"reading SQLite failed: {error.splitlines()[-1] if error else '?'}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()


def _child(path: str) -> None:
    import adbc_driver_sqlite.dbapi

    sql = sys.stdin.read()
    with adbc_driver_sqlite.dbapi.connect(path) as conn:
        cursor = conn.cursor()
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(BATCH_ROWS)})
        cursor.execute(sql)
        reader = cursor.fetch_record_batch()
        with pa.ipc.new_stream(sys.stdout.buffer, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
        cursor.close()


if __name__ == "__main__":
    _child(sys.argv[1])
