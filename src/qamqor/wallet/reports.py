"""Traceability: where each tenge went, per payment and per program, and the proof it adds up.

- ``trace``: one payment's path, budget → household wallet → merchant, for every tranche it
  drew on: the program and its budget account, the credit that opened the tranche, the
  payment's transfers and any refunds.
- ``program_report``: per program, what was credited (issued), spent (net of refunds) by
  purpose, merchant category and region, returned, still held in wallets, and pending.

The proof that it all adds up is ``qamqor.wallet.reconcile``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from qamqor.kit.errors import NotFoundError
from qamqor.rules.spec import load_programs
from qamqor.wallet import ledger
from qamqor.wallet.models import Account, Merchant, Payment, Refund, Tranche, Transfer

POSTED = ("posted", "post_pending")  # flags that add to the posted sums
RESOLVED = ("post_pending", "void_pending")  # flags that take a pending amount out of pending


# --- trace ----------------------------------------------------------------------------------


def _transfer_out(t: Transfer, codes: dict[int, str]) -> dict[str, Any]:
    return {
        "id": t.id,
        "code": t.code,
        "flags": t.flags,
        "amount_tiyn": t.amount_tiyn,
        "debit": codes.get(t.debit_account_id, str(t.debit_account_id)),
        "credit": codes.get(t.credit_account_id, str(t.credit_account_id)),
        "pending_id": t.pending_id,
        "created_at": t.created_at.isoformat(),
    }


def trace(session: Session, payment_id: int) -> dict[str, Any]:
    """The path of a payment: for each tranche it drew on, budget → wallet → merchant, with
    the transfers that moved the money and the refunds that brought some of it back."""
    payment = session.get(Payment, payment_id)
    if payment is None:
        raise NotFoundError(f"no payment {payment_id}")
    merchant = session.get(Merchant, payment.merchant_bin)
    moved = list(
        session.scalars(
            select(Transfer).where(Transfer.payment_id == payment.id).order_by(Transfer.id)
        )
    )
    tranche_ids = sorted({t.tranche_id for t in moved if t.tranche_id is not None})
    drawn = {t.id: t for t in session.scalars(select(Tranche).where(Tranche.id.in_(tranche_ids)))}
    credits = {
        t.tranche_id: t
        for t in session.scalars(
            select(Transfer).where(Transfer.tranche_id.in_(tranche_ids), Transfer.code == "credit")
        )
    }
    # a refund to a tranche closed meanwhile goes on to the program's returns
    return_keys = [
        f"refund-return:{refund_id}:{tranche_id}"
        for refund_id in _refund_ids(session, payment.id)
        for tranche_id in tranche_ids
    ]
    returned = list(
        session.scalars(
            select(Transfer).where(Transfer.idempotency_key.in_(return_keys)).order_by(Transfer.id)
        )
    )
    account_ids = {
        a
        for t in [*moved, *credits.values(), *returned]
        for a in (t.debit_account_id, t.credit_account_id)
    }
    codes: dict[int, str] = {
        account_id: code
        for account_id, code in session.execute(
            select(Account.id, Account.code).where(Account.id.in_(account_ids))
        )
    }
    legs = []
    for tranche_id in tranche_ids:
        tranche = drawn[tranche_id]
        credit = credits.get(tranche_id)
        mine = [t for t in moved if t.tranche_id == tranche_id]
        paid = sum(t.amount_tiyn for t in mine if t.code == "payment" and t.flags in POSTED)
        refunded = sum(t.amount_tiyn for t in mine if t.code == "refund")
        legs.append(
            {
                "program_id": tranche.program_id,
                "budget_account": ledger.budget_code(tranche.program_id),
                "tranche": {
                    "id": tranche.id,
                    "purpose": tranche.purpose,
                    "entitlement_id": tranche.entitlement_id,
                    "period_start": tranche.period_start.isoformat(),
                    "period_end": tranche.period_end.isoformat(),
                    "expires_at": tranche.expires_at.isoformat(),
                    "amount_tiyn": tranche.amount_tiyn,
                    "spent_tiyn": tranche.spent_tiyn,
                    "returned_tiyn": tranche.returned_tiyn,
                    "closed": tranche.closed,
                    "close_reason": tranche.close_reason,
                },
                "wallet_account": codes.get(tranche.account_id)
                or ledger.wallet_code(tranche.household_id, tranche.purpose),
                "credit_transfer": _transfer_out(credit, codes) if credit else None,
                "payment_transfers": [_transfer_out(t, codes) for t in mine if t.code == "payment"],
                "refund_transfers": [_transfer_out(t, codes) for t in mine if t.code == "refund"],
                "returned_transfers": [
                    _transfer_out(t, codes) for t in returned if t.tranche_id == tranche_id
                ],
                "net_drawn_tiyn": paid - refunded,
            }
        )
    refunds = session.scalars(
        select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.id)
    ).all()
    return {
        "payment": {
            "id": payment.id,
            "household_id": payment.household_id,
            "amount_tiyn": payment.amount_tiyn,
            "refunded_tiyn": payment.refunded_tiyn,
            "status": payment.status,
            "category": payment.category,
            "region_code": payment.region_code,
            "created_at": payment.created_at.isoformat(),
            "resolved_at": payment.resolved_at.isoformat() if payment.resolved_at else None,
        },
        "merchant": {
            "bin": payment.merchant_bin,
            "name": merchant.name if merchant else None,
            "account": ledger.merchant_code(payment.merchant_bin),
            "category": payment.category,
            "region_code": payment.region_code,
        },
        "legs": legs,
        "refunds": [
            {
                "id": r.id,
                "amount_tiyn": r.amount_tiyn,
                "reason": r.reason,
                "created_at": r.created_at.isoformat(),
            }
            for r in refunds
        ],
    }


def _refund_ids(session: Session, payment_id: int) -> list[int]:
    return list(session.scalars(select(Refund.id).where(Refund.payment_id == payment_id)))


# --- program report -------------------------------------------------------------------------


@dataclass
class ProgramReport:
    """A program's money: ``credited = spent + pending + returned + outstanding``."""

    program_id: str
    tranches: int = 0
    households: int = 0
    credited_tiyn: int = 0  # issued from the budget
    spent_tiyn: int = 0  # at merchants, net of refunds
    pending_tiyn: int = 0  # authorised, not yet captured or voided
    returned_tiyn: int = 0  # expired or lapsed, back to returns:<program>
    outstanding_tiyn: int = 0  # still held in households' wallets
    closed_expired: int = 0
    closed_lapsed: int = 0
    spent_by_purpose: dict[str, int] = field(default_factory=dict)
    spent_by_category: dict[str, int] = field(default_factory=dict)
    spent_by_region: dict[str, int] = field(default_factory=dict)
    returned_by_reason: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _net_spent() -> ColumnElement[int]:
    """A transfer's contribution to what was spent: + posted payments, - refunds."""
    return func.coalesce(
        func.sum(
            case(
                (
                    and_(Transfer.code == "payment", Transfer.flags.in_(POSTED)),
                    Transfer.amount_tiyn,
                ),
                (Transfer.code == "refund", -Transfer.amount_tiyn),
                else_=0,
            )
        ),
        0,
    )


def program_report(session: Session, program_id: str | None = None) -> list[ProgramReport]:
    """One report per program that credited anything (or the one asked for, which must be a
    published program or have credits). Spent by category and region comes from the payments'
    transfers (the merchant's category and region when it charged), net of refunds."""
    where = [Tranche.program_id == program_id] if program_id else []
    rows = session.execute(
        select(
            Tranche.program_id,
            func.count(),
            func.count(func.distinct(Tranche.household_id)),
            func.sum(Tranche.amount_tiyn),
            func.sum(Tranche.spent_tiyn),
            func.sum(Tranche.pending_tiyn),
            func.sum(Tranche.returned_tiyn),
            func.sum(case((Tranche.close_reason == "expired", 1), else_=0)),
            func.sum(case((Tranche.close_reason == "lapsed", 1), else_=0)),
        )
        .where(*where)
        .group_by(Tranche.program_id)
        .order_by(Tranche.program_id)
    ).all()
    reports: dict[str, ProgramReport] = {}
    for pid, count, households, amount, spent, pending, returned, expired, lapsed in rows:
        reports[pid] = ProgramReport(
            program_id=pid,
            tranches=int(count),
            households=int(households),
            credited_tiyn=int(amount or 0),
            spent_tiyn=int(spent or 0),
            pending_tiyn=int(pending or 0),
            returned_tiyn=int(returned or 0),
            outstanding_tiyn=int((amount or 0) - (spent or 0) - (pending or 0) - (returned or 0)),
            closed_expired=int(expired or 0),
            closed_lapsed=int(lapsed or 0),
        )
    if program_id and program_id not in reports:
        if program_id not in load_programs():
            raise NotFoundError(f"no program {program_id!r}")
        reports[program_id] = ProgramReport(program_id=program_id)
    for pid, purpose, spent in session.execute(
        select(Tranche.program_id, Tranche.purpose, func.sum(Tranche.spent_tiyn))
        .where(*where)
        .group_by(Tranche.program_id, Tranche.purpose)
    ):
        if spent:
            reports[pid].spent_by_purpose[purpose] = int(spent)
    for pid, reason, returned in session.execute(
        select(Tranche.program_id, Tranche.close_reason, func.sum(Tranche.returned_tiyn))
        .where(*where, Tranche.returned_tiyn > 0)
        .group_by(Tranche.program_id, Tranche.close_reason)
    ):
        # a refund to a tranche that closed comes back too: it is counted under its reason
        reports[pid].returned_by_reason[reason or "open"] = int(returned)
    spent = _net_spent().label("spent")
    for pid, category, region, amount in session.execute(
        select(Tranche.program_id, Payment.category, Payment.region_code, spent)
        .select_from(Transfer)
        .join(Tranche, Tranche.id == Transfer.tranche_id)
        .join(Payment, Payment.id == Transfer.payment_id)
        .where(*where, Transfer.code.in_(("payment", "refund")))
        .group_by(Tranche.program_id, Payment.category, Payment.region_code)
    ):
        amount = int(amount or 0)
        if not amount:
            continue
        report = reports[pid]
        report.spent_by_category[category] = report.spent_by_category.get(category, 0) + amount
        report.spent_by_region[region] = report.spent_by_region.get(region, 0) + amount
    for report in reports.values():
        for name in ("spent_by_purpose", "spent_by_category", "spent_by_region"):
            setattr(report, name, dict(sorted(getattr(report, name).items())))
    return [reports[k] for k in sorted(reports)]
