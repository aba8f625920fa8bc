"""Registry facts from the system-of-record database into DuckDB, as typed Arrow.

Two routes, one result. The whole country is read in bulk as Arrow (``kit/columnar.py``: ADBC,
1.25 M rows/s from SQLite here, against 0.26 M/s through Python rows);
a set of households is read by indexed lookups on the ``iin`` and ``household_id`` columns
(on PostgreSQL one query per source with the keys as an array parameter, two sources at a time;
on SQLite SQLAlchemy queries with IN lists). Both produce the same Arrow schema
(``FACT_COLUMNS``), and a test holds them equal, so everything downstream — relations,
features, checks — is one code path.

Only facts of batches up to a given batch id are read: an ingest committing meanwhile cannot
show one table before and another after its batch, and the profile records that id so its
provenance can be listed later exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from qamqor.kit.columnar import read_batches, read_table, text_array
from qamqor.registry.models import FACT_TABLES, FULL_NAME_KEY, Batch

_S, _D, _I, _F = pa.string(), pa.date32(), pa.int64(), pa.float64()
_DAYS_TO_2000 = (dt.date(2000, 1, 1) - dt.date(1970, 1, 1)).days
_PROVENANCE = {"source_record_id": _S, "batch_id": _I, "line_no": _I, "updated_on": _D}

# What the compute path reads of each fact table (special-category columns are left behind).
FACT_COLUMNS: dict[str, dict[str, pa.DataType]] = {
    "population": {
        "iin": _S,
        "last_name": _S,
        "first_name": _S,
        "patronymic": _S,
        "birth_date": _D,
        "sex": _S,
        "region_code": _S,
        "settlement": _S,
        "death_date": _D,
        **_PROVENANCE,
    },
    "household": {
        "household_id": _S,
        "iin": _S,
        "relation": _S,
        "member_from": _D,
        "member_to": _D,
        **_PROVENANCE,
    },
    "income": {
        "iin": _S,
        "period": _D,
        "income_type": _S,
        "amount_tiyn": _I,
        "payer_bin": _S,
        **_PROVENANCE,
    },
    "employment": {
        "iin": _S,
        "status": _S,
        "employer_bin": _S,
        "start_date": _D,
        "end_date": _D,
        **_PROVENANCE,
    },
    "property": {
        "iin": _S,
        "property_type": _S,
        "object_id": _S,
        "area_m2": _F,
        "region_code": _S,
        "acquired_on": _D,
        "disposed_on": _D,
        **_PROVENANCE,
    },
    "disability": {
        "iin": _S,
        "disability_group": _S,
        "assigned_on": _D,
        "valid_until": _D,
        **_PROVENANCE,
    },
    "finance": {
        "iin": _S,
        "product": _S,
        "contract_id": _S,
        "balance_tiyn": _I,
        "opened_on": _D,
        "closed_on": _D,
        **_PROVENANCE,
    },
}
SOURCES = tuple(FACT_COLUMNS)
_READERS = 2  # PostgreSQL connections reading a set of households' facts at once
_CHUNK = 500  # values per IN list: SQLite allows 32,766 variables, PostgreSQL plans fast at 500

Progress = Callable[[str, int], None]


def _schema(source: str) -> pa.Schema:
    return pa.schema(list(FACT_COLUMNS[source].items()))


def latest_batch_id(connection: Connection) -> int:
    return int(connection.execute(select(func.coalesce(func.max(Batch.id), 0))).scalar_one())


def _bulk_sql(source: str, dialect: str, max_batch: int) -> str:
    items = []
    for name, kind in FACT_COLUMNS[source].items():
        if dialect == "sqlite" and kind in (_S, _D):
            # The SQLite driver infers a column's type from its first rows: a column whose
            # first 1,024 values are NULL would be taken for integers and then fail on text.
            items.append(f"COALESCE({name}, '') AS {name}")
        elif kind == _F:
            items.append(f"CAST({name} AS {'REAL' if dialect == 'sqlite' else 'FLOAT8'}) AS {name}")
        else:
            items.append(name)
    return f"SELECT {', '.join(items)} FROM fact_{source} WHERE batch_id <= {int(max_batch)}"


def _conversion(name: str, raw: pa.DataType, target: pa.DataType) -> str:
    """SQL turning a column as the driver gave it into its canonical type (see ``_bulk_sql``)."""
    text = pa.types.is_string(raw) or pa.types.is_large_string(raw)
    value = f"NULLIF({name}, '')" if text else name
    duck = {_S: "VARCHAR", _D: "DATE", _I: "BIGINT", _F: "DOUBLE"}[target]
    return f"CAST({value} AS {duck}) AS {name}"


def _load_source(
    con: duckdb.DuckDBPyConnection,
    engine: Engine,
    source: str,
    max_batch: int,
    progress: Progress | None,
) -> int:
    schema = _schema(source)
    batches = read_batches(engine, _bulk_sql(source, engine.dialect.name, max_batch))
    first = next(batches, None)
    if first is None:
        return 0
    rows = 0

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for batch in itertools.chain([first], batches):
            rows += batch.num_rows
            if progress is not None:
                progress(source, rows)
            yield batch

    # One INSERT over the stream, converting in DuckDB (vectorised, parallel) rather than in
    # Python batch by batch: 21 s instead of 30 s for a million households' facts.
    reader = pa.RecordBatchReader.from_batches(first.schema, counted())
    select_list = ", ".join(
        _conversion(f.name, first.schema.field(f.name).type, f.type) for f in schema
    )
    cursor = con.cursor()
    try:
        cursor.register("incoming", reader)
        cursor.execute(f"INSERT INTO fact_{source} SELECT {select_list} FROM incoming")
        cursor.unregister("incoming")
    finally:
        cursor.close()
    return rows


def load_all(
    con: duckdb.DuckDBPyConnection,
    engine: Engine,
    max_batch: int,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Every fact of every source into ``fact_<source>``; returns rows per source.

    Two sources at a time: each is read by its own driver (a child process on SQLite), so the
    reading of one overlaps the loading of the other on the two cores.
    """
    for source in SOURCES:
        _create(con, source)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            source: pool.submit(_load_source, con, engine, source, max_batch, progress)
            for source in SOURCES
        }
        return {source: future.result() for source, future in futures.items()}


def _create(con: duckdb.DuckDBPyConnection, source: str) -> None:
    empty = _schema(source).empty_table()
    con.register("incoming", empty)
    con.execute(f"CREATE OR REPLACE TABLE fact_{source} AS SELECT * FROM incoming")
    con.unregister("incoming")


def _to_arrow(source: str, found: Sequence[Sequence[object]]) -> pa.Table:
    """Driver rows as a typed Arrow table, column by column (a row at a time took 0.2 s for
    25,000 rows)."""
    schema = _schema(source)
    columns = list(zip(*found, strict=True)) if found else [() for _ in schema]
    arrays = [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _select_list(source: str, alias: str = "") -> str:
    """The PostgreSQL select list of ``FACT_COLUMNS[source]`` (NUMERIC areas as FLOAT8, as
    SQLAlchemy's Float type hands them over on the other route)."""
    return ", ".join(
        f"CAST({alias}{name} AS FLOAT8) AS {name}" if kind == _F else f"{alias}{name}"
        for name, kind in FACT_COLUMNS[source].items()
    )


def _rows(
    connection: Connection, source: str, column: str, values: Sequence[Any], max_batch: int
) -> pa.Table:
    unique = sorted(set(values))
    if not unique:
        return _schema(source).empty_table()
    if connection.dialect.name == "postgresql":
        # One query per source with the keys as an array (500-value IN lists took 0.2-0.3 s a
        # source for a thousand households, most of it rendering and parsing them; the index
        # scan takes ``= ANY(array)`` as it takes an IN list), read as Arrow by ADBC: half
        # the client CPU of psycopg's rows turned into Arrow here (``kit/columnar.py``).
        sql = (
            f"SELECT {_select_list(source)} FROM fact_{source} "
            f"WHERE {column} = ANY({text_array(unique)}) AND batch_id <= {int(max_batch)}"
        )
        return _typed(source, read_table(connection.engine, sql))
    table = FACT_TABLES[source]
    columns = [table.c[name] for name in _schema(source).names]
    found: list[Sequence[object]] = []
    for i in range(0, len(unique), _CHUNK):
        query = select(*columns).where(
            table.c[column].in_(unique[i : i + _CHUNK]), table.c.batch_id <= max_batch
        )
        found.extend(connection.execute(query))
    return _to_arrow(source, found)


def _typed(source: str, table: pa.Table) -> pa.Table:
    """ADBC's result in the canonical schema (its integers may be narrower, its fields carry
    the server's type names)."""
    return table.cast(_schema(source))


def _namesakes(connection: Connection, people: pa.Table, max_batch: int) -> pa.Table:
    """Every person record of the people who share a full name and birth date with one of
    ``people`` (any of their records): what the duplicate-person check compares them with.

    All of such a namesake's records come back, not only the matching one, so that the
    snapshot's ``person`` (the newest record per IIN) is the same as in a country-wide run: a
    namesake whose newest record carries another name is no duplicate. By birth date and last
    name alone a cycle of 2,500 events drew ~10,000 records of strangers (26 share the whole
    name here)."""
    names = _full_names(people)
    if not names.num_rows:
        return _schema("population").empty_table()
    members = pc.unique(people.column("iin")).to_pylist()
    if connection.dialect.name == "postgresql":
        # One scan of the whole-name expression index (migration 0013) with the names as an
        # array: 62 ms for a cycle's ~9,600 names, where a forced nested-loop probe of the
        # (birth_date, last_name) index per name took 175-185 ms (as a join, the planner hashed
        # the whole register or merged along all of its index). ``ARRAY(...)`` is computed
        # once, then the namesakes' records are read by IIN. The key is FULL_NAME_KEY's: the
        # birth date as days since 2000 (a date32 counts them from 1970), then the names, '|'
        # between. A name holding '|' may make a stranger a candidate: harmless, the check
        # itself compares the names.
        days = pc.subtract(pc.cast(names.column("birth_date"), pa.int32()), _DAYS_TO_2000)
        keys = pc.binary_join_element_wise(
            pc.cast(days, pa.string()), *(names.column(i) for i in range(1, 4)), "|"
        )
        found = (
            f"SELECT DISTINCT iin FROM fact_population WHERE {FULL_NAME_KEY} = "
            f"ANY({text_array(keys.to_pylist())}) AND batch_id <= {int(max_batch)} "
            f"AND iin <> ALL({text_array(members)})"
        )
        sql = (
            f"SELECT {_select_list('population')} FROM fact_population "
            f"WHERE iin = ANY(ARRAY({found})) AND batch_id <= {int(max_batch)}"
        )
        return _typed("population", read_table(connection.engine, sql))
    table = FACT_TABLES["population"]
    born, last, first, patronymic = (names.column(i).to_pylist() for i in range(4))
    wanted = set(zip(born, last, first, patronymic, strict=True))
    known = set(members)
    iins: set[str] = set()
    for i in range(0, len(born), _CHUNK):
        # both columns as IN lists walk the (birth_date, last_name) index; the cross product
        # they allow is cut back to the names here
        query = select(
            table.c.iin,
            table.c.birth_date,
            table.c.last_name,
            table.c.first_name,
            table.c.patronymic,
        ).where(
            table.c.birth_date.in_(sorted(set(born[i : i + _CHUNK]))),
            table.c.last_name.in_(sorted(set(last[i : i + _CHUNK]))),
            table.c.batch_id <= max_batch,
        )
        for iin, day, last_name, first_name, middle in connection.execute(query):
            if iin not in known and (day, last_name, first_name, middle or "") in wanted:
                iins.add(iin)
    return _rows(connection, "population", "iin", sorted(iins), max_batch)


def _full_names(people: pa.Table) -> pa.Table:
    """The distinct (birth date, last name, first name, patronymic or '') of
    ``people``, as the duplicate-person check compares them (a missing name matches nothing);
    in Arrow: as Python tuples they took 4 % of a worker's cycle."""
    valid = pc.and_(
        pc.and_(pc.is_valid(people.column("birth_date")), pc.is_valid(people.column("last_name"))),
        pc.is_valid(people.column("first_name")),
    )
    names = pa.table(
        {
            "birth_date": people.column("birth_date"),
            "last_name": people.column("last_name"),
            "first_name": people.column("first_name"),
            "patronymic": pc.fill_null(people.column("patronymic"), ""),
        }
    ).filter(valid)
    keys = names.column_names
    distinct = names.group_by(keys, use_threads=False).aggregate([])
    return distinct.sort_by([(k, "ascending") for k in keys])


def _member_facts(
    connection: Connection, source: str, iins: Sequence[str], max_batch: int
) -> pa.Table:
    """The members' facts of one source; for the population register with their namesakes."""
    table = _rows(connection, source, "iin", iins, max_batch)
    if source == "population" and table.num_rows:
        table = pa.concat_tables([table, _namesakes(connection, table, max_batch)])
    return table


def load_households(
    con: duckdb.DuckDBPyConnection,
    connection: Connection,
    household_ids: Sequence[str],
    max_batch: int,
) -> dict[str, int]:
    """The facts a set of households' profiles and checks need, and nothing else.

    That is: their membership rows, every membership row of their members (a member may also be
    listed elsewhere), their members' facts in every source, and the person records of the
    people who share a member's full name and birth date (the duplicate-person check compares
    them).
    """
    order = ["household", *(s for s in SOURCES if s != "household")]
    others = order[1:]
    if connection.dialect.name == "postgresql":
        # Every membership row of the members in one query: the households' own rows are among
        # them (each names a member), so the members are found and their rows read in one
        # statement instead of two one after the other.
        keys = text_array(sorted(set(household_ids)))
        members = (
            f"SELECT iin FROM fact_household WHERE household_id = ANY({keys}) "
            f"AND batch_id <= {int(max_batch)}"
        )
        membership = _typed(
            "household",
            read_table(
                connection.engine,
                f"SELECT {_select_list('household')} FROM fact_household "
                f"WHERE iin = ANY(ARRAY({members})) AND batch_id <= {int(max_batch)}",
            ),
        )
        iins = pc.unique(membership.column("iin")).to_pylist()
        # The server's index lookups are most of the time (a thousand households: six more
        # queries of 10-50 ms each); two at a time on pooled ADBC connections of their own
        # use both cores (``connection`` only names the engine here: nothing runs on it).

        def read(source: str) -> pa.Table:
            return _member_facts(connection, source, iins, max_batch)

        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            found = dict(zip(others, pool.map(read, others), strict=True))
        tables = {"household": membership, **found}
    else:
        household = _rows(connection, "household", "household_id", household_ids, max_batch)
        iins = pc.unique(household.column("iin")).to_pylist()
        tables = {source: _member_facts(connection, source, iins, max_batch) for source in order}
    counts = {}
    for source, table in tables.items():
        _create(con, source)
        con.register("incoming", table)
        con.execute(f"INSERT INTO fact_{source} SELECT DISTINCT * FROM incoming")
        con.unregister("incoming")
        counts[source] = table.num_rows
    return counts
