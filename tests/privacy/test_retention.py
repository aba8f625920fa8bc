"""Retention on SQLite and PostgreSQL: what is past its period is anonymised, what is inside it
is untouched, a second run changes nothing, and the audit log still verifies."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from qamqor.audit import service as audit
from qamqor.cli import app
from qamqor.kit.db import Base, session_scope
from qamqor.kit.settings import get_settings
from qamqor.privacy import fields, keyring, retention
from qamqor.privacy.retention import Period, RetentionPolicyError, salted_hash
from qamqor.registry.ingest import ingest_file
from qamqor.registry.models import (
    RAW_SEALED,
    Batch,
    DisabilityFact,
    HouseholdFact,
    IncomeFact,
    PopulationFact,
    RegistryEvent,
    Rejection,
)
from tests.privacy.test_fields import disability_rows, write_disability
from tests.registry.builders import population_rows, to_csv_bytes, write_csv

AS_OF = dt.date(2026, 11, 29)
TODAY = dt.date(2026, 11, 29)


# --- the policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "as_of", "cutoff"),
    [
        (Period(years=5), dt.date(2026, 11, 29), dt.date(2021, 11, 29)),
        (Period(years=1), dt.date(2028, 2, 29), dt.date(2027, 2, 28)),
        (Period(days=30), dt.date(2026, 3, 1), dt.date(2026, 1, 30)),
        (Period(years=1, days=1), dt.date(2026, 1, 1), dt.date(2024, 12, 31)),
    ],
)
def test_a_period_counts_back_from_the_day(period: Period, as_of: dt.date, cutoff: dt.date) -> None:
    assert period.cutoff(as_of) == cutoff


def test_the_built_in_policy_loads_with_bases_in_three_languages() -> None:
    policy = retention.load_policy()
    codes = [c.code for c in policy.categories]
    assert codes == [
        "rejected_raw_rows",
        "deceased_persons",
        "old_income",
        "access_records",
        "access_audit_entries",
        "event_payloads",
        "failed_event_payloads",
    ]
    for category in policy.categories:
        assert all(len(category.basis[lang]) > 40 for lang in ("ru", "kk", "en"))
    assert len(policy.sha256) == 64


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"handler": "delete"}, "handler"),
        ({"period": {"years": 0}}, "positive"),
        ({"period": {"months": 3}}, "years and/or days"),
        ({"columns": {"iin": "encrypt"}}, "action"),
        ({"columns": {"no_such_column": "hash"}}, "no column no_such_column"),
        ({"table": "no_such_table"}, "no table"),
        ({"basis": {"en": "x"}}, "ru, kk and en"),
        ({"where": {"no_such_column": ["x"]}}, "no column no_such_column"),
        ({"where": {"income_type": []}}, "non-empty list"),
        ({"columns": {"payer_bin": "empty"}}, "may be NULL: null it rather than empty it"),
        ({"columns": {"iin": "null"}}, "NOT NULL: it cannot become null"),
        (
            {
                "table": "fact_disability",
                "age_column": "assigned_on",
                "columns": {"diagnosis": "hash"},
            },
            "encrypted: it can only become null",
        ),
    ],
)
def test_a_broken_policy_is_refused_naming_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any], problem: str
) -> None:
    import yaml

    builtin = yaml.safe_load(
        (Path(retention.__file__).parent / "retention.yaml").read_text("utf-8")
    )
    builtin["categories"]["old_income"].update(change)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(builtin, allow_unicode=True), "utf-8")
    monkeypatch.setenv("QAMQOR_RETENTION_POLICY", str(path))
    get_settings.cache_clear()
    with pytest.raises(RetentionPolicyError, match=problem):
        retention.load_policy()


def test_a_salted_hash_is_stable_keyed_by_column_and_fits() -> None:
    salt = bytes(range(32))
    iin = "850314300123"
    one = salted_hash("iin", iin, 12, salt)
    assert one == salted_hash("iin", iin, 12, salt)
    assert len(one) == 12 and one.startswith("~") and iin not in one
    assert one != salted_hash("iin", iin, 12, bytes(32))  # the salt matters
    assert one != salted_hash("last_name", iin, 12, salt)  # so does the column
    assert len(salted_hash("last_name", "Ахметов", 100, salt)) == 53
    assert len(salted_hash("raw", "x", None, salt)) == 53


# --- a population with a past ---------------------------------------------------------------


def _past_audit_entry(
    monkeypatch: pytest.MonkeyPatch, session: Any, kind: str, when: dt.datetime
) -> int:
    """An audit entry recorded at ``when``: the log's clock is set back, not its rows edited
    (a recorded time is part of the leaf hash)."""

    class Then(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
            return when

    clock = SimpleNamespace(
        **{name: getattr(dt, name) for name in dir(dt) if not name.startswith("_")}
    )
    clock.datetime = Then
    with monkeypatch.context() as patch:
        patch.setattr(audit, "dt", clock)
        return audit.append(session, kind, "household:HH1", {"note": f"{kind} at {when:%Y}"})


@pytest.fixture
def population(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Three people: ``gone`` died in 2019 (past the five years), ``recent`` in 2024 (inside),
    ``alive``; their facts in four registries, rejections old and new, audit entries and
    access records old and new."""
    people = population_rows(4)
    gone, recent, alive, rejected = people
    gone["death_date"] = "2019-05-10"
    gone["patronymic"] = "Серікұлы"
    gone["birth_date"] = "1950-06-15"
    recent["death_date"] = "2024-02-01"
    rejected["sex"] = "X"  # a rejection in the population batch
    population_batch = ingest_file(
        write_csv(tmp_path / "pop.csv", people), engine=engine, today=TODAY
    ).batch_id

    households = [
        {"record_id": f"HHM-{k}", "household_id": "HH0000000001", "iin": p["iin"],
         "relation": "head" if k == 0 else "spouse", "member_from": "2010-01-01",
         "member_to": p["death_date"], "updated_on": "2026-10-01"}
        for k, p in enumerate((gone, recent, alive))
    ]  # fmt: skip
    (tmp_path / "hh.csv").write_bytes(to_csv_bytes(households, source="household"))
    ingest_file(tmp_path / "hh.csv", engine=engine, today=TODAY)

    incomes = [
        {"record_id": f"INC-{k}", "iin": iin, "period": period, "income_type": "wage",
         "amount": "250000.00", "payer_bin": "", "updated_on": "2026-10-05"}
        for k, (iin, period) in enumerate(
            [(gone["iin"], "2019-03"), (alive["iin"], "2019-01"), (alive["iin"], "2021-12"),
             (alive["iin"], "2026-05")]
        )
    ]  # fmt: skip
    (tmp_path / "inc.csv").write_bytes(to_csv_bytes(incomes, source="income"))
    ingest_file(tmp_path / "inc.csv", engine=engine, today=TODAY)

    disabled = disability_rows(3)
    for row, person in zip(disabled, (gone, recent, alive), strict=True):
        row["iin"] = person["iin"]
    disabled.append(dict(disabled[2], record_id="DIS-BAD", diagnosis="bad"))
    ingest_file(write_disability(tmp_path / "dis.csv", disabled), engine=engine, today=TODAY)

    with engine.begin() as conn:  # the population extract came in two years ago
        conn.execute(
            update(Batch)
            .where(Batch.id == population_batch)
            .values(received_at=dt.datetime(2024, 11, 1, tzinfo=dt.UTC))
        )

    with session_scope(engine) as session:
        old_access = _past_audit_entry(
            monkeypatch, session, "access", dt.datetime(2020, 3, 1, 9, tzinfo=dt.UTC)
        )
        old_other = _past_audit_entry(
            monkeypatch, session, "consent", dt.datetime(2020, 3, 2, 9, tzinfo=dt.UTC)
        )
        new_access = audit.append(session, "access", "household:HH1", {"note": "access now"})
        audit.checkpoint(session)

    events = Base.metadata.tables["privacy_access_event"]
    with engine.begin() as conn:
        for when in (
            dt.datetime(2020, 3, 1, 9, tzinfo=dt.UTC),
            dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
        ):
            conn.execute(
                insert(events).values(
                    occurred_at=when, principal_kind="officer", role="social_worker",
                    household_id="HH0000000001", household_region="71", action="household.read",
                    categories=["income"], purpose_kind="case", purpose_reference="CASE-42",
                    outcome="allowed",
                )
            )  # fmt: skip
    return {
        "gone": gone["iin"],
        "recent": recent["iin"],
        "alive": alive["iin"],
        "audit": (old_access, old_other, new_access),
    }


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key))
            ]
            for table in Base.metadata.sorted_tables
        }


def _run(engine: Engine, **options: Any) -> retention.RunReport:
    with session_scope(engine) as session:
        return retention.run(session, as_of=AS_OF, **options)


def _rows_of(engine: Engine, model: Any, iin: str) -> list[Any]:
    with session_scope(engine) as session:
        return list(session.scalars(select(model).where(model.iin == iin).order_by(model.id)))


def test_a_dry_run_counts_and_changes_nothing(engine: Engine, population: dict[str, Any]) -> None:
    before = snapshot(engine)
    report = _run(engine, dry_run=True)
    assert snapshot(engine) == before
    assert report.audit_index is None
    counted = {code: r.rows for code, r in report.categories.items()}
    assert counted == {
        "rejected_raw_rows": 1,
        "deceased_persons": 4,  # population, household, income and disability rows of one person
        "old_income": 2,
        "access_records": 1,
        "access_audit_entries": 1,
        "event_payloads": 0,
        "failed_event_payloads": 0,
    }
    # Categories overlap: the run takes the dead person's 2019 income as deceased_persons
    # first, so old_income has one row left; a dry run counts every category on its own.
    real = {code: r.rows for code, r in _run(engine).categories.items()}
    assert real == counted | {"old_income": 1}


def test_what_is_past_its_period_is_anonymised_and_the_rest_untouched(
    engine: Engine, population: dict[str, Any]
) -> None:
    before = snapshot(engine)
    salt = keyring.load().pseudonym_salt
    gone, recent, alive = population["gone"], population["recent"], population["alive"]

    report = _run(engine)

    hashed = salted_hash("iin", gone, 12, salt)
    # the person five years dead: every fact, in every registry, under one salted hash
    assert _rows_of(engine, PopulationFact, gone) == []
    (person,) = _rows_of(engine, PopulationFact, hashed)
    assert person.last_name.startswith("~") and person.first_name.startswith("~")
    assert person.patronymic is None
    assert person.birth_date == dt.date(person.birth_date.year, 1, 1)
    assert person.death_date == dt.date(2019, 5, 10)  # the clock stays
    assert len(_rows_of(engine, HouseholdFact, hashed)) == 1
    assert [r.period for r in _rows_of(engine, IncomeFact, hashed)] == [dt.date(2019, 3, 1)]
    (disabled,) = _rows_of(engine, DisabilityFact, hashed)
    assert disabled.diagnosis is None and disabled.disability_group == "1"

    # inside their periods: untouched, diagnoses still readable
    after = snapshot(engine)
    for model in (PopulationFact, HouseholdFact, DisabilityFact):
        table = model.__table__.name
        kept = [r for r in before[table] if recent in r or alive in r]
        assert kept and all(r in after[table] for r in kept)
    for iin in (recent, alive):
        (fact,) = _rows_of(engine, DisabilityFact, iin)
        assert fields.reveal(fact, "diagnosis") is not None

    # income older than five years lost its IIN, newer income kept it; amounts all stay
    incomes = {r.period: r.iin for r in _rows_of(engine, IncomeFact, alive)}
    assert incomes == {dt.date(2021, 12, 1): alive, dt.date(2026, 5, 1): alive}
    assert len(_rows_of(engine, IncomeFact, salted_hash("iin", alive, 12, salt))) == 1
    with engine.connect() as conn:
        total = conn.execute(text("SELECT count(*), sum(amount_tiyn) FROM fact_income")).one()
    assert tuple(total) == (4, 4 * 25_000_000)

    # rejections: the old batch's raw text is gone, the reasons stay; the new batch's is kept
    with session_scope(engine) as session:
        rejections = session.scalars(select(Rejection).order_by(Rejection.id)).all()
        old, new = rejections
        assert (old.raw, old.raw_sealed, old.reasons) == ("", None, "unknown_code:sex")
        assert new.raw_sealed is not None and fields.reveal(new, "raw_sealed") is not None

    # access records: the 2020 one anonymised, this year's kept
    with engine.connect() as conn:
        events = conn.execute(
            text(
                "SELECT household_id, purpose_reference, purpose_kind, outcome "
                "FROM privacy_access_event ORDER BY id"
            )
        ).all()
    assert events[0][0].startswith("~") and events[0][1] is None
    assert tuple(events[0][2:]) == ("case", "allowed")
    assert tuple(events[1]) == ("HH0000000001", "CASE-42", "case", "allowed")

    # the audit log: the old access entry redacted, the others whole, and the log verifies
    old_access, old_other, new_access = population["audit"]
    with session_scope(engine) as session:
        assert audit.get_entry(session, old_access).payload is None
        assert audit.get_entry(session, old_other).payload is not None
        assert audit.get_entry(session, new_access).payload is not None
        summary = audit.get_entry(session, report.audit_index or -1)
        assert summary.kind == "retention"
        assert json.loads(summary.payload or "{}") == report.payload()
        verified = audit.verify(session)
    assert verified.ok, verified.problems
    assert verified.redacted == 1

    counts = {c: (r.rows, r.values) for c, r in report.categories.items()}
    assert counts == {
        "rejected_raw_rows": (1, 1),
        # population: iin, 2 names, patronymic, birth date; household, income: iin;
        # disability: iin and diagnosis
        "deceased_persons": (4, 9),
        "old_income": (1, 1),
        "access_records": (1, 2),
        "access_audit_entries": (1, 1),
        "event_payloads": (0, 0),
        "failed_event_payloads": (0, 0),
    }
    # the summary's hash is over the removed values, framed as documented
    (old_raw,) = [r for r in before["registry_rejection"] if r[0] == old.id]
    expected = hashlib.sha256(f"registry_rejection\x1f{old.id}\x1fraw\x1f{old_raw[5]}\n".encode())
    assert report.categories["rejected_raw_rows"].removed_sha256 == expected.hexdigest()
    # every table kept its rows: counts and aggregates are unchanged
    assert {t: len(rows) for t, rows in after.items() if not t.startswith("audit_")} == {
        t: len(rows) for t, rows in before.items() if not t.startswith("audit_")
    }


def test_a_second_run_is_a_no_op(engine: Engine, population: dict[str, Any]) -> None:
    first = _run(engine)
    assert first.rows > 0 and first.audit_index is not None
    after_first = snapshot(engine)

    second = _run(engine)

    assert second.rows == 0
    assert all(r.values == 0 for r in second.categories.values())
    assert second.audit_index is None
    assert snapshot(engine) == after_first
    with session_scope(engine) as session:
        assert audit.verify(session).ok


def test_a_failed_run_changes_nothing(
    engine: Engine, population: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(engine)

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "redact", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _run(engine)
    assert snapshot(engine) == before


def test_retention_commands(engine: Engine, population: dict[str, Any]) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["retention", "show", "--lang", "ru"])
    assert shown.exit_code == 0, shown.output
    assert "deceased" in shown.output and "Закон" in shown.output

    dry = runner.invoke(app, ["retention", "run", "--dry-run", "--as-of", "2026-11-29", "--json"])
    assert dry.exit_code == 0, dry.output
    counted = json.loads(dry.output)
    assert counted["dry_run"] is True and counted["audit_index"] is None
    assert counted["categories"]["deceased_persons"]["rows"] == 4

    done = runner.invoke(app, ["retention", "run", "--as-of", "2026-11-29"])
    assert done.exit_code == 0, done.output
    assert "summary recorded as audit entry" in done.output
    again = runner.invoke(app, ["retention", "run", "--as-of", "2026-11-29"])
    assert "no change, no audit entry" in again.output

    verified = runner.invoke(app, ["audit", "verify", "--json"])
    assert json.loads(verified.output)["ok"] is True

    wrong = runner.invoke(app, ["retention", "run", "--as-of", "29.11.2026"])
    assert wrong.exit_code != 0


# --- the change-event inbox -----------------------------------------------------------------


def _inbox_row(
    event_id: str, status: str, received: dt.datetime, iin: str, *, sealed: bool = False
) -> dict[str, Any]:
    payload = json.dumps({"iin": iin, "record_id": f"POP-{event_id}", "last_name": "Ахметов"})
    row: dict[str, Any] = {
        "source": "disability" if sealed else "population",
        "event_id": event_id,
        "type": "disability_assigned" if sealed else "birth",
        "subject_iin": iin,
        "occurred_at": received - dt.timedelta(hours=1),
        "received_at": received,
        "payload": RAW_SEALED if sealed else payload,
        "payload_sealed": None,
        "content_sha256": hashlib.sha256(f"{event_id}{payload}".encode()).hexdigest(),
        "status": status,
        "attempts": 0 if status == "pending" else 1,
        "applied_at": None if status in ("pending", "failed") else received,
        "error": "check_digit:iin" if status == "failed" else None,
        "done_at": received if status == "done" else None,
    }
    if sealed:
        row["payload_sealed"] = fields.encrypt(
            payload, table="registry_event", column="payload_sealed", row=(row["source"], event_id)
        )
    return row


def test_processed_event_payloads_are_cleared_after_90_days_failed_after_a_year(
    engine: Engine,
) -> None:
    """Done and superseded events lose payload and IIN 90 days after they came in, failed ones
    after a year, pending ones never; ids, types, statuses, times and counts stay."""
    iin = population_rows(1)[0]["iin"]
    old = dt.datetime(2026, 8, 1, tzinfo=dt.UTC)  # 120 days before AS_OF
    recent = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)  # 59 days before
    ancient = dt.datetime(2025, 10, 1, tzinfo=dt.UTC)  # 424 days before
    rows = [
        _inbox_row("E-DONE-OLD", "done", old, iin),
        _inbox_row("E-SEALED-OLD", "done", old, iin, sealed=True),
        _inbox_row("E-SUPERSEDED-OLD", "superseded", old, iin),
        _inbox_row("E-DONE-NEW", "done", recent, iin),
        _inbox_row("E-FAILED-OLD", "failed", old, iin),  # inside its year
        _inbox_row("E-FAILED-ANCIENT", "failed", ancient, iin),
        _inbox_row("E-PENDING-OLD", "pending", old, iin),  # not processed: never touched
    ]
    with engine.begin() as conn:
        conn.execute(insert(RegistryEvent), rows)
    before = {r[2]: r for r in snapshot(engine)["registry_event"]}

    counted = _run(engine, dry_run=True)
    assert counted.categories["event_payloads"].rows == 3
    assert counted.categories["failed_event_payloads"].rows == 1

    report = _run(engine)

    salt = keyring.load().pseudonym_salt
    hashed = salted_hash("subject_iin", iin, 12, salt)
    with session_scope(engine) as session:
        found = {e.event_id: e for e in session.scalars(select(RegistryEvent))}
        cleared = ("E-DONE-OLD", "E-SEALED-OLD", "E-SUPERSEDED-OLD", "E-FAILED-ANCIENT")
        for event_id in cleared:
            event = found[event_id]
            assert (event.payload, event.payload_sealed, event.subject_iin) == ("", None, hashed)
        for event_id in ("E-DONE-NEW", "E-FAILED-OLD", "E-PENDING-OLD"):
            event = found[event_id]
            assert event.subject_iin == iin and iin in event.payload
        assert fields.reveal(found["E-SEALED-OLD"], "payload_sealed") is None
        kept = ("id", "source", "event_id", "type", "occurred_at", "received_at", "status")
        kept += ("attempts", "applied_at", "error", "done_at", "content_sha256")
        for event_id, event in found.items():
            row = before[event_id]
            columns = [c.name for c in RegistryEvent.__table__.columns]
            assert {k: getattr(event, k) for k in kept} == {k: row[columns.index(k)] for k in kept}
    assert report.categories["event_payloads"].rows == 3
    # done, superseded: payload and IIN; the sealed one: placeholder, ciphertext and IIN
    assert report.categories["event_payloads"].values == 2 + 2 + 3
    assert (
        report.categories["failed_event_payloads"].rows,
        report.categories["failed_event_payloads"].values,
    ) == (1, 2)
    assert _run(engine).rows == 0  # a second run finds nothing left
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM registry_event")).scalar_one() == 7
