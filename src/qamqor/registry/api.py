"""``/api/v1/registry``: the source registry catalogue, ingested batches and change events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from qamqor.kit.db import session_scope
from qamqor.kit.errors import NotFoundError
from qamqor.kit.i18n import explain_reason, normalise_language, translate
from qamqor.kit.settings import get_settings
from qamqor.registry import events, service
from qamqor.registry.catalogue import sources
from qamqor.registry.schemas import (
    BatchOut,
    BatchReportOut,
    Page,
    RejectionOut,
    SourceOut,
)
from qamqor.web.auth import Caller, authorize

router = APIRouter(prefix="/registry", tags=["registry"])


def db_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(db_session)]


def _limit(limit: int) -> int:
    return min(limit, get_settings().page_size_max)


@router.get("/sources", response_model=list[SourceOut], summary="The source registry catalogue")
def list_sources(
    _: Annotated[Caller, Depends(authorize("registry.read_sources"))],
) -> list[SourceOut]:
    return [
        SourceOut(
            code=s.code,
            names=s.names,
            owner=s.owner,
            cadence_days=s.cadence_days,
            columns=[
                {"name": c.name, "type": c.type, "required": c.required, "values": list(c.values)}
                for c in s.columns
            ],
        )
        for s in sources().values()
    ]


@router.get("/batches", response_model=Page[BatchOut], summary="Ingested batches, newest first")
def list_batches(
    session: SessionDep,
    caller: Annotated[Caller, Depends(authorize("registry.read_batches"))],
    source: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> Page[BatchOut]:
    if caller.rule.scope == "source":  # a registry client lists its own registry's batches
        caller.require_source(source or str(caller.principal.source))
        source = caller.principal.source
    rows, total = service.list_batches(session, source=source, offset=offset, limit=_limit(limit))
    return Page(
        items=[BatchOut.model_validate(r) for r in rows], total=total, offset=offset, limit=limit
    )


@router.get(
    "/batches/{batch_id}",
    response_model=BatchReportOut,
    summary="One batch's reconciled report",
)
def get_batch(
    batch_id: int,
    session: SessionDep,
    caller: Annotated[Caller, Depends(authorize("registry.read_batches"))],
) -> BatchReportOut:
    try:
        batch = service.get_batch(session, batch_id)
    except NotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    caller.require_source(batch.source)
    base = BatchOut.model_validate(batch).model_dump()
    return BatchReportOut(
        **base,
        reconciles=batch.rows_read == batch.facts + batch.rejections + batch.duplicates,
        rejection_reasons=batch.rejection_reasons,
    )


@router.get(
    "/batches/{batch_id}/rejections",
    response_model=Page[RejectionOut],
    summary="A batch's rejected rows with line numbers and reasons",
)
def list_rejections(
    batch_id: int,
    session: SessionDep,
    caller: Annotated[Caller, Depends(authorize("registry.read_rejections"))],
    reason: Annotated[str | None, Query(description="Only rejections citing this reason")] = None,
    lang: Annotated[
        str | None, Query(description="ru, kk or en; default from Accept-Language")
    ] = None,
    accept_language: Annotated[str | None, Header()] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> Page[RejectionOut]:
    try:
        caller.require_source(service.get_batch(session, batch_id).source)
        rows, total = service.list_rejections(
            session, batch_id, reason=reason, offset=offset, limit=_limit(limit)
        )
    except NotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    language = normalise_language(lang or accept_language)
    return Page(
        items=[
            RejectionOut(
                line_no=r.line_no,
                source_record_id=r.source_record_id,
                reasons=r.reasons.split(),
                explanations=[explain_reason(code, language) for code in r.reasons.split()],
                raw=r.raw,
            )
            for r in rows
        ],
        total=total,
        offset=offset,
        limit=limit,
    )


# --- change events (registry/events.py, docs/events.md) ------------------------------------


class EventBatchIn(BaseModel):
    # Items stay untyped here so that a malformed event is refused on its own, with its
    # reasons, instead of failing the whole request with a 422.
    events: list[Any] = Field(
        description=(
            f"At most {events.MAX_EVENTS:,} events: {{event_id, type, subject_iin, "
            "occurred_at, payload}, the payload a row of the source's extract"
        ),
        examples=[
            [
                {
                    "event_id": "ZAGS-2026-000123",
                    "type": "birth",
                    "subject_iin": "261128600010",
                    "occurred_at": "2026-11-28T10:00:00+05:00",
                    "payload": {
                        "record_id": "POP-261128600010",
                        "iin": "261128600010",
                        "last_name": "Ахметова",
                        "first_name": "Айгерім",
                        "patronymic": "Ерланқызы",
                        "birth_date": "2026-11-28",
                        "sex": "F",
                        "region_code": "75",
                        "settlement": "urban",
                        "death_date": "",
                        "updated_on": "2026-11-28",
                    },
                }
            ]
        ],
    )


class EventReasonOut(BaseModel):
    code: str = Field(description="A reason code, <check>[:<column>]")
    text: str = Field(description="The reason in words, in the requested language")


class EventResultOut(BaseModel):
    event_id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    inbox_id: int | None = Field(description="The inbox row (the original's for a duplicate)")
    reasons: list[EventReasonOut]


class EventBatchOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResultOut] = Field(description="One per event, in the request's order")


@router.post(
    "/{source}/events",
    response_model=EventBatchOut,
    summary="Push change events of a source registry into the inbox",
)
def push_events(
    source: str,
    batch: EventBatchIn,
    caller: Annotated[Caller, Depends(authorize("registry.push_events"))],
    lang: Annotated[
        str | None, Query(description="ru, kk or en; default from Accept-Language")
    ] = None,
    accept_language: Annotated[str | None, Header()] = None,
) -> EventBatchOut:
    """Each event is checked on its own; valid ones are committed to the inbox before this
    answers, rejected ones are not stored. Resending an event is safe (``duplicate``)."""
    language = normalise_language(lang or accept_language)
    if source not in sources():
        raise HTTPException(
            status_code=404, detail=translate("events.unknown_source", language, source=source)
        )
    caller.require_source(source)
    if len(batch.events) > events.MAX_EVENTS:
        raise HTTPException(
            status_code=413,
            detail=translate(
                "events.too_many", language, count=len(batch.events), limit=events.MAX_EVENTS
            ),
        )
    received_at = dt.datetime.now(dt.UTC)
    # The route owns its transaction, so the commit is done before the response is built.
    with session_scope() as session:
        results = events.accept_events(session, source, batch.events, received_at)
    counts = {status: 0 for status in ("accepted", "duplicate", "rejected")}
    for result in results:
        counts[result.status] += 1
    return EventBatchOut(
        accepted=counts["accepted"],
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        results=[
            EventResultOut(
                event_id=r.event_id,
                status=r.status,
                inbox_id=r.inbox_id,
                reasons=[
                    EventReasonOut(code=code, text=explain_reason(code, language))
                    for code in r.reasons
                ],
            )
            for r in results
        ],
    )
