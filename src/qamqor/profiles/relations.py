"""The relations feature definitions aggregate: registry facts as of a reference date.

Facts are loaded into DuckDB as ``fact_<source>`` tables (profiles/facts.py); this module turns
them into the vocabulary the feature catalogue and the quality checks speak:

- the latest version of every registry record (the newest batch wins: a later extract corrects
  an earlier one) and, for the population register, one row per IIN;
- ``member``: who belongs to which household on the reference date, with each member's person
  record and age in full years;
- ``income`` (every reported month up to the reference date) and ``employment``, ``property``,
  ``disability``, ``finance`` (facts valid on the reference date), each joined to ``member``.

Every relation row keeps its provenance (record id, batch, date of the registry's update), so a
feature value can be traced back to the rows it counted. The relations are the only SQL here
that is not data; the features and checks over them are.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from qamqor.profiles.facts import FACT_COLUMNS

# Columns every relation joined to ``member`` carries besides its own.
MEMBER_COLUMNS = ("household_id", "iin", "relation", "age", "sex", "birth_date", "death_date")
PARAMETER_COLUMNS = ("as_of", "quarter_start", "quarter_end")


@dataclass(frozen=True)
class Relation:
    name: str
    source: str  # the registry whose records the rows are
    columns: tuple[str, ...]
    provenance: tuple[tuple[str, str, str, str, str], ...]  # (source, record, batch, updated, line)


def _fact_columns(source: str) -> tuple[str, ...]:
    return tuple(c for c in FACT_COLUMNS[source] if c not in ("source_record_id", "line_no"))


def relations() -> dict[str, Relation]:
    """Every relation a feature may use ``from``, with the columns it may reference."""
    prov = ("record_id", "batch_id", "updated_on", "line_no")
    out = {
        "member": Relation(
            "member",
            "household",
            (
                "household_id",
                "iin",
                "relation",
                "member_from",
                "member_to",
                "last_name",
                "first_name",
                "patronymic",
                "birth_date",
                "sex",
                "region_code",
                "settlement",
                "death_date",
                "age",
                "engaged",
                "disability_group",
                "hh_record_id",
                "hh_batch_id",
                "hh_updated_on",
                "pop_record_id",
                "pop_batch_id",
                "pop_updated_on",
            ),
            (
                ("household", "hh_record_id", "hh_batch_id", "hh_updated_on", "hh_line_no"),
                ("population", "pop_record_id", "pop_batch_id", "pop_updated_on", "pop_line_no"),
            ),
        )
    }
    for source in ("income", "employment", "property", "disability", "finance"):
        own = _fact_columns(source)
        extra = tuple(c for c in MEMBER_COLUMNS if c not in own)
        out[source] = Relation(
            source,
            source,
            own + extra + ("record_id", "batch_id"),
            ((source, *prov),),
        )
    return out


def quarter(as_of: dt.date) -> tuple[dt.date, dt.date]:
    """The three full calendar months before the month of ``as_of`` (Social Code art. 127)."""
    end = as_of.replace(day=1)
    month = end.month - 3
    year = end.year + (month - 1) // 12
    start = dt.date(year, (month - 1) % 12 + 1, 1)
    return start, end


def _latest(source: str) -> str:
    """The newest version of every record: a later batch (then a later line) wins."""
    return (
        f"SELECT * FROM fact_{source} QUALIFY row_number() OVER "
        "(PARTITION BY source_record_id ORDER BY batch_id DESC, line_no DESC) = 1"
    )


def _batches(con: duckdb.DuckDBPyConnection, source: str) -> int:
    return int(con.execute(f"SELECT count(DISTINCT batch_id) FROM fact_{source}").fetchall()[0][0])


def _valid_on(start: str, end: str) -> str:
    return f"{start} <= p.as_of AND ({end} IS NULL OR {end} > p.as_of)"


def _age(birth: str) -> str:
    """Full years at ``p.as_of``, in integers (date_diff('year') counts boundaries, not years)."""
    return (
        f"(year(p.as_of) * 10000 + month(p.as_of) * 100 + day(p.as_of) - year({birth}) * 10000 "
        f"- month({birth}) * 100 - day({birth})) // 10000"
    )


def run_values(as_of: dt.date, parameters: dict[str, object]) -> dict[str, object]:
    """The parameters of one run: the catalogue's and the reference date's."""
    start, end = quarter(as_of)
    return {"as_of": as_of, "quarter_start": start, "quarter_end": end, **parameters}


def create_relations(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    parameters: dict[str, object],
    households: list[str] | None = None,
) -> None:
    """Create the relations over the loaded ``fact_*`` tables, for the ``target`` households.

    ``households`` names the households to profile (all with a current member when None); the
    rest of the loaded facts are context (another household a member also belongs to, a
    namesake). ``params`` holds the run's parameters as a one-row table for the checks.
    """
    params = run_values(as_of, parameters)
    select = ", ".join(f"${i + 1} AS {name}" for i, name in enumerate(params))
    con.execute(f"CREATE OR REPLACE TEMP TABLE params AS SELECT {select}", list(params.values()))
    for source in ("household", "income", "employment", "property", "disability", "finance"):
        if _batches(con, source) <= 1:
            # Ingest keeps record ids unique within a batch (a conflicting row is rejected), so
            # one batch needs no de-duplication: a window over 5 M income rows took 5 s.
            con.execute(f"CREATE OR REPLACE TEMP VIEW latest_{source} AS FROM fact_{source}")
        else:
            con.execute(f"CREATE OR REPLACE TEMP TABLE latest_{source} AS {_latest(source)}")
    # One person record per IIN: the newest update of the newest record.
    rows, iins = con.execute(
        "SELECT count(*), count(DISTINCT iin) FROM fact_population"
    ).fetchall()[0]
    if rows == iins:
        con.execute("CREATE OR REPLACE TEMP VIEW person AS FROM fact_population")
    else:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE person AS SELECT * FROM fact_population QUALIFY "
            "row_number() OVER (PARTITION BY iin ORDER BY updated_on DESC, batch_id DESC, "
            "line_no DESC) = 1"
        )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE membership AS SELECT h.* FROM latest_household h, params p "
        f"WHERE {_valid_on('h.member_from', 'h.member_to')}"
    )
    if households is None:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE target AS SELECT DISTINCT household_id FROM membership"
        )
    else:
        con.execute("CREATE OR REPLACE TEMP TABLE target (household_id VARCHAR PRIMARY KEY)")
        # as one Arrow table: DuckDB's executemany runs a statement per row (0.75 s a thousand)
        con.register("target_in", pa.table({"household_id": sorted(set(households))}))
        con.execute("INSERT INTO target SELECT household_id FROM target_in")
        con.unregister("target_in")
    # Per person on the reference date: in work or in employment measures (any employment
    # record: employed, self-employed, registered unemployed), and the disability group.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE person_status AS
        SELECT iin, bool_or(engaged) AS engaged, min(disability_group) AS disability_group
        FROM (SELECT e.iin, TRUE AS engaged, NULL AS disability_group
              FROM latest_employment e, params p
              WHERE {_valid_on("e.start_date", "e.end_date")}
              UNION ALL
              SELECT d.iin, FALSE, d.disability_group
              FROM latest_disability d, params p
              WHERE {_valid_on("d.assigned_on", "d.valid_until")})
        GROUP BY iin
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE member AS
        SELECT m.household_id, m.iin, m.relation, m.member_from, m.member_to,
               s.last_name, s.first_name, s.patronymic, s.birth_date, s.sex, s.region_code,
               s.settlement, s.death_date, {_age("s.birth_date")} AS age,
               coalesce(ps.engaged, FALSE) AS engaged, ps.disability_group,
               m.source_record_id AS hh_record_id, m.batch_id AS hh_batch_id,
               m.updated_on AS hh_updated_on, m.line_no AS hh_line_no,
               s.source_record_id AS pop_record_id, s.batch_id AS pop_batch_id,
               s.updated_on AS pop_updated_on, s.line_no AS pop_line_no
        FROM membership m
        JOIN target t USING (household_id)
        LEFT JOIN person s USING (iin)
        LEFT JOIN person_status ps USING (iin)
        CROSS JOIN params p
        """
    )
    member_cols = ", ".join(f"m.{c}" for c in MEMBER_COLUMNS if c != "iin")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW income AS
        SELECT f.* EXCLUDE (source_record_id), f.source_record_id AS record_id, {member_cols}
        FROM latest_income f JOIN member m USING (iin) CROSS JOIN params p
        WHERE f.period < p.as_of
        """
    )
    bounds = {
        "employment": ("start_date", "end_date"),
        "property": ("acquired_on", "disposed_on"),
        "disability": ("assigned_on", "valid_until"),
        "finance": ("opened_on", "closed_on"),
    }
    for source, (valid_from, valid_to) in bounds.items():
        # Areas as exact decimals: summing binary floats in parallel gives 243.90000000000003
        # one run and 243.9 the next, and a profile must not change when its facts did not.
        exact = (
            "EXCLUDE (source_record_id, area_m2), CAST(round(f.area_m2, 2) AS DECIMAL(14, 2)) "
            "AS area_m2"
            if source == "property"
            else "EXCLUDE (source_record_id)"
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP VIEW {source} AS
            SELECT f.* {exact}, f.source_record_id AS record_id,
                   {member_cols}
            FROM latest_{source} f JOIN member m USING (iin) CROSS JOIN params p
            WHERE {_valid_on("f." + valid_from, "f." + valid_to)}
            """
        )
