"""The duplicate-person check on a set of households reads the same namesakes as the
country-wide run: every record of each person sharing a member's full name and birth date
(``profiles/facts.py``), so a household's profile is the same on both routes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Engine

from qamqor.profiles.builder import build
from qamqor.registry.models import Batch, PopulationFact
from qamqor.synth import generate
from tests.registry.builders import ingest_all

AS_OF = dt.date(2026, 10, 1)
TODAY = dt.date(2026, 11, 29)


@pytest.fixture(scope="module")
def extracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(
        out,
        300,
        seed=31,
        as_of=AS_OF,
        defect_rates={"duplicate_person": 0.05},
        chunk_households=300,
    )
    return out


@pytest.fixture
def built(engine: Engine, extracts: Path) -> Engine:
    ingest_all(engine, [extracts], TODAY)
    build(engine, AS_OF)
    return engine


def _flagged(engine: Engine) -> list[str]:
    """Households whose profile carries a duplicate-person flag."""
    with engine.connect() as conn:
        quality = conn.execute(
            text(
                "SELECT v.household_id, v.quality FROM profile_head h JOIN profile_version v "
                "ON v.household_id = h.household_id AND v.version = h.version "
                "ORDER BY v.household_id"
            )
        ).all()
    return [h for h, q in quality if "duplicate_person" in str(q)]


def _households(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT household_id FROM profile_head"))]


def _subjects(engine: Engine) -> list[tuple[object, ...]]:
    """Every open issue's subjects, duplicates kept."""
    with engine.connect() as conn:
        return sorted(
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT d.check_id, d.key, coalesce(s.household_id, ''), "
                    "coalesce(s.iin, '') FROM dq_issue_subject s "
                    "JOIN dq_issue d ON d.id = s.issue_id WHERE d.status = 'open'"
                )
            )
        )


def test_micro_batches_flag_the_same_duplicates_as_the_country_run(built: Engine) -> None:
    flagged = _flagged(built)
    assert len(flagged) >= 5  # the injected duplicates are seen
    subjects = _subjects(built)
    households = sorted(_households(built))
    for start in range(0, len(households), 120):
        report = build(built, AS_OF, households=households[start : start + 120], resident=True)
        assert report.changed == 0  # the same profiles, duplicate flags included
    assert _flagged(built) == flagged
    # the issues' subjects are kept as they were, none lost and none twice (a cycle writes
    # only the subjects that changed)
    assert _subjects(built) == subjects


def test_a_namesake_whose_newest_record_has_another_name_is_no_duplicate(
    built: Engine,
) -> None:
    with built.connect() as conn:
        # a household with exactly one member who has a namesake (elsewhere, one record)
        pair = conn.execute(
            text(
                "WITH twin AS (SELECT a.iin, m.household_id, b.id AS other FROM fact_population a "
                "JOIN fact_population b ON a.last_name = b.last_name "
                "AND a.first_name = b.first_name "
                "AND coalesce(a.patronymic, '') = coalesce(b.patronymic, '') "
                "AND a.birth_date = b.birth_date AND a.iin <> b.iin "
                "JOIN fact_household m ON m.iin = a.iin AND m.member_to IS NULL "
                "WHERE (SELECT count(*) FROM fact_population c WHERE c.iin = b.iin) = 1 "
                "AND NOT EXISTS (SELECT 1 FROM fact_household n WHERE n.iin = b.iin "
                "AND n.household_id = m.household_id)) "
                "SELECT household_id, min(other) FROM twin GROUP BY household_id "
                "HAVING count(*) = 1 AND household_id NOT IN (SELECT m.household_id "
                "FROM fact_household m JOIN fact_population p ON p.iin = m.iin "
                "JOIN fact_population q ON q.last_name = p.last_name "
                "AND q.first_name = p.first_name "
                "AND coalesce(q.patronymic, '') = coalesce(p.patronymic, '') "
                "AND q.birth_date = p.birth_date AND q.iin <> p.iin "
                "GROUP BY m.household_id HAVING count(*) > 1) "
                "ORDER BY household_id LIMIT 1"
            )
        ).one()
    household, other = pair
    assert household in _flagged(built)
    # The namesake's registry corrects the last name: a newer record of the same person (as
    # an extract or an event would store it), in a batch of its own.
    with built.begin() as conn:
        fact = dict(
            conn.execute(select(PopulationFact).where(PopulationFact.id == other)).one()._mapping
        )
        batch = dict(conn.execute(select(Batch).where(Batch.id == fact["batch_id"])).one()._mapping)
        batch.pop("id")
        batch.update(file_name="correction.csv", file_sha256="0" * 64, rows_read=1, facts=1)
        fact.pop("id")
        fact["batch_id"] = conn.execute(
            insert(Batch).values(batch).returning(Batch.id)
        ).scalar_one()
        fact.update(last_name="Переименованная", updated_on=dt.date(2026, 11, 20), line_no=1)
        conn.execute(insert(PopulationFact).values(fact))
    # The household alone: its member has no namesake any more (the namesake's old record,
    # which still shares the name, is read with the newer one, and the newer one counts) ...
    alone = build(built, AS_OF, households=[household], resident=True)
    assert alone.changed == 1 and household not in _flagged(built)
    # ... as in the country-wide run, which leaves that profile as it is
    with built.connect() as conn:
        version = conn.execute(
            text("SELECT version FROM profile_head WHERE household_id = :h"), {"h": household}
        ).scalar_one()
    build(built, AS_OF)
    with built.connect() as conn:
        assert (
            version
            == conn.execute(
                text("SELECT version FROM profile_head WHERE household_id = :h"), {"h": household}
            ).scalar_one()
        )
