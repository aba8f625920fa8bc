"""Deciding on both databases over a synthetic population: one code path for one household and
all of them, decisions written only on change, replayed byte for byte, contested values held,
simulations that write nothing."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from qamqor.cli import app
from qamqor.kit.db import session_scope
from qamqor.kit.duck import compute_engine
from qamqor.profiles.builder import build
from qamqor.profiles.catalogue import load_catalogue
from qamqor.rules import engine as rules_engine
from qamqor.rules.models import Decision, DecisionHead, PopulationFigure
from qamqor.rules.population import load_input
from qamqor.rules.service import (
    bind_all,
    contest_value,
    decide,
    household_decisions,
    needed_features,
    replay,
    resolve_contest,
)
from qamqor.rules.simulate import SimulationError, simulate
from qamqor.rules.spec import load_parameters, load_programs
from qamqor.synth import generate
from tests.registry.builders import ingest_all

AS_OF = dt.date(2026, 10, 1)
TODAY = dt.date(2026, 11, 29)
RATES = {"person_in_two_households": 0.03, "missing_income_months": 0.05}


@pytest.fixture(scope="module")
def extracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, 300, seed=11, as_of=AS_OF, defect_rates=RATES, chunk_households=300)
    return out


@pytest.fixture
def profiles(engine: Engine, extracts: Path) -> Engine:
    ingest_all(engine, [extracts], TODAY)
    build(engine, AS_OF)
    return engine


def _decisions(engine: Engine) -> dict[tuple[str, str], tuple[str, int | None, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.household_id, d.program_id, d.status, d.amount_tiyn, d.content_sha256 "
                "FROM decision_head h JOIN decision d ON d.id = h.decision_id"
            )
        ).all()
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}


def test_one_household_at_a_time_gives_the_bulk_results_for_everyone(profiles: Engine) -> None:
    report = decide(profiles)
    assert report.households > 250
    statuses = {s for t in report.totals.values() for s in rules_engine.STATUSES if t[s]}
    assert statuses == {"eligible", "ineligible", "needs_review"}
    catalogue = load_catalogue()
    programs = list(load_programs().values())
    features = needed_features(programs, catalogue)
    with compute_engine("bulk") as con:
        load_input(con, profiles, catalogue, features)
        bounds = bind_all(con, profiles, programs, load_parameters(), catalogue, True)
        rules_engine.evaluate(con, bounds, catalogue)
        bulk = con.execute(
            "SELECT household_id, program_id, status, amount_tiyn, detail FROM decision_out"
        ).fetchall()
        households = sorted({r[0] for r in bulk})
    single = []
    for household in households:  # the whole population, one household per query
        with compute_engine("one") as con:
            load_input(con, profiles, catalogue, features, [household])
            bounds = bind_all(con, profiles, programs, load_parameters(), catalogue, False)
            rules_engine.evaluate(con, bounds, catalogue)
            single += con.execute(
                "SELECT household_id, program_id, status, amount_tiyn, detail FROM decision_out"
            ).fetchall()
    assert sorted(single) == sorted(bulk)
    assert len(bulk) == len(households) * len(programs)


def test_decisions_are_written_on_change_only_and_replay_byte_for_byte(profiles: Engine) -> None:
    first = decide(profiles)
    assert first.written > 0
    assert decide(profiles).written == 0
    stored = _decisions(profiles)
    # a country-wide run stores eligible and needs_review, and every household's well-being
    # level, not "never eligible"
    statuses = {s for s, _, _ in stored.values()}
    assert "ineligible" not in statuses
    assert {"eligible", "needs_review", "A", "B"} <= statuses
    with session_scope() as session:
        ids = session.execute(select(Decision.id).order_by(Decision.id)).scalars().all()
    for decision_id in ids[:: max(1, len(ids) // 25)]:
        assert replay(profiles, decision_id).matches, decision_id
    # a stored decision altered afterwards no longer replays
    with session_scope() as session:
        paid = session.execute(
            select(func.min(Decision.id)).where(Decision.status == "eligible")
        ).scalar_one()
        session.execute(
            update(Decision).where(Decision.id == paid).values(amount_tiyn=Decision.amount_tiyn + 1)
        )
    result = replay(profiles, paid)
    assert not result.matches
    assert result.stored["amount_tiyn"] != result.recomputed["amount_tiyn"]


def test_a_contested_value_is_unknown_until_resolved(profiles: Engine) -> None:
    decide(profiles, ["asp"])
    with session_scope() as session:
        household = session.execute(
            select(DecisionHead.household_id)
            .where(DecisionHead.program_id == "asp", DecisionHead.status == "eligible")
            .order_by(DecisionHead.household_id)
            .limit(1)
        ).scalar_one()
        contest = contest_value(
            session, household, "per_capita_income_tiyn", "wage not mine", "citizen"
        )
        contest_id = contest.id
    report = decide(profiles, ["asp"], [household])
    assert report.totals["asp"]["needs_review"] == 1
    (now,) = [d for d in household_decisions(profiles, household) if d["program_id"] == "asp"]
    assert now["status"] == "needs_review"
    assert now["detail"]["held"] == [
        {"f": "per_capita_income_tiyn", "why": [f"contested:{contest_id}"]}
    ]
    assert now["decision_id"] is not None
    assert replay(profiles, now["decision_id"]).matches  # the hold is part of the decision
    with session_scope() as session:
        resolve_contest(session, contest_id)
    decide(profiles, ["asp"], [household])
    (after,) = [d for d in household_decisions(profiles, household) if d["program_id"] == "asp"]
    assert after["status"] == "eligible"


def test_the_median_is_computed_once_a_month_and_used_by_single_decisions(
    profiles: Engine,
) -> None:
    one = sorted(_household_ids(profiles))[0]
    decide(profiles, ["asp"], [one])  # computed from every profile, though one is decided
    with session_scope() as session:
        figure = session.execute(select(PopulationFigure)).scalar_one()
        assert figure.as_of == AS_OF
        assert 150 < figure.households <= 300
    decide(profiles)
    with session_scope() as session:
        assert session.execute(select(func.count(PopulationFigure.id))).scalar_one() == 1
    (asp,) = [d for d in household_decisions(profiles, one) if d["program_id"] == "asp"]
    line = asp["detail"]["derived"]["poverty_line_tiyn"]
    expected = max(3_559_600, round(figure.value * 35 / 100, -2))
    assert line == expected


def _household_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT household_id FROM profile_head"))]


def test_a_simulation_compares_the_whole_population_and_writes_nothing(profiles: Engine) -> None:
    decide(profiles)
    before = _decisions(profiles)
    result = simulate(
        profiles, "asp", ["poverty_line_share=0.90", "median_income_share=0.50"], changed_limit=5
    )
    total = result["total"]
    assert total["households_after"] >= total["households_before"]
    assert total["gainers"] > 0 and total["losers"] == 0
    assert total["yearly_change_tiyn"] == 12 * total["monthly_change_tiyn"] > 0
    assert sum(g["gainers"] for g in result["by_region"]) == total["gainers"]
    assert sum(b["after"] for b in result["histogram"]["bins"]) == total["households_after"]
    assert len(result["changed_households"]["items"]) == min(5, total["gainers"])
    assert _decisions(profiles) == before
    # the same run again reads the population from its cache and agrees
    again = simulate(profiles, "asp", ["poverty_line_share=0.90", "median_income_share=0.50"])
    assert again["population_from_cache"] and again["total"] == total
    with pytest.raises(SimulationError, match="does not use 'mrp_tiyn'"):
        simulate(profiles, "asp", ["mrp_tiyn=5000"])
    with pytest.raises(SimulationError, match="is not a number"):
        simulate(profiles, "asp", ["poverty_line_share=lots"])


def test_the_commands(profiles: Engine) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["decide", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report["totals"]) == {*load_programs(), "wellbeing"}
    with session_scope() as session:
        decision_id = session.execute(select(func.min(Decision.id))).scalar_one()
    result = runner.invoke(app, ["decisions", "replay", str(decision_id)])
    assert result.exit_code == 0 and "identical" in result.output
    result = runner.invoke(app, ["simulate", "food_voucher", "--set", "mrp_tiyn=5000", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["total"]["monthly_change_tiyn"] > 0
    result = runner.invoke(app, ["decisions", "list", "--status", "eligible", "--limit", "2"])
    assert result.exit_code == 0 and "eligible" in result.output


def test_the_api_explains_decisions_and_simulates_behind_the_policy(profiles: Engine) -> None:
    from fastapi.testclient import TestClient

    from qamqor.web.app import create_app
    from tests.privacy.builders import bearer, make_officer

    decide(profiles)
    with session_scope() as session:
        household, decision_id = session.execute(
            select(DecisionHead.household_id, DecisionHead.decision_id)
            .where(DecisionHead.program_id == "asp", DecisionHead.status == "eligible")
            .order_by(DecisionHead.household_id)
            .limit(1)
        ).one()
        _, officer = make_officer(session, "social_worker", ("all",))
        _, analyst = make_officer(session, "analyst", ("all",))
        _, program_officer = make_officer(session, "program_officer", ("all",))
    client = TestClient(create_app(), headers={**bearer(officer), "X-Purpose": "case:C-7"})
    response = client.get(f"/api/v1/households/{household}/decisions?lang=ru")
    assert response.status_code == 200, response.text
    body = response.json()
    by_program = {
        d["program"]["id"] if "program" in d else "wellbeing": d for d in body["decisions"]
    }
    asp = by_program["asp"]
    assert asp["status"] == "eligible" and asp["decision_id"] == decision_id
    assert asp["amount_text"].endswith(" ₸") and asp["amount_tiyn"] > 0
    assert {c["result"] for c in asp["criteria"]} == {"met"}
    assert by_program["wellbeing"]["level"] in {"A", "B", "C", "D", "E", None}
    stored = client.get(f"/api/v1/households/{household}/decisions/{decision_id}?lang=kk")
    assert stored.status_code == 200 and stored.json()["decision_id"] == decision_id
    assert client.get(f"/api/v1/households/OTHER/decisions/{decision_id}").status_code == 404
    # the read is in the citizen's access log; without a purpose an officer gets nothing
    with profiles.connect() as conn:
        logged = conn.execute(
            text("SELECT action, outcome FROM privacy_access_event WHERE household_id = :h"),
            {"h": household},
        ).all()
    assert ("household.read_decisions", "allowed") in [tuple(r) for r in logged]
    plain = TestClient(create_app(), headers=bearer(officer))
    assert plain.get(f"/api/v1/households/{household}/decisions").status_code == 403

    # an analyst simulates (totals only), but may not list the households
    analyst_client = TestClient(create_app(), headers=bearer(analyst))
    body = {"program": "asp", "set": ["poverty_line_share=0.80"]}
    response = analyst_client.post("/api/v1/simulations", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["total"]["gainers"] > 0
    assert "changed_households" not in response.json()
    assert (
        analyst_client.post("/api/v1/simulations/changed-households", json=body).status_code == 403
    )
    bad = analyst_client.post("/api/v1/simulations", json={"program": "asp", "set": ["x=1"]})
    assert bad.status_code == 422 and "does not use 'x'" in bad.json()["detail"]
    assert client.post("/api/v1/simulations/changed-households", json=body).status_code == 403
    chief = TestClient(
        create_app(), headers={**bearer(program_officer), "X-Purpose": "review:BUDGET-27"}
    )
    listed = chief.post("/api/v1/simulations/changed-households?limit=3", json=body)
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["changed_households"]["items"]) == 3


def test_a_household_decided_again_after_the_country_run_writes_nothing(profiles: Engine) -> None:
    """The worker's route (some households, ``store_all=False``, read by key) and the
    country-wide route (read in bulk) decide on the same bytes: redeciding households the
    country run just decided stores no new decision, flagged households included."""
    decide(profiles)
    with profiles.connect() as conn:
        households = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT h.household_id FROM profile_head h JOIN profile_version v "
                    "ON v.household_id = h.household_id AND v.version = h.version "
                    "ORDER BY h.household_id"
                )
            )
        ]
        flagged = conn.execute(
            text("SELECT count(*) FROM profile_version WHERE CAST(quality AS TEXT) <> '{}'")
        ).scalar_one()
    assert flagged > 0  # the synthetic defects taint some features
    again = decide(profiles, None, households, store_all=False, resident=True)
    assert again.written == 0
