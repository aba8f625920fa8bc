"""Profiles and quality on both databases: one code path for one household and the country,
versions only on change, provenance down to the registry row, issues that close themselves."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.profiles.builder import build
from qamqor.profiles.catalogue import CatalogueError, load_catalogue, parse_catalogue
from qamqor.profiles.relations import quarter
from qamqor.profiles.service import get_version, provenance
from qamqor.quality.truth import evaluate
from qamqor.registry.ingest import expand_paths, ingest_file
from qamqor.synth import generate
from qamqor.web.app import create_app

AS_OF = dt.date(2026, 10, 1)
TODAY = dt.date(2026, 11, 29)
RATES = {
    "invalid_iin_check_digit": 0.002,
    "person_in_two_households": 0.02,
    "deceased_still_listed": 0.5,
    "income_after_death": 0.5,
    "duplicate_rows": 0.01,
    "stale_records": 0.2,
    "missing_income_months": 0.05,
    "birth_date_iin_mismatch": 0.02,
    "mojibake": 0.002,
}


@pytest.fixture(scope="module")
def extracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, 400, seed=5, as_of=AS_OF, defect_rates=RATES, chunk_households=400)
    return out


def _ingest(engine: Engine, paths: list[Path]) -> None:
    for path, source, entry in expand_paths(paths):
        assert ingest_file(
            path, source=source, manifest=entry, engine=engine, today=TODAY
        ).reconciles


def _rows(engine: Engine, sql: str, **params: object) -> list[tuple]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def test_quarter_is_the_three_months_before_the_reference_month() -> None:
    assert quarter(dt.date(2026, 10, 1)) == (dt.date(2026, 7, 1), dt.date(2026, 10, 1))
    assert quarter(dt.date(2026, 2, 15)) == (dt.date(2025, 11, 1), dt.date(2026, 2, 1))


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("sum(no_such_column)", "unknown column or parameter 'no_such_column'"),
        ("count(*) + (SELECT 1)", "is not allowed"),
        ("sum(read_csv('/etc/passwd'))", "read_csv"),
        ("age", "must aggregate"),
        ("sum(sum(age))", "nested aggregate"),
        ("count(", "cannot parse"),
    ],
)
def test_a_bad_definition_fails_the_check_with_its_name_and_line(sql: str, message: str) -> None:
    text_ = (
        "features:\n"
        "  members:\n"
        "    names: {ru: a, kk: b, en: c}\n"
        "    unit: count\n"
        "    sources: [household]\n"
        "    from: member\n"
        f'    sql: "{sql}"\n'
    )
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(text_)
    assert "features.yaml:2: feature members" in str(caught.value)
    assert message in str(caught.value).lower() or message in str(caught.value)


def test_the_published_catalogue_checks() -> None:
    catalogue = load_catalogue()
    assert {"members", "per_capita_income_tiyn", "able_bodied_adults", "region_code"} <= set(
        catalogue.features
    )
    assert all(set(f.names) >= {"ru", "kk", "en"} for f in catalogue.features.values())


def test_the_resident_engine_is_locked_and_keeps_nothing_of_one_use_for_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow as pa

    from qamqor.kit.duck import compute_engine, lock_down
    from qamqor.kit.settings import get_settings

    def tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
        return con.execute(
            "SELECT table_name, schema_name FROM duckdb_tables() "
            "UNION ALL SELECT view_name, schema_name FROM duckdb_views() WHERE NOT internal "
            "ORDER BY 1"
        ).fetchall()

    spills = set()
    for _ in range(2):
        with compute_engine("profiles", resident=True) as con:
            assert tables(con) == []
            # one thread by default (QAMQOR_RESIDENT_THREADS), not the country run's two
            assert con.execute("SELECT current_setting('threads')").fetchall() == [(1,)]
            # two optimizer passes left out (``RESIDENT_DISABLED_OPTIMIZERS``); the worker's
            # builds and decisions still equal the country-wide run's (the next test here,
            # tests/rules/test_decide.py)
            disabled = con.execute("SELECT current_setting('disabled_optimizers')").fetchall()
            assert disabled == [("join_order,statistics_propagation",)]
            con.register("incoming", pa.table({"iin": ["850314300123"]}))
            con.execute("CREATE OR REPLACE TABLE fact_population AS SELECT * FROM incoming")
            con.execute("CREATE OR REPLACE TEMP TABLE person AS FROM fact_population")
            lock_down(con)  # locked from the start: nothing to do, nothing refused
            assert con.execute("SELECT count(*) FROM person").fetchall() == [(1,)]
            with pytest.raises(duckdb.Error, match="file system operations are disabled"):
                con.execute("SELECT * FROM read_csv('/etc/passwd')")
            with pytest.raises(duckdb.Error, match="locked"):
                con.execute("SET enable_external_access = true")
            spills.add(con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0])
    assert len(spills) == 1  # one engine, opened once
    # the country-wide run still opens an engine of its own, on disk, with the memory limit
    monkeypatch.setenv("QAMQOR_COMPUTE_MEMORY_LIMIT", "1GB")
    get_settings.cache_clear()
    with compute_engine("profiles", on_disk=True, resident=True) as con:
        assert con.execute("SELECT current_setting('lock_configuration')").fetchall() == [(False,)]
        path = con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchall()
        assert path[0][0].endswith("profiles.duckdb")
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()
        assert limit == [("953.6 MiB",)]
        assert con.execute("SELECT current_setting('threads')").fetchall() == [(2,)]
        assert con.execute("SELECT current_setting('disabled_optimizers')").fetchall() == [("",)]
    # and a resident engine opened with other settings is opened again with them
    monkeypatch.setenv("QAMQOR_RESIDENT_THREADS", "2")
    get_settings.cache_clear()
    with compute_engine("profiles", resident=True) as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchall() == limit
        assert con.execute("SELECT current_setting('threads')").fetchall() == [(2,)]


def test_profiles_are_built_versioned_and_traceable(engine: Engine, extracts: Path) -> None:
    _ingest(engine, [extracts])
    first = build(engine, AS_OF)
    households = _rows(engine, "SELECT count(DISTINCT household_id) FROM profile_head")[0][0]
    assert first.households == households == first.changed > 300
    again = build(engine, AS_OF)
    assert again.changed == 0 and again.unchanged == first.households

    # The per-capita income is the quarter's household income / members / 3, in tiyn.
    with session_scope(engine) as session:
        some = _rows(engine, "SELECT household_id FROM profile_head ORDER BY household_id")
        household = next(
            h for (h,) in some if get_version(session, h).features["income_quarter_tiyn"] > 0
        )
        bulk = get_version(session, household)
        f = bulk.features
        exact = f["income_quarter_tiyn"] / f["members"] / 3
        assert abs(f["per_capita_income_tiyn"] - exact) <= 0.5
        income = _rows(
            engine,
            "SELECT sum(i.amount_tiyn) FROM fact_income i JOIN fact_household h ON h.iin = i.iin "
            "WHERE h.household_id = :h AND h.member_to IS NULL "
            "AND i.period >= :start AND i.period < :end",
            h=household,
            start=dt.date(2026, 7, 1),
            end=AS_OF,
        )[0][0]
        assert f["income_quarter_tiyn"] == income

    # One household alone gives the same profile as the whole-country run: one code path.
    single = build(engine, AS_OF, households=[household])
    assert single.households == 1 and single.changed == 0
    # ... and so do the worker's micro-batches in its resident engine, one after the other
    # (nothing of one build is left for the next)
    for start in (0, 30, 0):
        batch = [h for (h,) in some[start : start + 60]]
        resident = build(engine, AS_OF, households=batch, resident=True)
        assert (resident.households, resident.changed) == (60, 0)

    # Every member counted is traced to its household row and its population row.
    with session_scope(engine) as session:
        refs = provenance(
            engine, session, household, features=["members", "per_capita_income_tiyn"]
        )
    members = _rows(
        engine,
        "SELECT source_record_id FROM fact_household WHERE household_id = :h AND member_to IS NULL",
        h=household,
    )
    household_refs = {r.record_id for r in refs["members"] if r.source == "household"}
    assert household_refs == {m for (m,) in members}
    assert {r.source for r in refs["members"]} == {"household", "population"}
    assert {r.source for r in refs["per_capita_income_tiyn"]} >= {"income", "household"}
    assert all(r.file_name and r.received_at for r in refs["members"])


def test_quality_issues_taint_features_and_close_when_data_is_fixed(
    engine: Engine, extracts: Path, tmp_path: Path
) -> None:
    _ingest(engine, [extracts])
    build(engine, AS_OF)
    issue = _rows(
        engine,
        "SELECT i.id, s.household_id, s.iin FROM dq_issue i JOIN dq_issue_subject s "
        "ON s.issue_id = i.id WHERE i.check_id = 'deceased_member' AND i.status = 'open' "
        "ORDER BY i.id",
    )[0]
    issue_id, household, iin = issue
    with session_scope(engine) as session:
        before = get_version(session, household)
    assert "deceased_member" in before.quality["members"]

    # The household register sends the correction: the member left on the day of death.
    record, relation, member_from = _rows(
        engine,
        "SELECT source_record_id, relation, member_from FROM fact_household "
        "WHERE household_id = :h AND iin = :iin",
        h=household,
        iin=iin,
    )[0]
    death = _rows(engine, "SELECT death_date FROM fact_population WHERE iin = :i", i=iin)[0][0]
    fix = tmp_path / "household_fix.csv"
    fix.write_text(
        "record_id,household_id,iin,relation,member_from,member_to,updated_on\n"
        f"{record},{household},{iin},{relation},{member_from},{death},2026-11-01\n",
        "utf-8",
    )
    _ingest(engine, [fix])
    build(engine, AS_OF, households=[household])
    status = _rows(engine, "SELECT status, closed_at FROM dq_issue WHERE id = :i", i=issue_id)[0]
    assert status[0] == "closed" and status[1] is not None
    with session_scope(engine) as session:
        after = get_version(session, household)
    assert after.version == before.version + 1
    assert after.features["members"] == before.features["members"] - 1
    assert "deceased_member" not in after.quality.get("members", [])


def test_a_build_of_one_household_keeps_the_counts_of_an_issue_that_spans_two(
    engine: Engine, extracts: Path
) -> None:
    """A person listed in two households is one issue with both as subjects. Rebuilding one
    of the households (a worker's cycle) sees only its part: the issue keeps counting both."""
    _ingest(engine, [extracts])
    build(engine, AS_OF)
    counts = (
        "SELECT d.persons, d.households, count(DISTINCT s.iin), count(DISTINCT s.household_id) "
        "FROM dq_issue d JOIN dq_issue_subject s ON s.issue_id = d.id WHERE d.id = :i "
        "GROUP BY d.persons, d.households"
    )
    issue_id, household = _rows(
        engine,
        "SELECT d.id, min(s.household_id) FROM dq_issue d "
        "JOIN dq_issue_subject s ON s.issue_id = d.id "
        "WHERE d.check_id = 'person_in_two_households' AND d.households = 2 "
        "GROUP BY d.id ORDER BY d.id",
    )[0]
    assert _rows(engine, counts, i=issue_id) == [(1, 2, 1, 2)]
    for resident in (False, True):
        report = build(engine, AS_OF, households=[household], resident=resident)
        assert report.findings["person_in_two_households"] == 1  # its part, seen again
        assert _rows(engine, counts, i=issue_id) == [(1, 2, 1, 2)]
        status = _rows(engine, "SELECT status FROM dq_issue WHERE id = :i", i=issue_id)
        assert status == [("open",)]


def test_checks_find_the_injected_defects(engine: Engine, extracts: Path) -> None:
    _ingest(engine, [extracts])
    build(engine, AS_OF)
    with session_scope(engine) as session:
        result = evaluate(session, extracts)
    for row in result["recall"]:
        if row["injected"] >= 5:
            assert row["recall_unmasked"] >= 0.9, row
    by_check = {row["check"]: row for row in result["precision"]}
    assert by_check["deceased_member"]["findings"] > 0
    for check in ("person_in_two_households", "deceased_member", "income_after_death"):
        assert by_check[check]["precision"] in (1.0, None), by_check[check]
    assert result["overall"]["precision"] >= 0.95, result["precision"]


def test_profile_and_quality_api(engine: Engine, extracts: Path) -> None:
    _ingest(engine, [extracts])
    build(engine, AS_OF)
    household = _rows(engine, "SELECT household_id FROM profile_head ORDER BY 1")[0][0]
    # Behind the privacy policy: a national admin with a stated purpose opens profiles, a
    # data-quality steward reads the issues (docs/privacy.md).
    from qamqor.kit.db import session_scope
    from tests.privacy.builders import bearer, make_officer

    with session_scope() as session:
        _, admin = make_officer(session, "admin", ("all",))
        _, steward = make_officer(session, "dq_steward", ("all",))
    client = TestClient(create_app(), headers={**bearer(admin), "X-Purpose": "review:T-1"})
    response = client.get(f"/api/v1/households/{household}/profile?lang=kk")
    assert response.status_code == 200, response.text
    body = response.json()
    members = next(f for f in body["features"] if f["name"] == "members")
    assert members["description"] == "Отбасы мүшелерінің саны"
    assert members["sources"] and members["sources"][0]["batch_id"] > 0
    # The read was allowed and logged, with its purpose, in the same transaction.
    logged = _rows(
        engine,
        "SELECT action, outcome, purpose_reference FROM privacy_access_event "
        "WHERE household_id = :h",
        h=household,
    )
    assert ("household.read_profile", "allowed", "T-1") in logged
    # Without a stated purpose an officer gets nothing.
    plain = TestClient(create_app(), headers=bearer(admin))
    assert plain.get(f"/api/v1/households/{household}/profile").status_code == 403
    assert client.get("/api/v1/households/NO-SUCH/profile").status_code == 404
    history = client.get(f"/api/v1/households/{household}/profile/history").json()
    assert history[0]["version"] == 1 and "members" in history[0]["changed"]

    client = TestClient(create_app(), headers={**bearer(steward), "X-Purpose": "review:DQ-1"})
    page = client.get("/api/v1/quality/issues?limit=5&check=deceased_member").json()
    assert page["total"] > 0 and len(page["items"]) <= 5
    assert page["items"][0]["owner"] == "household"
    assert "members" in page["items"][0]["features_tainted"]
    detail = client.get(f"/api/v1/quality/issues/{page['items'][0]['id']}").json()
    assert detail["subjects"][0]["iin"]
    card = client.get("/api/v1/quality/scorecard?by=source").json()
    assert {row["key"] for row in card} >= {"population", "household", "income"}
    regions = client.get("/api/v1/quality/scorecard?by=region").json()
    assert sum(r["persons"] for r in regions) > 0
    assert json.dumps(card)
