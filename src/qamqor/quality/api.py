"""``/api/v1/quality/...``: data-quality issues and the scorecard per registry and region."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from qamqor.kit.db import session_scope
from qamqor.kit.i18n import normalise_language
from qamqor.kit.settings import get_settings
from qamqor.profiles.service import open_household
from qamqor.quality.checks import load_checks
from qamqor.quality.models import QualityIssue, QualityIssueSubject
from qamqor.quality.service import issue_subjects, list_issues, scorecard
from qamqor.web.auth import Caller, authorize

router = APIRouter(prefix="/quality", tags=["quality"])


class SubjectOut(BaseModel):
    household_id: str | None
    iin: str | None


class IssueOut(BaseModel):
    id: int
    check: str
    check_name: str
    dimension: str
    severity: str
    owner: str
    status: str
    key: str
    detail: str
    region_code: str | None
    persons: int
    households: int
    features_tainted: list[str]
    opened_at: str
    last_seen_at: str
    closed_at: str | None


class IssuePage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[IssueOut]


class IssueDetail(IssueOut):
    subjects: list[SubjectOut]


def _issue(issue: QualityIssue, lang: str) -> dict[str, Any]:
    from qamqor.profiles.catalogue import load_catalogue

    check = load_checks().get(issue.check_id)
    return {
        "id": issue.id,
        "check": issue.check_id,
        "check_name": check.describe(lang) if check else issue.check_id,
        "dimension": issue.dimension,
        "severity": issue.severity,
        "owner": issue.owner,
        "status": issue.status,
        "key": issue.key,
        "detail": issue.detail,
        "region_code": issue.region_code,
        "persons": issue.persons,
        "households": issue.households,
        "features_tainted": check.tainted_features(load_catalogue()) if check else [],
        "opened_at": issue.opened_at.isoformat(),
        "last_seen_at": issue.last_seen_at.isoformat(),
        "closed_at": issue.closed_at.isoformat() if issue.closed_at else None,
    }


def _households(session: Session, issue_ids: list[int], only: str | None) -> list[str]:
    if only is not None:
        return [only]
    if not issue_ids:
        return []
    found = session.scalars(
        select(QualityIssueSubject.household_id)
        .where(
            QualityIssueSubject.issue_id.in_(issue_ids),
            QualityIssueSubject.household_id.is_not(None),
        )
        .distinct()
    )
    return sorted(h for h in found if h)


@router.get("/issues", response_model=IssuePage, summary="Data-quality issues, filtered, paged")
def get_issues(
    caller: Annotated[Caller, Depends(authorize("household.read_quality"))],
    status: Annotated[str, Query(pattern="^(open|closed|all)$")] = "open",
    check: str | None = None,
    owner: Annotated[str | None, Query(description="Source registry that owns the fix")] = None,
    severity: Annotated[str | None, Query(pattern="^(error|warning|info)$")] = None,
    region: str | None = None,
    household_id: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 100,
    lang: str | None = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    limit = min(limit, get_settings().page_size_max)
    language = normalise_language(lang or accept_language)
    with session_scope() as session:
        total, issues = list_issues(
            session,
            status=None if status == "all" else status,
            check_id=check,
            owner=owner,
            severity=severity,
            region_code=region,
            household_id=household_id,
            offset=offset,
            limit=limit,
        )
        # Issues name persons (key, detail): each household on the page is opened, under the
        # caller's stated purpose, and logged; a citizen lists only their own (?household_id=).
        for household in _households(session, [i.id for i in issues], household_id):
            open_household(session, caller, household, ["quality"])
        return {
            "total": total,
            "offset": offset,
            "limit": limit,
            "items": [_issue(i, language) for i in issues],
        }


@router.get(
    "/issues/{issue_id}",
    response_model=IssueDetail,
    summary="One issue with the persons and households it affects",
)
def get_issue(
    issue_id: int,
    caller: Annotated[Caller, Depends(authorize("household.read_quality"))],
    lang: str | None = None,
) -> dict[str, Any]:
    with session_scope() as session:
        issue = session.get(QualityIssue, issue_id)
        if issue is None:
            raise HTTPException(status_code=404, detail=f"no data-quality issue {issue_id}")
        subjects = issue_subjects(session, issue_id)
        for household in sorted({s.household_id for s in subjects if s.household_id}):
            open_household(session, caller, household, ["quality"])
        out = _issue(issue, normalise_language(lang))
        out["subjects"] = [{"household_id": s.household_id, "iin": s.iin} for s in subjects]
        return out


@router.get("/scorecard", summary="Quality per source registry or per region")
def get_scorecard(
    _: Annotated[Caller, Depends(authorize("quality.read_scorecard"))],
    by: Annotated[str, Query(pattern="^(source|region)$")] = "source",
) -> list[dict[str, Any]]:
    with session_scope() as session:
        return scorecard(session, by)
