"""What the wallet's API shows: receipts of payments and refunds, merchants, names of
purposes, programs and categories in the reader's language."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from qamqor.kit.i18n import translate
from qamqor.privacy import access, households
from qamqor.privacy.identities import Principal
from qamqor.privacy.policy import rule_for
from qamqor.proactive.notify import program_name
from qamqor.rules.explain import format_tenge
from qamqor.wallet import tranches
from qamqor.wallet.categories import allowed_purposes, categories
from qamqor.wallet.models import Merchant, Payment, PaymentCode, Refund, Tranche, Transfer
from qamqor.wallet.schemas import DrawOut, MerchantOut, ReceiptOut, RefundOut, RefundPartOut


def purpose_name(purpose: str, lang: str) -> str:
    return translate(f"wallet.purpose.{purpose}", lang)


def category_name(code: str, lang: str) -> str:
    found = categories().get(code)
    if found is None:
        return code
    return found.names.get(lang) or found.names.get("en") or code


def merchant_out(merchant: Merchant, lang: str) -> MerchantOut:
    return MerchantOut(
        bin=merchant.bin,
        name=merchant.name,
        category=merchant.category,
        category_name=category_name(merchant.category, lang),
        purposes=sorted(allowed_purposes(merchant.category)),
        region_code=merchant.region_code,
        status=merchant.status,
        status_reason=merchant.status_reason,
        created_at=merchant.created_at,
        updated_at=merchant.updated_at,
    )


def tranches_by_id(session: Session, ids: Sequence[int]) -> dict[int, Tranche]:
    if not ids:
        return {}
    return {t.id: t for t in session.scalars(select(Tranche).where(Tranche.id.in_(sorted(ids))))}


def draws(session: Session, payment_id: int, lang: str) -> list[DrawOut]:
    """What the payment took from each tranche when it was made (authorised or posted)."""
    rows = session.execute(
        select(Transfer.tranche_id, Transfer.amount_tiyn)
        .where(
            Transfer.payment_id == payment_id,
            Transfer.code == "payment",
            Transfer.flags.in_(("posted", "pending")),
        )
        .order_by(Transfer.id)
    ).all()
    found = tranches_by_id(session, [r[0] for r in rows if r[0] is not None])
    return [
        DrawOut(
            tranche_id=tranche_id,
            purpose=found[tranche_id].purpose,
            purpose_name=purpose_name(found[tranche_id].purpose, lang),
            program_id=found[tranche_id].program_id,
            program_name=program_name(found[tranche_id].program_id, lang),
            amount_tiyn=amount,
        )
        for tranche_id, amount in rows
        if tranche_id is not None
    ]


def earmarked_balance(session: Session, household_id: str, category: str, now: dt.datetime) -> int:
    """What the household may still spend at a merchant of ``category`` now."""
    open_tranches = session.scalars(
        select(Tranche).where(
            Tranche.household_id == household_id,
            Tranche.closed.is_(False),
            Tranche.purpose.in_(sorted(allowed_purposes(category))),
        )
    )
    return sum(t.remaining_tiyn for t in open_tranches if tranches.usable(t, now))


def record_read(
    session: Session, principal: Principal, action: str, household_id: str, categories: list[str]
) -> None:
    """An access event for a read the policy allows without a household scope check (the
    merchant's, by the citizen's code; the citizen's own): who, what, the legal basis."""
    rule = rule_for(principal.role, action)
    access.record_access(
        session,
        principal=principal,
        action=action,
        household_id=household_id,
        categories=categories,
        purpose=None,
        legal_basis=rule.legal_basis if rule else None,
        region=households.household_region(session, household_id),
        outcome="allowed",
        reason=None,
    )


def receipt_out(
    session: Session,
    principal: Principal,
    payment: Payment,
    merchant: Merchant,
    lang: str,
    now: dt.datetime,
) -> ReceiptOut:
    """The receipt of a payment. The household's balance is shown, and its reading recorded
    as an access event by ``principal``, only while the payment's code is valid."""
    code = session.scalar(select(PaymentCode).where(PaymentCode.payment_id == payment.id))
    balance: int | None = None
    if code is not None and code.expires_at > now:
        record_read(session, principal, "wallet.charge", payment.household_id, ["payments"])
        balance = earmarked_balance(session, payment.household_id, payment.category, now)
    return ReceiptOut(
        payment_id=payment.id,
        status=payment.status,
        status_text=translate(f"wallet.payment.status.{payment.status}", lang),
        amount_tiyn=payment.amount_tiyn,
        amount=format_tenge(payment.amount_tiyn, lang),
        refunded_tiyn=payment.refunded_tiyn,
        merchant_bin=merchant.bin,
        merchant_name=merchant.name,
        category=payment.category,
        category_name=category_name(payment.category, lang),
        created_at=payment.created_at,
        resolved_at=payment.resolved_at,
        authorised_until=payment.timeout_at if payment.status == "pending" else None,
        draws=draws(session, payment.id, lang),
        balance_tiyn=balance,
        balance=format_tenge(balance, lang) if balance is not None else None,
        lang=lang,
    )


def refund_out(
    session: Session, record: Refund, payment: Payment, merchant: Merchant, lang: str
) -> RefundOut:
    rows = session.execute(
        select(Transfer.tranche_id, Transfer.amount_tiyn)
        .where(
            Transfer.code == "refund",
            Transfer.idempotency_key.startswith(f"refund:{record.id}:", autoescape=True),
        )
        .order_by(Transfer.id)
    ).all()
    returned = set(
        session.scalars(
            select(Transfer.tranche_id).where(
                Transfer.code == "sweep",
                Transfer.idempotency_key.startswith(f"refund-return:{record.id}:", autoescape=True),
            )
        )
    )
    found = tranches_by_id(session, [r[0] for r in rows if r[0] is not None])
    return RefundOut(
        refund_id=record.id,
        payment_id=payment.id,
        amount_tiyn=record.amount_tiyn,
        amount=format_tenge(record.amount_tiyn, lang),
        reason=record.reason,
        created_at=record.created_at,
        payment_amount_tiyn=payment.amount_tiyn,
        payment_refunded_tiyn=payment.refunded_tiyn,
        merchant_bin=merchant.bin,
        merchant_name=merchant.name,
        parts=[
            RefundPartOut(
                tranche_id=tranche_id,
                purpose=found[tranche_id].purpose,
                purpose_name=purpose_name(found[tranche_id].purpose, lang),
                program_id=found[tranche_id].program_id,
                program_name=program_name(found[tranche_id].program_id, lang),
                amount_tiyn=amount,
                returned_to_program=tranche_id in returned,
            )
            for tranche_id, amount in rows
            if tranche_id is not None
        ],
        lang=lang,
    )
