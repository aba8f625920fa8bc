"""``/api/v1/registry``: the source registry catalogue and ingested batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from sqlalchemy.orm import Session

from qamqor.kit.db import session_scope
from qamqor.kit.errors import NotFoundError
from qamqor.kit.i18n import explain_reason, normalise_language
from qamqor.kit.settings import get_settings
from qamqor.registry import service
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
