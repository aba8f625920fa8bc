"""Profiles as the rules read them, and the figures of the whole population.

``load_input`` fills ``profile_input`` in a DuckDB: one row per household's current profile
(or a given profile version), one typed column per feature the programs use, and the values
the rules must treat as unknown: ``holds`` (feature -> reasons: the data-quality checks that
taint it, or ``contested:ID`` when the citizen contests it) and ``held`` (their names).

A stored version keeps its values in the order of its build's ``feature_names``; versions from
builds of different catalogues are read each by their own order.

The median per-capita income is a figure of the whole population, not of a household: it is
computed once per month from every current profile (person-weighted, the lower median, values
held by data quality left out), stored, and used by every decision of that month, so that one
household decided alone gets the same poverty line as in the country-wide run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qamqor.kit.columnar import read_batches, read_table, text_array
from qamqor.kit.errors import QamqorError
from qamqor.profiles.catalogue import Catalogue
from qamqor.profiles.models import ProfileBuild, ProfileHead, ProfileVersion
from qamqor.rules.models import ContestedValue, PopulationFigure

SQL_TYPES = {
    "count": "BIGINT",
    "tiyn": "BIGINT",
    "days": "BIGINT",
    "years": "BIGINT",
    "m2": "DOUBLE",
    "code": "VARCHAR",
}
RAW_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("household_id", pa.string()),
        ("build_id", pa.int64()),
        ("as_of", pa.string()),
        ("features", pa.string()),
        ("quality", pa.string()),
    ]
)
MEDIAN = "median_per_capita_income_tiyn"


class NoProfiles(QamqorError):
    """There is nothing to decide on: no profile has been built yet."""


def input_columns(catalogue: Catalogue, features: Sequence[str]) -> dict[str, str]:
    columns = {
        "household_id": "VARCHAR",
        "profile_version_id": "BIGINT",
        "as_of": "DATE",
        "holds": "JSON",
        "held": "VARCHAR[]",
    }
    for name in features:
        columns[name] = SQL_TYPES[catalogue.features[name].unit]
    return columns


def create_input(
    con: duckdb.DuckDBPyConnection,
    catalogue: Catalogue,
    features: Sequence[str],
    table: str = "profile_input",
) -> None:
    columns = ", ".join(f"{n} {t}" for n, t in input_columns(catalogue, features).items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({columns})")


def _raw_rows(
    engine: Engine,
    households: Sequence[str] | None,
    version_ids: Sequence[int] | None,
) -> Iterator[pa.RecordBatch]:
    columns = (
        "v.id, v.household_id, v.build_id, CAST(v.as_of AS VARCHAR(10)), "
        "CAST(v.features AS TEXT), CAST(v.quality AS TEXT)"
    )
    if households is None and version_ids is None:
        sql = (
            f"SELECT {columns} FROM profile_head h JOIN profile_version v "
            "ON v.household_id = h.household_id AND v.version = h.version"
        )
        for batch in read_batches(engine, sql):
            yield pa.RecordBatch.from_arrays(
                [batch.column(i).cast(RAW_SCHEMA.field(i).type) for i in range(6)],
                schema=RAW_SCHEMA,
            )
        return
    if engine.dialect.name == "postgresql":
        yield from _raw_rows_postgres(engine, households, version_ids)
        return
    query = select(
        ProfileVersion.id,
        ProfileVersion.household_id,
        ProfileVersion.build_id,
        ProfileVersion.as_of,
        ProfileVersion.features,
        ProfileVersion.quality,
    )
    keys: Sequence[Any]
    column: Any
    if version_ids is not None:
        keys, column = version_ids, ProfileVersion.id
    else:
        assert households is not None
        keys, column = households, ProfileHead.household_id
        query = query.join(
            ProfileHead,
            (ProfileHead.household_id == ProfileVersion.household_id)
            & (ProfileHead.version == ProfileVersion.version),
        )
    with Session(engine) as session:
        for i in range(0, len(keys), 500):
            rows = session.execute(query.where(column.in_(keys[i : i + 500]))).all()
            if rows:
                yield pa.RecordBatch.from_pylist(
                    [
                        {
                            "id": r[0],
                            "household_id": r[1],
                            "build_id": r[2],
                            "as_of": r[3].isoformat(),
                            "features": json.dumps(r[4]),
                            "quality": json.dumps(r[5], sort_keys=True),
                        }
                        for r in rows
                    ],
                    schema=RAW_SCHEMA,
                )


def _raw_rows_postgres(
    engine: Engine, households: Sequence[str] | None, version_ids: Sequence[int] | None
) -> Iterator[pa.RecordBatch]:
    """``_raw_rows`` of some households (or versions) on PostgreSQL: one query with the keys as
    an array (500-value IN lists cost SQLAlchemy and psycopg more than the query itself), read
    as Arrow by ADBC, the JSON as the server's text, as the bulk route reads it: every use
    parses it (``json_extract_string`` of a value, the flags as JSON), so its spacing does
    not reach a decision. Decoding and encoding it again here, as the portable route does,
    cost a worker 17 ms a 1,000-household cycle."""
    select_list = (
        "v.id, v.household_id, v.build_id, v.as_of, CAST(v.features AS TEXT), "
        "CAST(v.quality AS TEXT)"
    )
    if version_ids is not None:
        ids = sorted({int(k) for k in version_ids})
        where = f"v.id = ANY(ARRAY[{', '.join(str(i) for i in ids)}]::bigint[])"
        sql = f"SELECT {select_list} FROM profile_version v WHERE {where}"
        count = len(ids)
    else:
        assert households is not None
        keys = sorted(set(households))
        sql = (
            f"SELECT {select_list} FROM profile_head h JOIN profile_version v "
            "ON v.household_id = h.household_id AND v.version = h.version "
            f"WHERE h.household_id = ANY({text_array(keys)})"
        )
        count = len(keys)
    if not count:
        return
    found = read_table(engine, sql)  # as Arrow, on a pooled connection (``kit/columnar.py``)
    if found.num_rows:
        yield from pa.table(
            [
                found.column(0).cast(pa.int64()),
                found.column(1).cast(pa.string()),
                found.column(2).cast(pa.int64()),
                found.column(3).cast(pa.string()),  # a date's ISO text
                found.column(4).cast(pa.string()),
                found.column(5).cast(pa.string()),
            ],
            schema=RAW_SCHEMA,
        ).to_batches()


def _contested(engine: Engine, households: Sequence[str] | None) -> pa.Table:
    query = select(ContestedValue.household_id, ContestedValue.feature, ContestedValue.id).where(
        ContestedValue.resolved_at.is_(None)
    )
    if households is not None and len(households) <= 500:
        query = query.where(ContestedValue.household_id.in_(households))
    with Session(engine) as session:
        rows = session.execute(query).all()
    return pa.table(
        {
            "household_id": pa.array([r[0] for r in rows], pa.string()),
            "feature": pa.array([r[1] for r in rows], pa.string()),
            "reason": pa.array([f"contested:{r[2]}" for r in rows], pa.string()),
        }
    )


def load_input(
    con: duckdb.DuckDBPyConnection,
    engine: Engine,
    catalogue: Catalogue,
    features: Sequence[str],
    households: Sequence[str] | None = None,
    version_ids: Sequence[int] | None = None,
    table: str = "profile_input",
    contested: bool = True,
) -> int:
    """Fill ``table`` with the current profiles (of ``households``; or the given versions)."""
    create_input(con, catalogue, features, table)
    # each build's order of the values, read for the builds the rows come from (a worker makes
    # a build per cycle: reading them all would grow with every cycle)
    orders: dict[int, list[str]] = {}
    contest = (
        _contested(engine, households)
        if contested
        else pa.table(
            {
                "household_id": pa.array([], pa.string()),
                "feature": pa.array([], pa.string()),
                "reason": pa.array([], pa.string()),
            }
        )
    )
    con.register("contest_in", contest)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE contest AS
        SELECT household_id, json_group_object(feature, json_array(reason)) AS patch
        FROM contest_in GROUP BY household_id
        """
    )
    con.unregister("contest_in")
    for batch in _raw_rows(engine, households, version_ids):
        con.register("raw_profile", batch)
        builds = [r[0] for r in con.execute("SELECT DISTINCT build_id FROM raw_profile").fetchall()]
        missing = [b for b in builds if b not in orders]
        if missing:
            with Session(engine) as session:
                orders.update(
                    session.execute(
                        select(ProfileBuild.id, ProfileBuild.feature_names).where(
                            ProfileBuild.id.in_(missing)
                        )
                    ).all()
                )
        # one INSERT per order of the values, not per build: a worker makes a build per cycle,
        # and after a hundred cycles a thousand households' versions came from 27 builds
        by_order: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for build_id in builds:
            by_order[tuple(orders[build_id])].append(int(build_id))
        for order, build_ids in by_order.items():
            values = []
            for name in features:
                sql_type = SQL_TYPES[catalogue.features[name].unit]
                if name in order:
                    values.append(
                        f"CAST(json_extract_string(r.features, '$[{order.index(name)}]') "
                        f"AS {sql_type})"
                    )
                else:
                    values.append(f"CAST(NULL AS {sql_type})")  # not in that build's catalogue
            holds = (
                "CASE WHEN c.patch IS NULL THEN CAST(r.quality AS JSON) "
                "ELSE json_merge_patch(CAST(r.quality AS JSON), c.patch) END"
            )
            con.execute(
                f"""
                INSERT INTO {table}
                SELECT r.household_id, r.id, CAST(r.as_of AS DATE), h.holds,
                       coalesce(json_keys(h.holds), []){"".join(", " + v for v in values)}
                FROM raw_profile r LEFT JOIN contest c USING (household_id),
                     LATERAL (SELECT {holds} AS holds) h
                WHERE r.build_id IN ({", ".join(str(b) for b in build_ids)})
                """
            )
        con.unregister("raw_profile")
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def compute_median(
    con: duckdb.DuckDBPyConnection, day: dt.date, table: str = "profile_input"
) -> tuple[int, int, int] | None:
    """(median per-capita income in tiyn, households, persons) over ``table`` for ``day``:
    the lower person-weighted median, households whose income is held left out."""
    rows = con.execute(
        f"""
        WITH known AS (
          SELECT per_capita_income_tiyn AS pci, members FROM {table}
          WHERE as_of = DATE '{day.isoformat()}' AND per_capita_income_tiyn IS NOT NULL
            AND members > 0 AND NOT list_contains(held, 'per_capita_income_tiyn')),
        ranked AS (
          SELECT pci, sum(members) OVER (ORDER BY pci ROWS UNBOUNDED PRECEDING) AS below,
                 sum(members) OVER () AS persons, count(*) OVER () AS households
          FROM known)
        SELECT pci, households, persons FROM ranked WHERE 2 * below >= persons
        ORDER BY pci LIMIT 1
        """
    ).fetchall()
    if not rows:
        return None
    return int(rows[0][0]), int(rows[0][1]), int(rows[0][2])


def population_figures(
    con: duckdb.DuckDBPyConnection,
    engine: Engine,
    catalogue: Catalogue,
    day: dt.date,
    whole_population_loaded: bool,
) -> dict[str, int]:
    """The figures for ``day``: stored ones, else computed (from ``profile_input`` when it holds
    every household, else from every current profile) and stored."""
    with Session(engine) as session:
        stored = session.execute(
            select(PopulationFigure).where(
                PopulationFigure.name == MEDIAN, PopulationFigure.as_of == day
            )
        ).scalar_one_or_none()
        if stored is not None:
            return {MEDIAN: stored.value}
    if whole_population_loaded:
        found = compute_median(con, day)
    else:
        load_input(
            con,
            engine,
            catalogue,
            ["members", "per_capita_income_tiyn"],
            table="population_all",
            contested=False,
        )
        found = compute_median(con, day, "population_all")
        con.execute("DROP TABLE population_all")
    if found is None:
        raise NoProfiles(f"no profile as of {day.isoformat()} has a known per-capita income")
    value, households, persons = found
    try:
        with Session(engine) as session, session.begin():
            session.add(
                PopulationFigure(
                    name=MEDIAN,
                    as_of=day,
                    value=value,
                    households=households,
                    persons=persons,
                    computed_at=dt.datetime.now(dt.UTC),
                )
            )
    except IntegrityError:
        # another process stored the month's figure first: that one is the month's figure
        with Session(engine) as session:
            value = session.execute(
                select(PopulationFigure.value).where(
                    PopulationFigure.name == MEDIAN, PopulationFigure.as_of == day
                )
            ).scalar_one()
    return {MEDIAN: value}
