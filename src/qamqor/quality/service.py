"""Data-quality issues: opened, refreshed and closed from a run's findings; listed; scored.

A run's findings (``finding`` in the snapshot's DuckDB) are reconciled with the stored issues in
four set-based statements: new issues inserted, seen ones refreshed (and reopened if they had
closed), issues in the run's scope that were not seen closed, and the affected persons and
households replaced. Scope: a whole-population run may close any issue; a run over some
households only closes issues about those households.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from qamqor.kit.staging import stage
from qamqor.profiles.snapshot import Snapshot
from qamqor.quality.models import QualityIssue, QualityIssueSubject, QualityRun
from qamqor.registry.catalogue import sources as registry_sources


@dataclass
class SyncResult:
    run_id: int
    findings: int
    opened: int
    refreshed: int
    closed: int


def _issue_rows_sql(snapshot: Snapshot) -> str:
    checks = snapshot.checks
    cases = {
        attr: " ".join(f"WHEN '{c.id}' THEN '{getattr(c, attr)}'" for c in checks.values())
        for attr in ("dimension", "severity")
    }
    return f"""
        SELECT check_id, key,
               CASE check_id {cases["dimension"]} END AS dimension,
               CASE check_id {cases["severity"]} END AS severity,
               any_value(owner) AS owner, min(detail) AS detail,
               min(region_code) AS region_code,
               CAST(count(DISTINCT iin) AS INTEGER) AS persons,
               CAST(count(DISTINCT household_id) AS INTEGER) AS households
        FROM finding GROUP BY check_id, key
    """


def _totals(snapshot: Snapshot) -> dict[str, Any]:
    con = snapshot.con
    regions = con.execute(
        "SELECT coalesce(region_code, '?'), count(*), count(DISTINCT household_id) FROM member "
        "GROUP BY ALL ORDER BY 1"
    ).fetchall()
    return {
        "persons_by_region": {r: int(p) for r, p, _ in regions},
        "households_by_region": {r: int(h) for r, _, h in regions},
        "facts_by_source": snapshot.fact_rows,
    }


def sync_issues(connection: Connection, snapshot: Snapshot, started_at: dt.datetime) -> SyncResult:
    """Reconcile stored issues with the snapshot's findings, in the caller's transaction."""
    now = dt.datetime.now(dt.UTC)
    con = snapshot.con
    if connection.dialect.name == "postgresql":
        # One reconciliation at a time: issue ids are assigned here, not by a sequence.
        connection.exec_driver_sql("LOCK TABLE dq_issue IN EXCLUSIVE MODE")
    run_id = connection.execute(
        insert(QualityRun)
        .values(
            as_of=snapshot.as_of,
            scope=snapshot.scope,
            households=snapshot.target_count(),
            findings=0,
            opened=0,
            closed=0,
            totals=_totals(snapshot),
            started_at=started_at,
            finished_at=now,
        )
        .returning(QualityRun.id)
    ).scalar_one()
    stage(
        connection,
        "dq_incoming",
        {
            "check_id": "VARCHAR(64)",
            "key": "VARCHAR(200)",
            "dimension": "VARCHAR(16)",
            "severity": "VARCHAR(16)",
            "owner": "VARCHAR(32)",
            "detail": "TEXT",
            "region_code": "VARCHAR(32)",
            "persons": "INTEGER",
            "households": "INTEGER",
        },
        con,
        _issue_rows_sql(snapshot),
    )
    connection.exec_driver_sql("CREATE INDEX ix_dq_incoming ON dq_incoming (check_id, key)")
    params = {"now": now, "run": run_id}
    # Refresh what was seen again (and reopen what had closed).
    refreshed = connection.execute(
        text(
            """
            UPDATE dq_issue SET
              status = 'open', closed_at = NULL, last_seen_at = :now, last_run_id = :run,
              detail = (SELECT i.detail FROM dq_incoming i
                        WHERE i.check_id = dq_issue.check_id AND i.key = dq_issue.key),
              region_code = (SELECT i.region_code FROM dq_incoming i
                             WHERE i.check_id = dq_issue.check_id AND i.key = dq_issue.key),
              persons = (SELECT i.persons FROM dq_incoming i
                         WHERE i.check_id = dq_issue.check_id AND i.key = dq_issue.key),
              households = (SELECT i.households FROM dq_incoming i
                            WHERE i.check_id = dq_issue.check_id AND i.key = dq_issue.key)
            WHERE EXISTS (SELECT 1 FROM dq_incoming i
                          WHERE i.check_id = dq_issue.check_id AND i.key = dq_issue.key)
            """
        ),
        params,
    ).rowcount
    # Close what the run looked at and did not see.
    if snapshot.households is None:
        scope = "TRUE"
        connection.exec_driver_sql("DROP TABLE IF EXISTS dq_scope")
    else:
        stage(
            connection,
            "dq_scope",
            {"household_id": "VARCHAR(200)"},
            con,
            "SELECT household_id FROM target",
        )
        scope = (
            "id IN (SELECT s.issue_id FROM dq_issue_subject s "
            "JOIN dq_scope t ON t.household_id = s.household_id)"
        )
    closed = connection.execute(
        text(
            f"""
            UPDATE dq_issue SET status = 'closed', closed_at = :now, last_run_id = :run
            WHERE status = 'open' AND {scope}
              AND NOT EXISTS (SELECT 1 FROM dq_incoming i
                              WHERE i.check_id = dq_issue.check_id AND i.key = dq_issue.key)
            """
        ),
        params,
    ).rowcount
    # Open what is new, with ids following the largest so subjects can refer to them.
    first_id = int(
        connection.execute(select(func.coalesce(func.max(QualityIssue.id), 0))).scalar_one()
    )
    opened = connection.execute(
        text(
            f"""
            INSERT INTO dq_issue (id, check_id, key, dimension, severity, owner, status, detail,
                                  region_code, persons, households, opened_at, last_seen_at,
                                  closed_at, opened_run_id, last_run_id)
            SELECT {first_id} + row_number() OVER (ORDER BY i.check_id, i.key),
                   i.check_id, i.key, i.dimension, i.severity, i.owner, 'open', i.detail,
                   i.region_code, i.persons, i.households, :now, :now, NULL, :run, :run
            FROM dq_incoming i
            WHERE NOT EXISTS (SELECT 1 FROM dq_issue d
                              WHERE d.check_id = i.check_id AND d.key = i.key)
            """
        ),
        params,
    ).rowcount
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('dq_issue', 'id'), "
            "(SELECT coalesce(max(id), 1) FROM dq_issue))"
        )
    # Subjects of every issue seen: replaced by what this run saw.
    stage(
        connection,
        "dq_subject_incoming",
        {
            "check_id": "VARCHAR(64)",
            "key": "VARCHAR(200)",
            "household_id": "VARCHAR(200)",
            "iin": "VARCHAR(12)",
        },
        con,
        "SELECT DISTINCT check_id, key, household_id, iin FROM finding",
    )
    connection.exec_driver_sql(
        "CREATE INDEX ix_dq_subject_incoming ON dq_subject_incoming (check_id, key)"
    )
    # Only what differs is written: a worker's cycle sees most of its households' issues
    # again with the same subjects, and deleting and inserting them all cost the server
    # ~80 ms a cycle of 2,500 events (a dead row and four index entries a subject). A run
    # over some households drops only subjects of those households: the others, and persons
    # in no household (a second registration), were not looked at (they were dropped before:
    # the country run's subjects came back only with the next country run).
    looked_at = (
        ""
        if snapshot.households is None
        else "AND household_id IN (SELECT household_id FROM dq_scope) "
    )
    connection.execute(
        text(
            "DELETE FROM dq_issue_subject WHERE issue_id IN (SELECT d.id FROM dq_issue d "
            f"JOIN dq_incoming i ON i.check_id = d.check_id AND i.key = d.key) {looked_at}"
            "AND NOT EXISTS (SELECT 1 FROM dq_subject_incoming s JOIN dq_issue d "
            "ON d.check_id = s.check_id AND d.key = s.key "
            "WHERE d.id = dq_issue_subject.issue_id AND "
            f"{_same_subject('s', 'dq_issue_subject')})"
        )
    )
    connection.execute(
        text(
            "INSERT INTO dq_issue_subject (issue_id, household_id, iin) "
            "SELECT d.id, s.household_id, s.iin FROM dq_subject_incoming s "
            "JOIN dq_issue d ON d.check_id = s.check_id AND d.key = s.key "
            "WHERE NOT EXISTS (SELECT 1 FROM dq_issue_subject x "
            f"WHERE x.issue_id = d.id AND {_same_subject('s', 'x')})"
        )
    )
    if snapshot.households is not None:
        _recount_seen(connection)
    findings = sum(snapshot.findings.values())
    connection.execute(
        update(QualityRun)
        .where(QualityRun.id == run_id)
        .values(
            findings=findings,
            opened=opened,
            closed=closed,
            finished_at=dt.datetime.now(dt.UTC),
        )
    )
    for name in ("dq_incoming", "dq_subject_incoming", "dq_scope"):
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
    return SyncResult(run_id, findings, opened, refreshed, closed)


def _recount_seen(connection: Connection) -> None:
    """The persons and households of the issues a run over some households saw, counted
    from their subjects where that differs from the run's count.

    Such a run sees only its households' part of an issue that spans others (a person listed
    in two households, namesakes in two families), and counted only that part; the issue's
    subjects keep the households it did not look at (above). Without this, every worker
    cycle that touched one of the households cut the issue's counts to its own view: after a
    day of events on the million-household register 10,591 of 18,130 open "person in two
    households" issues said one household while listing two."""
    seen = (
        "SELECT d.id FROM dq_issue d "
        "JOIN dq_incoming i ON i.check_id = d.check_id AND i.key = d.key"
    )
    persons = (
        "(SELECT count(DISTINCT s.iin) FROM dq_issue_subject s WHERE s.issue_id = dq_issue.id)"
    )
    households = (
        "(SELECT count(DISTINCT s.household_id) FROM dq_issue_subject s "
        "WHERE s.issue_id = dq_issue.id)"
    )
    connection.exec_driver_sql(
        f"UPDATE dq_issue SET persons = {persons}, households = {households} "
        f"WHERE id IN ({seen}) AND (persons <> {persons} OR households <> {households})"
    )


def _same_subject(a: str, b: str) -> str:
    """SQL: the subjects ``a`` and ``b`` name the same household and person (either may be
    unknown: NULL matches NULL)."""
    return " AND ".join(
        f"({a}.{c} = {b}.{c} OR ({a}.{c} IS NULL AND {b}.{c} IS NULL))"
        for c in ("household_id", "iin")
    )


# --- reading ----------------------------------------------------------------------------------


def list_issues(
    session: Session,
    *,
    status: str | None = "open",
    check_id: str | None = None,
    owner: str | None = None,
    severity: str | None = None,
    region_code: str | None = None,
    household_id: str | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[int, list[QualityIssue]]:
    query = select(QualityIssue)
    if status:
        query = query.where(QualityIssue.status == status)
    if check_id:
        query = query.where(QualityIssue.check_id == check_id)
    if owner:
        query = query.where(QualityIssue.owner == owner)
    if severity:
        query = query.where(QualityIssue.severity == severity)
    if region_code:
        query = query.where(QualityIssue.region_code == region_code)
    if household_id:
        query = query.where(
            QualityIssue.id.in_(
                select(QualityIssueSubject.issue_id).where(
                    QualityIssueSubject.household_id == household_id
                )
            )
        )
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.scalars(query.order_by(QualityIssue.id).offset(offset).limit(limit)).all()
    return total, list(rows)


def issue_subjects(session: Session, issue_id: int) -> list[QualityIssueSubject]:
    return list(
        session.scalars(
            select(QualityIssueSubject)
            .where(QualityIssueSubject.issue_id == issue_id)
            .order_by(QualityIssueSubject.id)
        )
    )


def latest_run(session: Session) -> QualityRun | None:
    return session.scalars(
        select(QualityRun).where(QualityRun.scope == "all").order_by(QualityRun.id.desc()).limit(1)
    ).first()


def scorecard(session: Session, by: str = "source") -> list[dict[str, Any]]:
    """Quality per source registry (``by='source'``) or per region (``by='region'``).

    validity      facts / (facts + rejections) of the registry's ingested rows (per source)
    completeness  1 - persons named by open completeness issues / persons
    consistency   1 - persons named by open consistency issues / persons
    timeliness    1 when the registry delivered within its declared cadence, else 0 (per
                  source); per region, 1 - persons named by open timeliness issues / persons
    open issues by severity
    """
    from qamqor.registry.models import Batch

    run = latest_run(session)
    totals = run.totals if run is not None else {}
    persons_by_region: dict[str, int] = totals.get("persons_by_region", {})
    all_persons = sum(persons_by_region.values())
    dimension_col = QualityIssue.dimension
    key = QualityIssue.owner if by == "source" else func.coalesce(QualityIssue.region_code, "?")
    counts = session.execute(
        select(
            key, dimension_col, QualityIssue.severity, func.count(), func.sum(QualityIssue.persons)
        )
        .where(QualityIssue.status == "open")
        .group_by(key, dimension_col, QualityIssue.severity)
    ).all()
    by_key: dict[str, dict[str, Any]] = {}
    for k, dimension, severity, issues, persons in counts:
        entry = by_key.setdefault(
            str(k), {"issues": {"error": 0, "warning": 0, "info": 0}, "persons": {}}
        )
        entry["issues"][severity] += int(issues)
        if severity != "info":
            entry["persons"][dimension] = entry["persons"].get(dimension, 0) + int(persons or 0)
    out = []
    if by == "source":
        batches = session.execute(
            select(Batch.source, func.sum(Batch.facts), func.sum(Batch.rejections)).group_by(
                Batch.source
            )
        ).all()
        ingested = {s: (int(f or 0), int(r or 0)) for s, f, r in batches}
        stale = {
            i.key
            for i in session.scalars(
                select(QualityIssue).where(
                    QualityIssue.status == "open", QualityIssue.check_id == "stale_source"
                )
            )
        }
        for code in registry_sources():
            entry = by_key.get(code, _empty_entry())
            good, bad = ingested.get(code, (0, 0))
            out.append(
                {
                    "key": code,
                    "validity": round(good / (good + bad), 6) if good + bad else None,
                    "completeness": _share(entry["persons"].get("completeness", 0), all_persons),
                    "consistency": _share(entry["persons"].get("consistency", 0), all_persons),
                    "timeliness": None if run is None else (0.0 if code in stale else 1.0),
                    "open_issues": entry["issues"],
                }
            )
        return out
    for region, persons in sorted(persons_by_region.items()):
        entry = by_key.get(region, _empty_entry())
        out.append(
            {
                "key": region,
                "persons": persons,
                "validity": _share(entry["persons"].get("validity", 0), persons),
                "completeness": _share(entry["persons"].get("completeness", 0), persons),
                "consistency": _share(entry["persons"].get("consistency", 0), persons),
                "timeliness": _share(entry["persons"].get("timeliness", 0), persons),
                "open_issues": entry["issues"],
            }
        )
    return out


def _empty_entry() -> dict[str, Any]:
    return {"issues": {"error": 0, "warning": 0, "info": 0}, "persons": {}}


def _share(affected: int, total: int) -> float | None:
    if not total:
        return None
    return round(max(0.0, 1 - affected / total), 6)
