"""Queries over ingested batches and their rejections (the read side of the registry feature)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qamqor.kit.errors import NotFoundError
from qamqor.registry.models import Batch, Rejection


def list_batches(
    session: Session, *, source: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[Batch], int]:
    """Batches newest first, with the total count for pagination."""
    query = select(Batch)
    count = select(func.count()).select_from(Batch)
    if source is not None:
        query = query.where(Batch.source == source)
        count = count.where(Batch.source == source)
    rows = session.scalars(query.order_by(Batch.id.desc()).offset(offset).limit(limit)).all()
    return list(rows), int(session.scalar(count) or 0)


def get_batch(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFoundError(f"no batch {batch_id}")
    return batch


def list_rejections(
    session: Session,
    batch_id: int,
    *,
    reason: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Rejection], int]:
    """A batch's rejections in file order; ``reason`` filters by a reason code prefix."""
    get_batch(session, batch_id)
    query = select(Rejection).where(Rejection.batch_id == batch_id)
    count = select(func.count()).select_from(Rejection).where(Rejection.batch_id == batch_id)
    if reason:
        pattern = f"%{reason}%"
        query = query.where(Rejection.reasons.like(pattern))
        count = count.where(Rejection.reasons.like(pattern))
    rows = session.scalars(query.order_by(Rejection.line_no).offset(offset).limit(limit)).all()
    return list(rows), int(session.scalar(count) or 0)
