"""The wallet's API for officers and auditors: program reports, payment traces, signals.

A program report is aggregates (sums by purpose, merchant category, region): no personal
data, no purpose asked. A trace names a household and where it spent its money, and a signal
may name one: both are that household's personal data (category ``payments``), opened with a
stated purpose (``?purpose=case:2026-123`` or ``X-Purpose``) through
``privacy.access.open_personal_data``, so each read is an access event the household sees in
its access log — for a list of signals, one event per household listed.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from qamqor.kit.db import session_scope
from qamqor.kit.errors import NotFoundError
from qamqor.privacy import access
from qamqor.wallet import reports, signals
from qamqor.wallet.models import Payment, Signal
from qamqor.web.auth import Caller, authorize

router = APIRouter(tags=["wallet"])


class ReviewIn(BaseModel):
    decision: Literal["confirmed", "dismissed"]
    note: str = Field(min_length=1, max_length=500, description="Why: required")


def _open_households(session: Session, caller: Caller, households: list[str]) -> None:
    for household_id in sorted(set(households)):
        access.open_personal_data(
            session,
            caller.principal,
            household_id=household_id,
            categories=["payments"],
            purpose=caller.purpose,
            action=caller.action,
        )


@router.get(
    "/wallet/programs/{program_id}/report",
    summary="A program's wallet money: credited, spent by purpose, category and region, "
    "returned, outstanding, pending",
)
def program_report(
    program_id: str,
    caller: Annotated[Caller, Depends(authorize("wallet.read_reports"))],
) -> dict[str, Any]:
    del caller
    with session_scope() as session:
        try:
            (report,) = reports.program_report(session, program_id)
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return report.to_dict()


@router.get(
    "/wallet/payments/{payment_id}/trace",
    summary="A payment's path: budget → household wallet → merchant, per tranche "
    "(purpose required; logged as an access to the household's payments)",
)
def payment_trace(
    payment_id: int,
    caller: Annotated[Caller, Depends(authorize("wallet.trace"))],
) -> dict[str, Any]:
    with session_scope() as session:
        payment = session.get(Payment, payment_id)
        if payment is None:
            raise HTTPException(status_code=404, detail=f"no payment {payment_id}")
        _open_households(session, caller, [payment.household_id])
        return reports.trace(session, payment_id)


@router.get(
    "/wallet/signals",
    summary="Misuse signals for review, newest first (purpose required; each household "
    "listed is logged as an access)",
)
def list_signals(
    caller: Annotated[Caller, Depends(authorize("wallet.read_signals"))],
    status: Annotated[Literal["open", "confirmed", "dismissed"] | None, Query()] = None,
    kind: Annotated[Literal["drain", "split", "far"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    with session_scope() as session:
        found = signals.list_signals(session, status=status, kind=kind, limit=limit, offset=offset)
        _open_households(session, caller, [s.household_id for s in found if s.household_id])
        return {
            "limit": limit,
            "offset": offset,
            "items": [signals.signal_out(s) for s in found],
        }


@router.post(
    "/wallet/signals/{signal_id}/review",
    summary="Confirm or dismiss a signal, with a note (it never blocks anything by itself)",
)
def review_signal(
    signal_id: int,
    body: ReviewIn,
    caller: Annotated[Caller, Depends(authorize("wallet.read_signals"))],
) -> dict[str, Any]:
    principal = caller.principal
    reviewer = f"{principal.role}:{principal.login or principal.account_id}"
    with session_scope() as session:
        signal = session.get(Signal, signal_id)
        if signal is None:
            raise HTTPException(status_code=404, detail=f"no signal {signal_id}")
        if signal.household_id:
            _open_households(session, caller, [signal.household_id])
        try:
            reviewed = signals.review(
                session,
                signal_id,
                decision=body.decision,
                note=body.note,
                reviewer=reviewer,
                now=dt.datetime.now(dt.UTC),
            )
        except signals.SignalError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        return signals.signal_out(reviewed)
