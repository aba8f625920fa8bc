"""The scripted birth of ``make demo``: a child born into a family just above the poverty line.

``birth_events`` picks a household whose current АСП decision is "not eligible" only because
its per-capita income is a little above the poverty line — one more member brings it below —
with nobody idle and no loans, and writes the two events the registries would send: the civil
registry's birth (population) and the Digital Family Map's new member (household). Pushed and
worked (``qamqor events push``, ``qamqor worker --once``) they end as an АСП offer in the outbox.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qamqor.kit.errors import QamqorError
from qamqor.registry.iin import make_iin
from qamqor.registry.models import PopulationFact


def _candidate(session: Session) -> str:
    """A household whose АСП is refused only because its per-capita income is a little above
    the line: one more member brings it below; nobody idle, no loans, nothing held."""
    from qamqor.kit.duck import compute_engine
    from qamqor.profiles.catalogue import load_catalogue
    from qamqor.rules import engine as rules_engine
    from qamqor.rules.population import load_input
    from qamqor.rules.service import bind_all, needed_features
    from qamqor.rules.spec import load_parameters, load_programs

    engine = session.get_bind()
    assert isinstance(engine, Engine)
    catalogue = load_catalogue()
    asp = load_programs()["asp"]
    with compute_engine("demo") as con:
        load_input(con, engine, catalogue, needed_features([asp], catalogue))
        bounds = bind_all(con, engine, [asp], load_parameters(), catalogue, True)
        found: list[str] = []
        for bound in bounds:
            assert isinstance(bound, rules_engine.Bound)
            line_sql = rules_engine.render_derived(bound, "poverty_line_tiyn")
            line = con.execute(f"SELECT {line_sql}").fetchall()[0][0]
            found += [
                r[0]
                for r in con.execute(
                    f"""
                    SELECT household_id FROM profile_input
                    WHERE as_of = DATE '{bound.day.isoformat()}' AND len(held) = 0
                      AND idle_able_bodied_adults = 0 AND non_mortgage_loans = 0
                      AND per_capita_income_tiyn > {int(line)}
                      AND per_capita_income_tiyn * members < {int(line)} * (members + 1)
                    ORDER BY household_id LIMIT 1
                    """
                ).fetchall()
            ]
    if not found:
        raise QamqorError(
            "no household is just above the poverty line with nobody idle and no loans"
        )
    return found[0]


def birth_events(
    session: Session, born: dt.date, serial_from: int = 9000
) -> tuple[str, list[dict[str, Any]]]:
    """The household chosen and the events (with their `source`) announcing the birth."""
    household_id = _candidate(session)
    from qamqor.privacy.households import head_of

    head = head_of(session, household_id)
    if head is None:
        raise QamqorError(f"household {household_id} has no head")
    parent = session.execute(
        select(PopulationFact)
        .where(PopulationFact.iin == head)
        .order_by(PopulationFact.updated_on.desc(), PopulationFact.id.desc())
        .limit(1)
    ).scalar_one()
    serial = serial_from
    child = make_iin(born, "F", serial)
    while (
        child is None
        or session.execute(
            select(PopulationFact.id).where(PopulationFact.iin == child).limit(1)
        ).first()
    ):
        serial += 1
        child = make_iin(born, "F", serial)
    day = born.isoformat()
    occurred = dt.datetime.combine(born, dt.time(9, 30), dt.UTC).isoformat()
    events = [
        {
            "source": "population",
            "event_id": f"ZAGS-BIRTH-{child}",
            "type": "birth",
            "subject_iin": child,
            "occurred_at": occurred,
            "payload": {
                "record_id": f"P-{child}",
                "iin": child,
                "last_name": parent.last_name,
                "first_name": "Айша",
                "birth_date": day,
                "sex": "F",
                "region_code": parent.region_code,
                "settlement": parent.settlement,
                "updated_on": day,
            },
        },
        {
            "source": "household",
            "event_id": f"DFM-MOVEIN-{child}",
            "type": "member_moved_in",
            "subject_iin": child,
            "occurred_at": occurred,
            "payload": {
                "record_id": f"H-{household_id}-{child}",
                "household_id": household_id,
                "iin": child,
                "relation": "child",
                "member_from": day,
                "updated_on": day,
            },
        },
    ]
    return household_id, events
