"""Deciding: every program over the current profiles, stored when it matters; replays.

``decide`` loads the current profiles (all, or some households) into a DuckDB, binds every
program in force to the profile's reference day, evaluates them with ``engine.evaluate`` and
writes a decision where it differs from the household's current one (``decision_head``).

What is stored: every decision that is eligible or needs review, every change of a current
decision (including to ineligible: the household must be told why), and, when households are
named, every decision about them. A country-wide run does not store the millions of plain
"not eligible, never was" results: they are what an explanation recomputes on demand.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from qamqor.kit import sqlcheck
from qamqor.kit.duck import compute_engine, lock_down
from qamqor.kit.errors import NotFoundError, QamqorError
from qamqor.kit.i18n import normalise_language
from qamqor.kit.staging import arrow_batches, copy_into
from qamqor.profiles.catalogue import Catalogue, load_catalogue
from qamqor.registry.loading import bulk_insert
from qamqor.rules import engine as rules_engine
from qamqor.rules.engine import Evaluable
from qamqor.rules.models import (
    ContestedValue,
    Decision,
    DecisionHead,
    DecisionRun,
    ProgramVersion,
)
from qamqor.rules.population import (
    NoProfiles,
    create_input,
    input_columns,
    load_input,
    population_figures,
)
from qamqor.rules.spec import (
    POPULATION_FIGURES,
    Parameter,
    Program,
    load_parameters,
    load_programs,
    parse_program,
)
from qamqor.rules.wellbeing import (
    WellbeingBound,
    WellbeingSpec,
    bind_wellbeing,
    explain_wellbeing,
    load_wellbeing,
    parse_wellbeing,
    rebind_wellbeing,
)

Progress = Callable[[str, int, int | None], None]
WELLBEING = "wellbeing"


@dataclass
class DecideReport:
    run_id: int
    scope: str
    households: int
    written: int
    totals: dict[str, dict[str, Any]]
    phases: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_programs(programs: dict[str, Program], wanted: Sequence[str] | None) -> list[Program]:
    if not wanted:
        return list(programs.values())
    unknown = [p for p in wanted if p not in programs]
    if unknown:
        raise QamqorError(
            f"unknown program {', '.join(unknown)}; published: {', '.join(sorted(programs))}"
        )
    return [programs[p] for p in wanted]


def in_force(program: Program, day: dt.date) -> bool:
    return program.effective_from <= day and (
        program.effective_to is None or day <= program.effective_to
    )


def select_rules(
    wanted: Sequence[str] | None,
) -> tuple[list[Program], WellbeingSpec | None]:
    """The programs (and the well-being levels, id ``wellbeing``) asked for; all by default."""
    programs = load_programs()
    if not wanted:
        return list(programs.values()), load_wellbeing()
    chosen = select_programs(programs, [w for w in wanted if w != WELLBEING])
    return chosen, load_wellbeing() if WELLBEING in wanted else None


def needed_features(
    programs: Sequence[Program], catalogue: Catalogue, wellbeing: WellbeingSpec | None = None
) -> list[str]:
    """The features to load: those the programs read, plus the region (per-region values) and
    members and per-capita income (the median)."""
    names = {"region_code", "members", "per_capita_income_tiyn"}
    for program in programs:
        names |= set(rules_engine.features_used(program, catalogue))
    if wellbeing is not None:
        for indicator in wellbeing.indicators:
            names |= sqlcheck.columns_of(indicator.tree)
    return [f for f in catalogue.features if f in names]


def bind_all(
    con: duckdb.DuckDBPyConnection,
    engine: Engine,
    programs: Sequence[Program],
    parameters: dict[str, Parameter],
    catalogue: Catalogue,
    whole_population_loaded: bool,
    wellbeing: WellbeingSpec | None = None,
) -> list[Evaluable]:
    """Every program in force on each reference day present in ``profile_input`` (and the
    well-being levels when given)."""
    days = [r[0] for r in con.execute("SELECT DISTINCT as_of FROM profile_input").fetchall()]
    bounds: list[Evaluable] = []
    published = parameters is load_parameters()
    for day in sorted(days):
        active = [p for p in programs if in_force(p, day)]
        texts = (
            tuple((p.id, p.text) for p in active),
            wellbeing.text if wellbeing is not None else None,
        )
        needed = _FIGURES_NEEDED.get(texts)
        if needed is None:
            needed = rules_engine.figures_needed(active)
            if wellbeing is not None:
                needed |= wellbeing.parameters_used() & set(POPULATION_FIGURES)
            if len(_FIGURES_NEEDED) >= 64:
                _FIGURES_NEEDED.clear()
            _FIGURES_NEEDED[texts] = needed
        figures: dict[str, int] = {}
        if needed:
            figures = population_figures(con, engine, catalogue, day, whole_population_loaded)
        key = (texts, day, tuple(sorted(figures.items())))
        bound = _BOUND.get(key) if published else None
        if bound is None:
            bound = [rules_engine.bind(p, parameters, day, figures) for p in active]
            if wellbeing is not None:
                bound.append(bind_wellbeing(wellbeing, parameters, day, figures))
            if published:
                if len(_BOUND) >= 64:
                    _BOUND.clear()
                _BOUND[key] = bound
        bounds.extend(bound)
    return bounds


# What ``bind_all`` finds for the same program texts (and day and figures) every time, kept
# per process: a worker binds the programs for every micro-batch, and finding the parameters
# a program reads parses its expressions with sqlglot (some 35 ms a cycle). Bindings are kept
# only for the published parameters, which do not change while the process runs.
_FIGURES_NEEDED: dict[tuple[Any, ...], set[str]] = {}
_BOUND: dict[tuple[Any, ...], list[Evaluable]] = {}


def decide(
    engine: Engine,
    programs: Sequence[str] | None = None,
    households: Sequence[str] | None = None,
    progress: Progress | None = None,
    store_all: bool | None = None,
    resident: bool = False,
) -> DecideReport:
    """Decide every program (or ``programs``) for every household (or ``households``).

    ``store_all`` stores every decision, "not eligible" ones included (default: when
    households are named, as for an explanation); otherwise only what matters is stored.
    ``resident`` computes in the process's resident DuckDB (the worker: ``kit/duck.py``)."""
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC)
    phases: dict[str, float] = {}
    catalogue = load_catalogue()
    parameters = load_parameters()
    chosen, wellbeing = select_rules(programs)
    with compute_engine("rules", on_disk=households is None, resident=resident) as con:
        mark = time.monotonic()
        if progress:
            progress("reading profiles", 0, None)
        count = load_input(
            con, engine, catalogue, needed_features(chosen, catalogue, wellbeing), households
        )
        if count == 0:
            raise NoProfiles("no profiles to decide on: run `qamqor profiles build` first")
        bounds = bind_all(con, engine, chosen, parameters, catalogue, households is None, wellbeing)
        phases["read"] = round(time.monotonic() - mark, 3)
        lock_down(con)
        mark = time.monotonic()
        if progress:
            progress("deciding", 0, count)
        rules_engine.evaluate(con, [_Compiled(b) for b in bounds], catalogue)
        phases["evaluate"] = round(time.monotonic() - mark, 3)
        mark = time.monotonic()
        if progress:
            progress("writing", 0, count)
        scope = "all" if households is None else "households"
        keep_all = households is not None if store_all is None else store_all
        with engine.begin() as connection:
            run_id, written = write_decisions(connection, con, bounds, scope, started_at, keep_all)
            totals = _totals(con)
            connection.execute(
                update(DecisionRun)
                .where(DecisionRun.id == run_id)
                .values(
                    households=count,
                    written=written,
                    totals=totals,
                    phases=phases,
                    finished_at=dt.datetime.now(dt.UTC),
                )
            )
        phases["write"] = round(time.monotonic() - mark, 3)
        if progress:
            progress("writing", count, count)
    return DecideReport(
        run_id=run_id,
        scope=scope,
        households=count,
        written=written,
        totals=totals,
        phases=phases,
        seconds=round(time.monotonic() - started, 3),
    )


# (program, version, day, catalogue, source, detail) -> its SQL: the same for every micro-batch
# a worker decides, and compiling the programs with sqlglot took 35 ms of each.
_PROGRAM_SQL: dict[tuple[str, str, dt.date, str, str, bool], str] = {}


@dataclass(frozen=True)
class _Compiled:
    """A bound program (or the well-being levels) whose SQL is compiled once per process.

    The key holds everything the SQL depends on: ``version`` hashes the program text and the
    values bound, and the day, the catalogue and the query's source complete it."""

    bound: Evaluable

    @property
    def id(self) -> str:
        return self.bound.id

    @property
    def text(self) -> str:
        return self.bound.text

    @property
    def day(self) -> dt.date:
        return self.bound.day

    @property
    def values(self) -> dict[str, Any]:
        return self.bound.values

    @property
    def version(self) -> str:
        return self.bound.version

    def features(self, catalogue: Catalogue) -> list[str]:
        return self.bound.features(catalogue)

    def compile(self, catalogue: Catalogue, source: str, detail: bool) -> str:
        key = (self.id, self.version, self.day, catalogue.digest, source, detail)
        sql = _PROGRAM_SQL.get(key)
        if sql is None:
            if len(_PROGRAM_SQL) >= 256:
                _PROGRAM_SQL.clear()
            sql = _PROGRAM_SQL[key] = self.bound.compile(catalogue, source, detail)
        return sql


def _totals(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    totals: dict[str, dict[str, Any]] = {}
    for program_id, status, households, amount in con.execute(
        "SELECT program_id, status, count(*), sum(amount_tiyn) FROM decision_out "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        entry = totals.setdefault(program_id, {s: 0 for s in rules_engine.STATUSES})
        entry[status] = int(households)
        if status == "eligible":
            entry["amount_tiyn"] = int(amount or 0)
    for entry in totals.values():
        entry.setdefault("amount_tiyn", 0)
    return totals


def _timestamp(connection: Connection, moment: dt.datetime) -> str:
    """A timestamp literal as SQLAlchemy stores it on this database."""
    if connection.dialect.name == "sqlite":
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment.astimezone(dt.UTC).isoformat()


def write_decisions(
    connection: Connection,
    con: duckdb.DuckDBPyConnection,
    bounds: Sequence[Evaluable],
    scope: str,
    started_at: dt.datetime,
    keep_all: bool = False,
) -> tuple[int, int]:
    """Store what ``decision_out`` holds that differs from the current decisions."""
    run_id = connection.execute(
        insert(DecisionRun)
        .values(
            as_of=min(b.day for b in bounds) if bounds else started_at.date(),
            scope=scope,
            programs=sorted({b.id for b in bounds}),
            households=0,
            written=0,
            totals={},
            phases={},
            started_at=started_at,
            finished_at=started_at,
        )
        .returning(DecisionRun.id)
    ).scalar_one()
    _store_versions(connection, bounds, started_at)
    _load_heads(connection, con, scope)
    keep = "TRUE" if keep_all else "o.status <> 'ineligible'"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE decision_new AS
        SELECT o.* FROM decision_out o LEFT JOIN dhead h USING (household_id, program_id)
        WHERE (h.content_sha256 IS NULL AND {keep})
           OR h.content_sha256 IS DISTINCT FROM o.content_sha256 AND h.content_sha256 IS NOT NULL
        """
    )
    decided_at = _timestamp(connection, dt.datetime.now(dt.UTC))
    columns = [
        "run_id",
        "household_id",
        "program_id",
        "program_version",
        "profile_version_id",
        "as_of",
        "status",
        "amount_tiyn",
        "detail",
        "content_sha256",
        "decided_at",
    ]
    written = bulk_insert(
        connection,
        "decision",
        columns,
        arrow_batches(
            con,
            f"SELECT CAST({int(run_id)} AS BIGINT), household_id, program_id, program_version, "
            "profile_version_id, CAST(as_of AS VARCHAR), status, amount_tiyn, detail, "
            f"content_sha256, '{decided_at}' FROM decision_new "
            "ORDER BY household_id, program_id",
        ),
    )
    if written:
        heads = (
            "INSERT INTO decision_head (household_id, program_id, decision_id, status, "
            "amount_tiyn, content_sha256) SELECT household_id, program_id, id, status, "
            f"amount_tiyn, content_sha256 FROM decision WHERE run_id = {int(run_id)}"
        )
        if scope == "households":
            # A micro-batch's heads mostly exist already: updated in place (on PostgreSQL a
            # HOT update, without new index entries, where the status stays and the page has
            # room) rather than deleted and inserted again, which took twice as long (26-32
            # against 60-65 ms for a worker cycle's ~2,300 heads, alternating).
            connection.exec_driver_sql(
                f"{heads} ON CONFLICT (household_id, program_id) DO UPDATE SET "
                "decision_id = excluded.decision_id, status = excluded.status, "
                "amount_tiyn = excluded.amount_tiyn, content_sha256 = excluded.content_sha256"
            )
        else:
            # by the heads' key: a row-value IN over the run's decisions (an EXISTS correlated
            # on every head took 89 s to replace 600 heads among 6 million)
            connection.exec_driver_sql(
                "DELETE FROM decision_head WHERE (household_id, program_id) IN "
                f"(SELECT household_id, program_id FROM decision WHERE run_id = {int(run_id)})"
            )
            connection.exec_driver_sql(heads)
    return run_id, written


def _store_versions(
    connection: Connection, bounds: Sequence[Evaluable], created_at: dt.datetime
) -> None:
    wanted = {b.version: b for b in bounds}
    if not wanted:
        return
    have = set(
        connection.execute(
            select(ProgramVersion.sha256).where(ProgramVersion.sha256.in_(list(wanted)))
        ).scalars()
    )
    for version, bound in wanted.items():
        if version not in have:
            connection.execute(
                insert(ProgramVersion).values(
                    sha256=version,
                    program_id=bound.id,
                    spec_text=bound.text,
                    parameters=bound.values,
                    created_at=created_at,
                )
            )


def _load_heads(connection: Connection, con: duckdb.DuckDBPyConnection, scope: str) -> None:
    con.execute(
        "CREATE OR REPLACE TEMP TABLE dhead "
        "(household_id VARCHAR, program_id VARCHAR, content_sha256 VARCHAR)"
    )
    households = None
    if scope != "all":
        rows = con.execute("SELECT household_id FROM profile_input").fetchall()
        households = [r[0] for r in rows]
    copy_into(
        con,
        "dhead",
        connection,
        DecisionHead,
        ["household_id", "program_id", "content_sha256"],
        "household_id",
        households,
    )


# --- replay ----------------------------------------------------------------------------------


@dataclass
class Replay:
    decision_id: int
    matches: bool
    stored: dict[str, Any]
    recomputed: dict[str, Any]


def replay(engine: Engine, decision_id: int) -> Replay:
    """Recompute one stored decision from its profile version, program text and parameter
    values (and the contested values it held), and compare byte for byte."""
    with Session(engine) as session:
        decision = session.get(Decision, decision_id)
        if decision is None:
            raise NotFoundError(f"no decision {decision_id}")
        version = session.get(ProgramVersion, decision.program_version)
        assert version is not None
        stored = _row(decision)
    catalogue = load_catalogue()
    bound = rebound(version, decision.as_of)
    if bound.version != decision.program_version:
        raise QamqorError(
            f"program version {decision.program_version[:12]} does not rebuild from its stored "
            "text and parameters"
        )
    # the values the citizen contested then, with the reasons they were held for
    reasons = {
        h["f"]: h["why"]
        for h in json.loads(decision.detail)["held"]
        if any(str(w).startswith("contested:") for w in h["why"])
    }
    with compute_engine("replay") as con:
        load_input(
            con,
            engine,
            catalogue,
            _features_of(bound, catalogue),
            version_ids=[decision.profile_version_id],
            contested=False,
        )
        if reasons:
            con.execute(
                "UPDATE profile_input SET holds = json_merge_patch(holds, ?::JSON), "
                "held = list_distinct(list_concat(held, ?))",
                [json.dumps(reasons), list(reasons)],
            )
        lock_down(con)
        rules_engine.evaluate(con, [bound], catalogue)
        rows = con.execute(
            "SELECT status, amount_tiyn, detail, content_sha256 FROM decision_out"
        ).fetchall()
    status, amount, detail, sha = rows[0]
    recomputed = {
        "status": status,
        "amount_tiyn": amount,
        "detail": detail,
        "content_sha256": sha,
    }
    return Replay(decision_id, recomputed == stored, stored, recomputed)


def rebound(version: ProgramVersion, day: dt.date) -> Evaluable:
    """A stored program version bound again to its stored values."""
    origin = f"program_version {version.sha256[:12]}"
    if version.program_id == WELLBEING:
        spec = parse_wellbeing(version.spec_text, load_parameters(), origin)
        return rebind_wellbeing(spec, day, dict(version.parameters))
    program = parse_program(version.spec_text, load_parameters(), origin)
    return rules_engine.rebind(program, day, dict(version.parameters))


def _features_of(bound: Evaluable, catalogue: Catalogue) -> list[str]:
    names = set(bound.features(catalogue)) | {"region_code", "members", "per_capita_income_tiyn"}
    return [f for f in catalogue.features if f in names]


def _row(decision: Decision) -> dict[str, Any]:
    return {
        "status": decision.status,
        "amount_tiyn": decision.amount_tiyn,
        "detail": decision.detail,
        "content_sha256": decision.content_sha256,
    }


# --- households given as values (tests, what-if) ---------------------------------------------


def decide_rows(
    rows: Sequence[dict[str, Any]],
    day: dt.date,
    programs: Sequence[str] | None = None,
    figures: dict[str, int] | None = None,
    parameters: dict[str, Parameter] | None = None,
) -> list[dict[str, Any]]:
    """Decisions for households given as values, through the same query as ``decide``.

    Each row: ``{"household_id": ..., "features": {name: value}, "holds": {name: [reasons]}}``;
    a feature left out is unknown (NULL). ``figures`` gives the population figures (the
    median per-capita income) the programs need. Returns one dict per household and program:
    household_id, program_id, status, amount_tiyn, detail (parsed), content_sha256.
    """
    catalogue = load_catalogue()
    parameters = parameters if parameters is not None else load_parameters()
    chosen = [p for p in select_programs(load_programs(), programs) if in_force(p, day)]
    bounds = [rules_engine.bind(p, parameters, day, figures or {}) for p in chosen]
    features = needed_features(chosen, catalogue)
    with compute_engine("rules-rows") as con:
        create_input(con, catalogue, features)
        columns = list(input_columns(catalogue, features))
        table = pa.table(
            {
                "household_id": [str(r["household_id"]) for r in rows],
                "profile_version_id": [int(r.get("profile_version_id", 0)) for r in rows],
                "as_of": [day for _ in rows],
                "holds": [json.dumps(r.get("holds") or {}, sort_keys=True) for r in rows],
                "held": [sorted(r.get("holds") or {}) for r in rows],
                **{f: [r["features"].get(f) for r in rows] for f in features},
            }
        )
        con.register("incoming", table)
        con.execute(f"INSERT INTO profile_input SELECT {', '.join(columns)} FROM incoming")
        con.unregister("incoming")
        lock_down(con)
        rules_engine.evaluate(con, bounds, catalogue)
        result = con.execute(
            "SELECT household_id, program_id, status, amount_tiyn, detail, content_sha256 "
            "FROM decision_out ORDER BY household_id, program_id"
        ).fetchall()
    return [
        {
            "household_id": r[0],
            "program_id": r[1],
            "status": r[2],
            "amount_tiyn": r[3],
            "detail": json.loads(r[4]),
            "content_sha256": r[5],
        }
        for r in result
    ]


# --- one household: current decisions, stored decisions, contested values -------------------


def household_decisions(
    engine: Engine, household_id: str, programs: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Every program decided now for one household's current profile, without writing; each
    with the id of the stored current decision when that one is identical."""
    catalogue = load_catalogue()
    parameters = load_parameters()
    chosen, wellbeing = select_rules(programs)
    with compute_engine("rules-one") as con:
        if not load_input(
            con, engine, catalogue, needed_features(chosen, catalogue, wellbeing), [household_id]
        ):
            raise NotFoundError(f"household {household_id} has no profile")
        bounds = bind_all(con, engine, chosen, parameters, catalogue, False, wellbeing)
        lock_down(con)
        rules_engine.evaluate(con, bounds, catalogue)
        rows = con.execute(
            "SELECT program_id, status, amount_tiyn, detail, content_sha256, as_of, "
            "profile_version_id, program_version FROM decision_out ORDER BY program_id"
        ).fetchall()
    by_version = {b.version: b for b in bounds}
    with Session(engine) as session:
        heads = {
            h.program_id: h
            for h in session.execute(
                select(DecisionHead).where(DecisionHead.household_id == household_id)
            ).scalars()
        }
    out = []
    for program_id, status, amount, detail, sha, as_of, profile_version_id, version in rows:
        head = heads.get(program_id)
        out.append(
            {
                "household_id": household_id,
                "program_id": program_id,
                "status": status,
                "amount_tiyn": amount,
                "detail": json.loads(detail),
                "content_sha256": sha,
                "as_of": as_of,
                "profile_version_id": profile_version_id,
                "program_version": version,
                "decision_id": head.decision_id if head and head.content_sha256 == sha else None,
                "bound": by_version[version],  # what decided it, for the explanation
            }
        )
    return out


def stored_decision(session: Session, decision_id: int) -> dict[str, Any]:
    decision = session.get(Decision, decision_id)
    if decision is None:
        raise NotFoundError(f"no decision {decision_id}")
    return {
        "decision_id": decision.id,
        "run_id": decision.run_id,
        "household_id": decision.household_id,
        "program_id": decision.program_id,
        "status": decision.status,
        "amount_tiyn": decision.amount_tiyn,
        "detail": json.loads(decision.detail),
        "content_sha256": decision.content_sha256,
        "as_of": decision.as_of,
        "profile_version_id": decision.profile_version_id,
        "program_version": decision.program_version,
        "decided_at": decision.decided_at,
    }


def head_decision(session: Session, household_id: str, program_id: str) -> dict[str, Any]:
    head = session.get(DecisionHead, (household_id, program_id))
    if head is None:
        raise NotFoundError(f"no decision of {program_id} for household {household_id}")
    return stored_decision(session, head.decision_id)


def list_decisions(
    session: Session,
    household_id: str | None = None,
    program_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Decision]:
    query = select(Decision).order_by(Decision.id.desc()).limit(limit).offset(offset)
    if household_id:
        query = query.where(Decision.household_id == household_id)
    if program_id:
        query = query.where(Decision.program_id == program_id)
    if status:
        query = query.where(Decision.status == status)
    return list(session.execute(query).scalars())


def contest_value(
    session: Session, household_id: str, feature: str, reason: str, opened_by: str
) -> ContestedValue:
    """Put a profile value under appeal: every rule reading it treats it as unknown."""
    if feature not in load_catalogue().features:
        raise QamqorError(f"unknown feature {feature!r}")
    if not reason.strip():
        raise QamqorError("a contested value needs a reason")
    row = ContestedValue(
        household_id=household_id,
        feature=feature,
        reason=reason.strip(),
        opened_by=opened_by,
        opened_at=dt.datetime.now(dt.UTC),
        resolved_at=None,
    )
    session.add(row)
    session.flush()
    return row


def resolve_contest(session: Session, contest_id: int) -> ContestedValue:
    row = session.get(ContestedValue, contest_id)
    if row is None:
        raise NotFoundError(f"no contested value {contest_id}")
    if row.resolved_at is None:
        row.resolved_at = dt.datetime.now(dt.UTC)
    return row


def bound_of(session: Session, decision: dict[str, Any]) -> Evaluable:
    """The program (or levels) exactly as it made ``decision``, bound to its values."""
    if decision.get("bound") is not None:
        return decision["bound"]
    stored = session.get(ProgramVersion, decision["program_version"])
    if stored is None:
        raise NotFoundError(f"program version {decision['program_version'][:12]} is not stored")
    day = decision["as_of"]
    return rebound(stored, day if isinstance(day, dt.date) else dt.date.fromisoformat(day))


def explain_decision(session: Session, decision: dict[str, Any], lang: str) -> dict[str, Any]:
    """A decision (stored, or decided now) explained in ``lang`` by what made it."""
    from qamqor.rules.explain import explain

    bound = bound_of(session, decision)
    if decision["program_id"] == WELLBEING:
        assert isinstance(bound, WellbeingBound)
        explanation = explain_wellbeing(decision["detail"], bound, normalise_language(lang))
    else:
        assert isinstance(bound, rules_engine.Bound)
        explanation = explain(decision, bound.program, load_catalogue(), lang)
    explanation["decision_id"] = decision.get("decision_id")
    explanation["household_id"] = decision.get("household_id")
    explanation["as_of"] = str(decision["as_of"]) if decision.get("as_of") else None
    explanation["program_version"] = decision.get("program_version")
    return explanation
