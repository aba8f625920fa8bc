"""Decisions and simulations over HTTP.

``/api/v1/households/{id}/decisions``: every published program decided now for the household's
current profile, each explained in the caller's language (criteria, values, what would change
it, what is unknown), with the id of the stored decision when it is the current one; a stored
decision is also readable by its id. ``/api/v1/simulations``: a rule change over the whole
population, as totals (no personal data), and the changed households for officers who state a
purpose.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import BaseModel, Field

from qamqor.kit.db import get_engine, session_scope
from qamqor.kit.errors import NotFoundError, QamqorError
from qamqor.kit.i18n import normalise_language
from qamqor.profiles.service import open_household
from qamqor.rules.population import NoProfiles
from qamqor.rules.service import explain_decision, household_decisions, stored_decision
from qamqor.rules.simulate import SimulationError, simulate
from qamqor.web.auth import Caller, authorize

router = APIRouter(tags=["rules"])


def _language(lang: str | None, accept_language: str | None) -> str:
    return normalise_language(lang or accept_language)


@router.get(
    "/households/{household_id}/decisions",
    summary="Every program decided for the household now, explained",
)
def get_household_decisions(
    household_id: str,
    caller: Annotated[Caller, Depends(authorize("household.read_decisions"))],
    program: Annotated[str | None, Query(description="Only this program")] = None,
    lang: Annotated[str | None, Query(description="ru, kk or en")] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    language = _language(lang, accept_language)
    with session_scope() as session:
        open_household(session, caller, household_id, ["decisions", "profile"])
    try:
        decisions = household_decisions(get_engine(), household_id, [program] if program else None)
    except NotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except QamqorError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    with session_scope() as session:
        items = [explain_decision(session, d, language) for d in decisions]
    return {"household_id": household_id, "lang": language, "decisions": items}


@router.get(
    "/households/{household_id}/decisions/{decision_id}",
    summary="One stored decision about the household, explained",
)
def get_household_decision(
    household_id: str,
    decision_id: int,
    caller: Annotated[Caller, Depends(authorize("household.read_decisions"))],
    lang: Annotated[str | None, Query(description="ru, kk or en")] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    with session_scope() as session:
        open_household(session, caller, household_id, ["decisions", "profile"])
        try:
            decision = stored_decision(session, decision_id)
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        if decision["household_id"] != household_id:
            raise HTTPException(status_code=404, detail=f"no decision {decision_id} here")
        return explain_decision(session, decision, _language(lang, accept_language))


class SimulationIn(BaseModel):
    program: str = Field(description="The program id, e.g. asp")
    set: list[str] = Field(
        default_factory=list,
        description="Changes: name=value or name@REGION=value; money in tenge, shares as decimals",
        examples=[["subsistence_minimum_tiyn=55000", "median_income_share=0.40"]],
    )


def _simulate(body: SimulationIn, limit: int = 0, offset: int = 0) -> dict[str, Any]:
    try:
        return simulate(get_engine(), body.program, body.set, limit, offset)
    except (SimulationError, NoProfiles) as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    except QamqorError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


@router.post(
    "/simulations",
    summary="A rule change over the whole population against today: totals, regions, histogram",
)
def post_simulation(
    body: SimulationIn,
    caller: Annotated[Caller, Depends(authorize("rules.simulate"))],
) -> dict[str, Any]:
    del caller
    return _simulate(body)


@router.post(
    "/simulations/changed-households",
    summary="The households a rule change would affect, largest change first (paginated)",
)
def post_simulation_households(
    body: SimulationIn,
    caller: Annotated[Caller, Depends(authorize("rules.simulate_households"))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    del caller
    result = _simulate(body, limit, offset)
    return {
        "program": result["program"],
        "changes": result["changes"],
        "changed_households": result["changed_households"],
    }
