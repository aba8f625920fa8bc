"""What a rule change would do, before it is law: the whole population under today's values
and under the changed ones, side by side. Nothing is written to decisions.

``--set name=value`` changes a parameter the program uses (money in tenge, as in
``programs/parameters.yaml``; shares as decimals), or the population figure;
``name@REGION=value`` changes one region's value only. Both runs are the engine's own query
(without explanations), over the same profiles, so the difference is the change alone.

The population is read once per profile state and cached as Parquet under
``var/rules/``: a simulation of the whole country then reads 6 M rows from a local file
instead of decoding every profile version again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qamqor.kit.duck import compute_engine, lock_down
from qamqor.kit.errors import QamqorError
from qamqor.kit.settings import get_settings
from qamqor.profiles.catalogue import Catalogue, load_catalogue
from qamqor.profiles.models import ProfileBuild
from qamqor.rules import engine as rules_engine
from qamqor.rules.models import ContestedValue
from qamqor.rules.population import NoProfiles, input_columns, load_input
from qamqor.rules.service import bind_all, needed_features, select_programs
from qamqor.rules.spec import POPULATION_FIGURES, Parameter, Program, load_parameters, load_programs

Progress = Callable[[str, int, int | None], None]
HISTOGRAM_BINS = 20


class SimulationError(QamqorError):
    """A simulation request does not make sense (unknown parameter, bad value)."""


def apply_sets(
    program: Program,
    parameters: dict[str, Parameter],
    values: dict[str, Any],
    sets: Sequence[str],
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The bound values with ``sets`` applied, and the list of changes made."""
    new = {
        k: (dict(v, regions=dict(v["regions"])) if isinstance(v, dict) else v)
        for k, v in values.items()
    }
    changes: list[dict[str, str]] = []
    for item in sets:
        target, sep, raw = item.partition("=")
        name, _, region = target.strip().partition("@")
        if not sep or not name:
            raise SimulationError(f"--set {item!r}: expected name=value or name@REGION=value")
        if name not in values:
            used = ", ".join(sorted(values)) or "none"
            raise SimulationError(
                f"program {program.id} does not use {name!r}; the values it uses: {used}"
            )
        try:
            number = Decimal(raw.strip().replace(" ", "").replace("\u2009", ""))
        except InvalidOperation:
            raise SimulationError(f"--set {item!r}: {raw!r} is not a number") from None
        unit = parameters[name].unit if name in parameters else "tiyn"
        if unit == "tenge":
            value = str(int((number * 100).to_integral_value()))
        elif name in POPULATION_FIGURES:
            value = str(int((number * 100).to_integral_value()))  # given in tenge too
        else:
            value = str(number)
        before = new[name]
        if region:
            if not isinstance(before, dict):
                before = {"value": before, "regions": {}}
            before["regions"][region] = value
            new[name] = before
        else:
            new[name] = value  # one value everywhere: per-region values are replaced
        changes.append({"name": name, "region": region or "", "value": value})
    return new, changes


def _population_key(engine: Engine, features: Sequence[str], catalogue: Catalogue) -> str:
    with Session(engine) as session:
        build = session.execute(select(func.max(ProfileBuild.id))).scalar()
        contested = session.execute(
            select(
                func.count(ContestedValue.id),
                func.max(ContestedValue.id),
                func.count(ContestedValue.resolved_at),
            )
        ).one()
    text = f"{engine.url!r}|{build}|{tuple(contested)}|{catalogue.digest}|{','.join(features)}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load_population(
    con: duckdb.DuckDBPyConnection,
    engine: Engine,
    catalogue: Catalogue,
    features: Sequence[str],
    cache: bool = True,
) -> tuple[int, bool]:
    """``profile_input`` with every current profile: from the Parquet cache when it matches the
    profile state, else from the database (and then cached). Returns (rows, from_cache)."""
    directory = get_settings().var_dir / "rules"
    path = directory / f"population-{_population_key(engine, features, catalogue)}.parquet"
    if cache and path.exists():
        columns = ", ".join(
            f"CAST({n} AS {t}) AS {n}" for n, t in input_columns(catalogue, features).items()
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE profile_input AS "
            f"SELECT {columns} FROM read_parquet('{_sql_path(path)}')"
        )
        return int(con.execute("SELECT count(*) FROM profile_input").fetchall()[0][0]), True
    rows = load_input(con, engine, catalogue, features)
    if cache and rows:
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("population-*.parquet"):
            old.unlink(missing_ok=True)
        partial = path.with_suffix(".partial")
        con.execute(
            f"COPY (SELECT * REPLACE (CAST(holds AS VARCHAR) AS holds) FROM profile_input) "
            f"TO '{_sql_path(partial)}' (FORMAT parquet)"
        )
        partial.rename(path)
    return rows, False


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def simulate(
    engine: Engine,
    program_id: str,
    sets: Sequence[str],
    changed_limit: int = 0,
    changed_offset: int = 0,
    progress: Progress | None = None,
    cache: bool = True,
) -> dict[str, Any]:
    """The program over the whole population today and with ``sets`` applied, compared."""
    started = time.monotonic()
    phases: dict[str, float] = {}
    catalogue = load_catalogue()
    parameters = load_parameters()
    (program,) = select_programs(load_programs(), [program_id])
    features = needed_features([program], catalogue)
    for extra in ("settlement", "region_code", "members"):
        if extra not in features:
            features.append(extra)
    features = [f for f in catalogue.features if f in features]
    with compute_engine("simulate") as con:
        mark = time.monotonic()
        if progress:
            progress("reading profiles", 0, None)
        rows, cached = load_population(con, engine, catalogue, features, cache)
        if rows == 0:
            raise NoProfiles("no profiles to simulate on: run `qamqor profiles build` first")
        base = bind_all(con, engine, [program], parameters, catalogue, True)
        if not base:
            raise SimulationError(f"program {program_id} is not in force on the profiles' dates")
        changed = []
        changes: list[dict[str, str]] = []
        for bound in base:
            values, changes = apply_sets(program, parameters, bound.values, sets)
            changed.append(rules_engine.rebind(program, bound.day, values))
        phases["read"] = round(time.monotonic() - mark, 3)
        lock_down(con)
        mark = time.monotonic()
        if progress:
            progress("simulating", 0, rows)
        rules_engine.evaluate(con, base, catalogue, target="sim_base", detail=False)
        rules_engine.evaluate(con, changed, catalogue, target="sim_new", detail=False)
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE sim AS
            SELECT b.household_id, p.region_code, p.settlement, p.members,
                   b.status AS status_before, n.status AS status_after,
                   coalesce(b.amount_tiyn, 0) AS before, coalesce(n.amount_tiyn, 0) AS after
            FROM sim_base b JOIN sim_new n USING (household_id)
            JOIN profile_input p USING (household_id)
            """
        )
        phases["evaluate"] = round(time.monotonic() - mark, 3)
        mark = time.monotonic()
        result = {
            "program": program.id,
            "changes": changes,
            "as_of": sorted({b.day.isoformat() for b in base}),
            "households": rows,
            "population_from_cache": cached,
            "total": _summary(con, "TRUE")[0],
            "by_region": _grouped(con, "region_code"),
            "by_settlement": _grouped(con, "settlement"),
            "histogram": _histogram(con),
        }
        if changed_limit:
            result["changed_households"] = _changed(con, changed_limit, changed_offset)
        phases["summarise"] = round(time.monotonic() - mark, 3)
    result["phases"] = phases
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


_SUMMARY = """
    count(*) FILTER (status_before = 'eligible') AS households_before,
    count(*) FILTER (status_after = 'eligible') AS households_after,
    coalesce(sum(members) FILTER (status_before = 'eligible'), 0) AS people_before,
    coalesce(sum(members) FILTER (status_after = 'eligible'), 0) AS people_after,
    coalesce(sum(before), 0) AS monthly_before_tiyn,
    coalesce(sum(after), 0) AS monthly_after_tiyn,
    count(*) FILTER (after > before) AS gainers,
    coalesce(sum(after - before) FILTER (after > before), 0) AS gained_tiyn,
    count(*) FILTER (after < before) AS losers,
    coalesce(sum(before - after) FILTER (after < before), 0) AS lost_tiyn,
    count(*) FILTER (status_before = 'needs_review') AS needs_review_before,
    count(*) FILTER (status_after = 'needs_review') AS needs_review_after
"""
_SUMMARY_NAMES = (
    "households_before",
    "households_after",
    "people_before",
    "people_after",
    "monthly_before_tiyn",
    "monthly_after_tiyn",
    "gainers",
    "gained_tiyn",
    "losers",
    "lost_tiyn",
    "needs_review_before",
    "needs_review_after",
)


def _as_summary(row: Sequence[Any]) -> dict[str, int]:
    out = {name: int(value) for name, value in zip(_SUMMARY_NAMES, row, strict=True)}
    out["monthly_change_tiyn"] = out["monthly_after_tiyn"] - out["monthly_before_tiyn"]
    out["yearly_before_tiyn"] = 12 * out["monthly_before_tiyn"]
    out["yearly_after_tiyn"] = 12 * out["monthly_after_tiyn"]
    out["yearly_change_tiyn"] = 12 * out["monthly_change_tiyn"]
    return out


def _summary(con: duckdb.DuckDBPyConnection, where: str) -> list[dict[str, int]]:
    rows = con.execute(f"SELECT {_SUMMARY} FROM sim WHERE {where}").fetchall()
    return [_as_summary(r) for r in rows]


def _grouped(con: duckdb.DuckDBPyConnection, column: str) -> list[dict[str, Any]]:
    rows = con.execute(
        f"SELECT coalesce({column}, '?') AS key, {_SUMMARY} FROM sim GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return [{"key": r[0], **_as_summary(r[1:])} for r in rows]


def _histogram(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Counts of non-zero monthly amounts before and after, in equal-width bins."""
    top = con.execute("SELECT greatest(max(before), max(after)) FROM sim").fetchall()[0][0] or 0
    width = max(1, -(-int(top) // HISTOGRAM_BINS))
    counts = {
        (kind, int(b)): int(n)
        for kind, b, n in con.execute(
            f"""
            SELECT 'before', least(before // {width}, {HISTOGRAM_BINS - 1}), count(*)
            FROM sim WHERE before > 0 GROUP BY ALL
            UNION ALL
            SELECT 'after', least(after // {width}, {HISTOGRAM_BINS - 1}), count(*)
            FROM sim WHERE after > 0 GROUP BY ALL
            """
        ).fetchall()
    }
    return {
        "bin_width_tiyn": width,
        "bins": [
            {
                "from_tiyn": i * width,
                "to_tiyn": (i + 1) * width,
                "before": counts.get(("before", i), 0),
                "after": counts.get(("after", i), 0),
            }
            for i in range(HISTOGRAM_BINS)
        ],
    }


def _changed(con: duckdb.DuckDBPyConnection, limit: int, offset: int) -> dict[str, Any]:
    total = con.execute(
        "SELECT count(*) FROM sim WHERE before <> after OR status_before <> status_after"
    ).fetchall()[0][0]
    rows = con.execute(
        f"""
        SELECT household_id, region_code, status_before, status_after, before, after
        FROM sim WHERE before <> after OR status_before <> status_after
        ORDER BY abs(after - before) DESC, household_id LIMIT {int(limit)} OFFSET {int(offset)}
        """
    ).fetchall()
    return {
        "total": int(total),
        "offset": offset,
        "items": [
            {
                "household_id": r[0],
                "region_code": r[1],
                "status_before": r[2],
                "status_after": r[3],
                "before_tiyn": int(r[4]),
                "after_tiyn": int(r[5]),
            }
            for r in rows
        ],
    }
