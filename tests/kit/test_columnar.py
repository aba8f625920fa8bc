"""Pooled ADBC reads on PostgreSQL (``kit.columnar.read_table``) and the array literal their
keys travel in."""

from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import create_engine, text

from qamqor.kit import columnar
from qamqor.kit.columnar import read_table, text_array
from tests.conftest import POSTGRES_URL, fresh_engine

AWKWARD = ["plain", 'dou"ble', "back\\slash", "it's", "a,b", "{braces}", "NULL", "", " sp ", "қаз"]


def test_text_array_round_trips_any_text_and_reads_come_back_typed(tmp_path: Path) -> None:
    with fresh_engine("postgresql", tmp_path) as engine:
        table = read_table(
            engine,
            f"SELECT k, length(k) AS n, 7 AS seven FROM unnest({text_array(AWKWARD)}) AS t(k)",
        )
        assert table.column("k").to_pylist() == AWKWARD
        assert table.column("n").to_pylist() == [len(k) for k in AWKWARD]
        assert pa.types.is_integer(table.schema.field("seven").type)
        empty = read_table(engine, f"SELECT k FROM unnest({text_array([])}) AS t(k)")
        assert empty.num_rows == 0


def test_pooled_connections_are_reused_and_leave_no_transaction_open(tmp_path: Path) -> None:
    with fresh_engine("postgresql", tmp_path) as engine:
        first = read_table(engine, "SELECT pg_backend_pid() AS pid").column("pid")[0].as_py()
        again = read_table(engine, "SELECT pg_backend_pid() AS pid").column("pid")[0].as_py()
        assert again == first  # taken from the pool, not opened afresh
        with engine.connect() as conn:
            state = conn.execute(
                text("SELECT state FROM pg_stat_activity WHERE pid = :p"), {"p": first}
            ).scalar_one()
        assert state == "idle"  # autocommit: not "idle in transaction"


def test_a_pooled_connection_the_server_closed_is_replaced(tmp_path: Path) -> None:
    with fresh_engine("postgresql", tmp_path) as engine:
        pid = read_table(engine, "SELECT pg_backend_pid() AS pid").column("pid")[0].as_py()
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        admin.dispose()
        fresh = read_table(engine, "SELECT pg_backend_pid() AS pid").column("pid")[0].as_py()
        assert fresh != pid


def test_a_bad_query_raises_and_its_connection_is_not_kept(tmp_path: Path) -> None:
    with fresh_engine("postgresql", tmp_path) as engine:
        read_table(engine, "SELECT 1 AS one")
        with pytest.raises(Exception, match="no_such_table"):
            read_table(engine, "SELECT * FROM no_such_table")
        assert read_table(engine, "SELECT 2 AS two").column("two")[0].as_py() == 2


def test_disposing_the_engine_closes_its_pooled_connections(tmp_path: Path) -> None:
    with fresh_engine("postgresql", tmp_path) as engine:
        read_table(engine, "SELECT 1 AS one")
        pool = columnar._pools[engine]
        assert pool.idle.qsize() == 1
        engine.dispose()
        assert engine not in columnar._pools and pool.idle.qsize() == 0
        # an engine used again after disposal gets a pool again, disposed the same way
        read_table(engine, "SELECT 1 AS one")
        again = columnar._pools[engine]
        assert again is not pool and again.idle.qsize() == 1
        engine.dispose()
        assert engine not in columnar._pools and again.idle.qsize() == 0
