"""Every defect synth injects is either rejected at ingest or stored as a fact a check can flag.

Runs on both databases: synth writes a small population with raised defect rates, ingest loads
its manifest, and each logged defect instance is looked up where it must show.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from qamqor.registry import iin
from qamqor.registry.ingest import expand_paths, ingest_file
from qamqor.synth import DEFECT_CLASSES, generate

RATES = {
    "invalid_iin_check_digit": 0.01,
    "person_in_two_households": 0.02,
    "deceased_still_listed": 0.5,
    "income_after_death": 0.5,
    "duplicate_rows": 0.01,
    "stale_records": 0.2,
    "missing_income_months": 0.05,
    "birth_date_iin_mismatch": 0.02,
    "mojibake": 0.02,
    "duplicate_person": 0.02,
}


@pytest.fixture(scope="module")
def extracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, 1500, seed=11, defect_rates=RATES, chunk_households=500)
    return out


def rows(engine: Engine, sql: str, **params: object) -> list[tuple]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def test_every_injected_defect_is_rejected_or_visible(engine: Engine, extracts: Path) -> None:
    reports = [
        ingest_file(path, source=source, manifest=entry, engine=engine, today=dt.date(2026, 11, 29))
        for path, source, entry in expand_paths([extracts])
    ]
    assert all(r.reconciles for r in reports)
    defects = pq.read_table(extracts / "truth" / "defects.parquet").to_pylist()
    assert {d["defect"] for d in defects} == set(DEFECT_CLASSES)

    rejected = {
        (source, record): reasons
        for source, record, reasons in rows(
            engine,
            "SELECT b.source, r.source_record_id, r.reasons FROM registry_rejection r "
            "JOIN registry_batch b ON b.id = r.batch_id",
        )
    }
    # Exact duplicates are skipped and counted, once per extra copy.
    duplicates_by_source = Counter(d["source"] for d in defects if d["defect"] == "duplicate_rows")
    for report in reports:
        assert report.duplicates >= duplicates_by_source[report.source], report.source

    # A person-level defect can lose its evidence when another defect took a row of the same
    # person out (their other household row had a broken IIN, their death record was garbled):
    # the rejection explains it.
    rejected_people = {d["iin"] for d in defects if (d["source"], d["record_id"]) in rejected}
    unexplained = []
    for d in defects:
        key = (d["source"], d["record_id"])
        kind = d["defect"]
        if kind == "invalid_iin_check_digit":
            if "check_digit:iin" not in rejected.get(key, ""):
                unexplained.append(d)
            continue
        if kind == "mojibake":
            if "mojibake:" not in rejected.get(key, ""):
                unexplained.append(d)
            continue
        if key in rejected or d["iin"] in rejected_people:
            continue
        if not _visible_as_fact(engine, d):
            unexplained.append(d)
    assert not unexplained, unexplained[:5]


def _visible_as_fact(engine: Engine, d: dict) -> bool:  # type: ignore[type-arg]
    kind, person, record = d["defect"], d["iin"], d["record_id"]
    if kind == "duplicate_rows":
        table = f"fact_{d['source']}"
        return (
            rows(engine, f"SELECT count(*) FROM {table} WHERE source_record_id = :r", r=record)[0][
                0
            ]
            == 1
        )
    if kind == "person_in_two_households":
        found = rows(
            engine,
            "SELECT count(DISTINCT household_id) FROM fact_household "
            "WHERE iin = :i AND member_to IS NULL",
            i=person,
        )
        return found[0][0] >= 2
    if kind == "deceased_still_listed":
        dead = rows(
            engine,
            "SELECT 1 FROM fact_population WHERE iin = :i AND death_date IS NOT NULL",
            i=person,
        )
        listed = rows(
            engine,
            "SELECT 1 FROM fact_household WHERE source_record_id = :r AND member_to IS NULL",
            r=record,
        )
        return bool(dead) and bool(listed)
    if kind == "income_after_death":
        found = rows(
            engine,
            "SELECT i.period, p.death_date FROM fact_income i "
            "JOIN fact_population p ON p.iin = i.iin WHERE i.source_record_id = :r",
            r=record,
        )
        return bool(found) and str(found[0][0]) > str(found[0][1])
    if kind == "stale_records":
        found = rows(
            engine,
            "SELECT updated_on FROM fact_employment "
            "WHERE source_record_id = :r AND end_date IS NULL",
            r=record,
        )
        return bool(found) and str(found[0][0]) < "2025-10-01"
    if kind == "missing_income_months":
        months = rows(
            engine,
            "SELECT count(DISTINCT period) FROM fact_income "
            "WHERE iin = :i AND income_type = 'wage'",
            i=person,
        )
        return months[0][0] < 3
    if kind == "birth_date_iin_mismatch":
        found = rows(
            engine,
            "SELECT iin, birth_date FROM fact_population WHERE source_record_id = :r",
            r=record,
        )
        if not found:
            return False
        encoded = iin.birth_date_and_sex(found[0][0])
        return encoded is None or encoded[0].isoformat() != str(found[0][1])
    if kind == "duplicate_person":
        # a second person record: born the same day, same sex, another IIN; the names match
        # too unless another defect changed them (the quality check is measured on that)
        found = rows(
            engine, "SELECT iin FROM fact_population WHERE source_record_id = :r", r=record
        )
        return bool(found) and found[0][0] != person and found[0][0][:7] == person[:7]
    raise AssertionError(f"no visibility rule for {kind}")
