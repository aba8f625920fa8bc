"""``/api/v1/households/{household_id}/profile``: the profile with the source of every value."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query

from qamqor.kit.db import get_engine, session_scope
from qamqor.kit.errors import NotFoundError
from qamqor.kit.i18n import normalise_language
from qamqor.profiles.schemas import ProfileOut, ProfileVersionOut, profile_document
from qamqor.profiles.service import changes, history, open_household
from qamqor.web.auth import Caller, authorize

router = APIRouter(tags=["profiles"])


@router.get(
    "/households/{household_id}/profile",
    response_model=ProfileOut,
    summary="A household's profile: every feature, its quality flags and the facts behind it",
)
def get_profile(
    household_id: str,
    caller: Annotated[Caller, Depends(authorize("household.read_profile"))],
    version: Annotated[int | None, Query(ge=1, description="A version (default: current)")] = None,
    sources: Annotated[bool, Query(description="Include the facts behind every value")] = True,
    lang: Annotated[str | None, Query(description="ru, kk or en")] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> dict[str, object]:
    with session_scope() as session:
        try:
            open_household(session, caller, household_id, ["profile", "provenance"])
            return profile_document(
                get_engine(),
                session,
                household_id,
                version,
                with_sources=sources,
                lang=normalise_language(lang or accept_language),
            )
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None


@router.get(
    "/households/{household_id}/profile/history",
    response_model=list[ProfileVersionOut],
    summary="Every version of a household's profile and what changed in each",
)
def get_profile_history(
    household_id: str,
    caller: Annotated[Caller, Depends(authorize("household.read_profile"))],
) -> list[dict[str, object]]:
    with session_scope() as session:
        try:
            open_household(session, caller, household_id, ["profile"])
            versions = history(session, household_id)
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        out: list[dict[str, object]] = []
        previous = None
        for v in versions:
            out.append(
                {
                    "version": v.version,
                    "as_of": v.as_of,
                    "build_id": v.build_id,
                    "changed": changes(previous, v),
                }
            )
            previous = v
        return out
