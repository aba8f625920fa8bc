"""The right of access: a citizen downloads everything held about their household, with sources."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.privacy.export import WITHHELD
from qamqor.profiles.builder import build
from qamqor.registry.ingest import expand_paths, ingest_file
from qamqor.synth import generate
from qamqor.web.app import create_app
from tests.privacy.builders import bearer, fast_hashing, make_citizen, make_officer

pytestmark = pytest.mark.usefixtures("fast_hashing")
__all__ = ["fast_hashing"]
AS_OF = dt.date(2026, 10, 1)


@pytest.fixture(scope="module")
def extracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, 600, seed=9, as_of=AS_OF, chunk_households=600)
    return out


def test_a_citizen_exports_their_household_with_sources(engine: Engine, extracts: Path) -> None:
    for path, source, entry in expand_paths([extracts]):
        ingest_file(path, source=source, manifest=entry, engine=engine, today=dt.date(2026, 11, 29))
    build(engine, AS_OF)
    with engine.connect() as conn:
        # a household where one member has a disability record and another member does not
        household, disabled, other = conn.execute(
            text(
                "SELECT h.household_id, d.iin, o.iin FROM fact_disability d "
                "JOIN fact_household h ON h.iin = d.iin AND h.member_to IS NULL "
                "JOIN fact_household o ON o.household_id = h.household_id "
                "AND o.iin <> d.iin AND o.member_to IS NULL "
                "WHERE d.diagnosis IS NOT NULL ORDER BY 1 LIMIT 1"
            )
        ).one()
    with session_scope() as session:
        _, own_token = make_citizen(session, disabled)
        _, other_token = make_citizen(session, other)
        _, officer_token = make_officer(session, "social_worker", ("all",))

    mine = TestClient(create_app(), headers=bearer(own_token)).get("/api/v1/me/export")
    assert mine.status_code == 200, mine.text
    data = mine.json()
    assert data["household"]["household_id"] == household
    assert disabled in {m["iin"] for m in data["household"]["members"]}
    own = [f for f in data["facts"]["disability"] if f["values"]["iin"] == disabled]
    assert own and own[0]["values"]["diagnosis"] not in (None, WITHHELD)
    assert own[0]["source"]["file_name"] and own[0]["source"]["line_no"] > 0
    assert {f["values"]["iin"] for f in data["facts"]["population"]} >= {disabled, other}
    current = data["profile"]["current"]
    members = next(f for f in current["features"] if f["name"] == "members")
    assert members["sources"], "every value carries the registry rows behind it"
    # The export is itself a read of personal data: it is in the log it returns.
    export = [i for i in data["access_log"] if i["action"] == "household.export"]
    assert export and export[0]["who"] == "you" and export[0]["audit_index"] is not None

    theirs = TestClient(create_app(), headers=bearer(other_token)).get("/api/v1/me/export")
    assert theirs.status_code == 200
    withheld = [f for f in theirs.json()["facts"]["disability"] if f["values"]["iin"] == disabled]
    assert withheld and withheld[0]["values"]["diagnosis"] == WITHHELD

    officer = TestClient(create_app(), headers=bearer(officer_token)).get("/api/v1/me/export")
    assert officer.status_code == 403
    assert TestClient(create_app()).get("/api/v1/me/export").status_code == 401
