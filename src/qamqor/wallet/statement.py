"""The citizen's view of their household's wallet: balances by purpose, open tranches, and
the statement of credits, payments, refunds and returns."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qamqor.kit.i18n import translate
from qamqor.rules.explain import format_tenge
from qamqor.wallet import tranches
from qamqor.wallet.models import Merchant, Payment, Refund, Tranche, Transfer
from qamqor.wallet.receipts import program_name, purpose_name
from qamqor.wallet.schemas import PurposeBalanceOut, TrancheOut, TransactionOut, WalletOut


def tranche_status(tranche: Tranche, now: dt.datetime) -> str:
    if tranche.expires_at <= now:
        return "expired"
    if tranche.activation_required and tranche.activated_at is None:
        return "needs_activation"
    return "usable"


def tranche_out(tranche: Tranche, lang: str, now: dt.datetime) -> TrancheOut:
    status = tranche_status(tranche, now)
    return TrancheOut(
        id=tranche.id,
        program_id=tranche.program_id,
        program_name=program_name(tranche.program_id, lang),
        purpose=tranche.purpose,
        purpose_name=purpose_name(tranche.purpose, lang),
        amount_tiyn=tranche.amount_tiyn,
        spent_tiyn=tranche.spent_tiyn,
        pending_tiyn=tranche.pending_tiyn,
        remaining_tiyn=tranche.remaining_tiyn,
        remaining=format_tenge(tranche.remaining_tiyn, lang),
        period_start=tranche.period_start,
        period_end=tranche.period_end,
        expires_at=tranche.expires_at,
        activation_required=tranche.activation_required,
        activated_at=tranche.activated_at,
        status=status,
        status_text=translate(f"wallet.tranche.status.{status}", lang),
    )


def wallet_view(session: Session, household_id: str, lang: str, now: dt.datetime) -> WalletOut:
    held = list(
        session.scalars(
            select(Tranche)
            .where(Tranche.household_id == household_id, Tranche.closed.is_(False))
            .order_by(Tranche.expires_at, Tranche.id)
        )
    )
    balances = []
    for purpose in sorted({t.purpose for t in held}):
        mine = [t for t in held if t.purpose == purpose]
        available = sum(t.remaining_tiyn for t in mine if tranches.usable(t, now))
        balances.append(
            PurposeBalanceOut(
                purpose=purpose,
                purpose_name=purpose_name(purpose, lang),
                available_tiyn=available,
                available=format_tenge(available, lang),
                awaiting_activation_tiyn=sum(
                    t.remaining_tiyn for t in mine if tranche_status(t, now) == "needs_activation"
                ),
                pending_tiyn=sum(t.pending_tiyn for t in mine),
            )
        )
    return WalletOut(
        household_id=household_id,
        lang=lang,
        balances=balances,
        tranches=[tranche_out(t, lang, now) for t in held],
    )


def transactions(
    session: Session, household_id: str, lang: str, *, limit: int, offset: int
) -> tuple[list[TransactionOut], int]:
    """Credits, payments, refunds and returns of the household, newest first. Each kind is
    read newest first up to ``offset + limit`` and the four are merged: the page is exact
    without a UNION over four differently shaped tables."""
    window = offset + limit
    items: list[TransactionOut] = []
    names: dict[str, str] = {}

    def merchant_name(bin_: str) -> str:
        if bin_ not in names:
            found = session.get(Merchant, bin_)
            names[bin_] = found.name if found else bin_
        return names[bin_]

    def entry(
        kind: str,
        id_: int,
        at: dt.datetime,
        direction: str,
        tiyn: int,
        description: str,
        **fields: Any,
    ) -> TransactionOut:
        blank = dict.fromkeys(
            ("status", "purpose", "program_id", "merchant_bin", "merchant_name", "payment_id")
        )
        return TransactionOut(
            kind=kind,
            id=id_,
            occurred_at=at,
            direction=direction,
            amount_tiyn=tiyn,
            amount=format_tenge(tiyn, lang),
            description=description,
            **{**blank, **fields},
        )

    credits = session.scalars(
        select(Tranche)
        .where(Tranche.household_id == household_id)
        .order_by(Tranche.created_at.desc(), Tranche.id.desc())
        .limit(window)
    )
    for t in credits:
        program = program_name(t.program_id, lang)
        purpose = purpose_name(t.purpose, lang)
        items.append(
            entry(
                "credit",
                t.id,
                t.created_at,
                "in",
                t.amount_tiyn,
                translate("wallet.tx.credit", lang, program=program, purpose=purpose),
                purpose=t.purpose,
                program_id=t.program_id,
            )
        )
    paid = session.scalars(
        select(Payment)
        .where(Payment.household_id == household_id)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(window)
    )
    for p in paid:
        name = merchant_name(p.merchant_bin)
        status = translate(f"wallet.payment.status.{p.status}", lang)
        items.append(
            entry(
                "payment",
                p.id,
                p.created_at,
                "out",
                p.amount_tiyn,
                translate("wallet.tx.payment", lang, merchant=name, status=status),
                status=p.status,
                merchant_bin=p.merchant_bin,
                merchant_name=name,
                payment_id=p.id,
            )
        )
    refunded = session.execute(
        select(Refund, Payment.merchant_bin)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Payment.household_id == household_id)
        .order_by(Refund.created_at.desc(), Refund.id.desc())
        .limit(window)
    ).all()
    for r, bin_ in refunded:
        name = merchant_name(bin_)
        items.append(
            entry(
                "refund",
                r.id,
                r.created_at,
                "in",
                r.amount_tiyn,
                translate("wallet.tx.refund", lang, merchant=name),
                merchant_bin=bin_,
                merchant_name=name,
                payment_id=r.payment_id,
            )
        )
    returned = session.execute(
        select(Transfer, Tranche)
        .join(Tranche, Tranche.id == Transfer.tranche_id)
        .where(Tranche.household_id == household_id, Transfer.code == "sweep")
        .order_by(Transfer.created_at.desc(), Transfer.id.desc())
        .limit(window)
    ).all()
    for moved, t in returned:
        items.append(
            entry(
                "return",
                moved.id,
                moved.created_at,
                "out",
                moved.amount_tiyn,
                translate("wallet.tx.return", lang, program=program_name(t.program_id, lang)),
                purpose=t.purpose,
                program_id=t.program_id,
            )
        )
    order = {"return": 0, "refund": 1, "payment": 2, "credit": 3}  # same instant: credit first
    items.sort(key=lambda i: (i.occurred_at, -order[i.kind], i.id), reverse=True)
    total = sum(
        session.scalar(select(func.count()).select_from(query.subquery())) or 0
        for query in (
            select(Tranche.id).where(Tranche.household_id == household_id),
            select(Payment.id).where(Payment.household_id == household_id),
            select(Refund.id)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Payment.household_id == household_id),
            select(Transfer.id)
            .join(Tranche, Tranche.id == Transfer.tranche_id)
            .where(Tranche.household_id == household_id, Transfer.code == "sweep"),
        )
    )
    return items[offset:window], int(total)
