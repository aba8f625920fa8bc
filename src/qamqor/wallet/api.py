"""The wallet's API: the merchant registry (admin), payments at the till (POS), the citizen's
own wallet.

**Merchants** sign in as the machine client bound to their БИН (``qamqor accounts
create-client shop-1 --bin BIN``) and act only on their own payments: another merchant's
payment answers 404, as one that does not exist.

**A payment** needs the one-time code the citizen shows (``POST /me/wallet/payment-codes``,
``wallet/codes.py``). The merchant's idempotency key is looked up *before* the code is
redeemed: a retried request (the till lost the answer) finds the first payment and returns its
receipt with 200, although the code is used by then; a new payment answers 201.

**Personal data.** The receipt shows the household's earmarked money left for this merchant's
purposes — the cashier needs it to tell the customer what the wallet still covers — but only
while the payment code is valid (five minutes): showing the code is the citizen's consent, and
a merchant cannot watch a household's balance afterwards by re-reading an old receipt. Every
response that shows it records an access event with the merchant as the principal, in the
payment's own transaction. The citizen's reads of their household's wallet are recorded as
their reads of their profile are: a household member sees them in their access log.

**Refusals** answer ``{"reason": code, "message": text}`` in the language of ``?lang=`` or
``Accept-Language``: 404 for a payment or merchant that is not there, 422 for a malformed
amount or code, 409 for everything the state of the wallet refuses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qamqor.kit.db import session_scope
from qamqor.kit.i18n import normalise_language, translate
from qamqor.privacy import households
from qamqor.privacy.errors import AccessDeniedError
from qamqor.proactive.notify import local_day
from qamqor.rules.explain import format_tenge
from qamqor.wallet import codes, ledger, merchants, payments, settlement, tranches
from qamqor.wallet.models import Merchant, Payment, Refund, Tranche
from qamqor.wallet.payments import PaymentRefusedError
from qamqor.wallet.receipts import merchant_out, receipt_out, record_read, refund_out
from qamqor.wallet.schemas import (
    MerchantIn,
    MerchantOut,
    MerchantsOut,
    MerchantStatusIn,
    PaymentCodeIn,
    PaymentCodeOut,
    PaymentIn,
    ReceiptOut,
    RefundIn,
    RefundOut,
    RefusalOut,
    SettlementDayOut,
    SettlementsOut,
    TrancheOut,
    TransactionsOut,
    WalletOut,
)
from qamqor.wallet.statement import tranche_out, transactions, wallet_view
from qamqor.web.auth import Caller, authorize

router = APIRouter(tags=["wallet"])

Lang = Annotated[str | None, Query(description="ru, kk or en; default from Accept-Language")]
AcceptLanguage = Annotated[str | None, Header()]
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": RefusalOut},
    409: {"model": RefusalOut},
    422: {"model": RefusalOut},
}
NOT_FOUND = frozenset({"unknown_payment", "unknown_merchant", "unknown_tranche", "no_household"})
MALFORMED = frozenset({"invalid_amount", "code_invalid", "merchant_invalid", "household_required"})
T = TypeVar("T")


def _language(lang: str | None, accept_language: str | None) -> str:
    return normalise_language(lang or accept_language)


def refusal_status(reason: str) -> int:
    if reason in NOT_FOUND:
        return 404
    if reason in MALFORMED:
        return 422
    return 409


def refusal(exc: PaymentRefusedError, lang: str) -> JSONResponse:
    def tenge(name: str) -> str:
        value = exc.detail.get(name)
        return format_tenge(value if isinstance(value, int) else 0, lang)

    values = {
        "available": tenge("available_tiyn"),
        "refundable": tenge("refundable_tiyn"),
        "detail": str(exc),
    }
    return JSONResponse(
        {
            "reason": exc.reason,
            "message": translate(f"wallet.refusal.{exc.reason}", lang, **values),
        },
        status_code=refusal_status(exc.reason),
    )


def _refuse(reason: str, message: str) -> PaymentRefusedError:
    return PaymentRefusedError(reason, message)


def _in_transaction(work: Callable[[Session], T], *, retry_on_conflict: bool = False) -> T:
    """Run ``work`` in one transaction. A unique-key race (two tills sending the same new
    idempotency key at once on PostgreSQL) is run again once: the repeat finds the winner."""
    try:
        with session_scope() as session:
            return work(session)
    except IntegrityError:
        if not retry_on_conflict:
            raise
    with session_scope() as session:
        return work(session)


def _answer(work: Callable[[Session], Any], language: str) -> Any:
    """``work``'s answer in one transaction, or its refusal as ``{reason, message}`` (an
    invalid merchant record is ``merchant_invalid``)."""
    try:
        return _in_transaction(work)
    except merchants.MerchantError as exc:
        return refusal(_refuse("merchant_invalid", str(exc)), language)
    except PaymentRefusedError as exc:
        return refusal(exc, language)


# --- merchants (admin) ------------------------------------------------------------------------


@router.post(
    "/wallet/merchants",
    response_model=MerchantOut,
    responses=REFUSALS,
    summary="Register a merchant by BIN, or update its name, category and region",
)
def register_merchant(
    body: MerchantIn,
    caller: Annotated[Caller, Depends(authorize("wallet.manage_merchants"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    language = _language(lang, accept_language)
    now = dt.datetime.now(dt.UTC)

    def work(session: Session) -> MerchantOut:
        merchant = merchants.register(
            session,
            bin_=body.bin,
            name=body.name,
            category=body.category,
            region_code=body.region_code,
            now=now,
        )
        return merchant_out(merchant, language)

    return _answer(work, language)


@router.get("/wallet/merchants", response_model=MerchantsOut, summary="The merchant registry")
def list_merchants(
    caller: Annotated[Caller, Depends(authorize("wallet.manage_merchants"))],
    status: Annotated[str | None, Query(pattern="^(active|suspended|closed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> MerchantsOut:
    language = _language(lang, accept_language)
    with session_scope() as session:
        found = merchants.list_merchants(session, status=status, limit=limit, offset=offset)
        return MerchantsOut(
            limit=limit, offset=offset, merchants=[merchant_out(m, language) for m in found]
        )


@router.post(
    "/wallet/merchants/{bin}/status",
    response_model=MerchantOut,
    responses=REFUSALS,
    summary="Suspend, reactivate or close a merchant (a reason is required but to activate)",
)
def set_merchant_status(
    bin: str,
    body: MerchantStatusIn,
    caller: Annotated[Caller, Depends(authorize("wallet.manage_merchants"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    language = _language(lang, accept_language)
    now = dt.datetime.now(dt.UTC)

    def work(session: Session) -> MerchantOut:
        if session.get(Merchant, bin) is None:
            raise _refuse("unknown_merchant", f"no merchant with BIN {bin}")
        merchant = merchants.set_status(session, bin, body.status, reason=body.reason, now=now)
        return merchant_out(merchant, language)

    return _answer(work, language)


# --- payments (POS) ---------------------------------------------------------------------------


def _merchant_of(session: Session, caller: Caller) -> Merchant:
    merchant = session.get(Merchant, caller.principal.bin) if caller.principal.bin else None
    if merchant is None:
        raise _refuse("unknown_merchant", f"no merchant with BIN {caller.principal.bin}")
    return merchant


def _charge(
    session: Session, caller: Caller, body: PaymentIn, lang: str, now: dt.datetime
) -> tuple[ReceiptOut, bool]:
    ledger.write_lock(session)
    merchant = _merchant_of(session, caller)
    earlier = payments.payment_by_key(session, merchant.bin, body.idempotency_key)
    code = None
    if earlier is None:
        if body.amount_tiyn <= 0:
            raise _refuse("invalid_amount", "the amount must be a positive number of tiyn")
        try:
            code = codes.redeem(session, body.payment_code, now)
        except PaymentRefusedError as exc:
            # On PostgreSQL a twin of this request (the till retried before the first
            # answered) may have held the code's lock and committed meanwhile: then it is a
            # repeat, which this statement, after the wait, can see.
            earlier = payments.payment_by_key(session, merchant.bin, body.idempotency_key)
            if exc.reason != "code_used" or earlier is None:
                raise
    if earlier is not None:
        # the code is used by now: the repeat must name the same code, amount and capture
        used = codes.find(session, body.payment_code)
        digest = payments.request_hash(
            earlier.household_id, earlier.payer_iin, body.amount_tiyn, body.capture
        )
        if used is None or used.payment_id != earlier.id or digest != earlier.request_hash:
            raise _refuse(
                "idempotency_conflict",
                f"idempotency key {body.idempotency_key!r} was used for another payment",
            )
        return receipt_out(session, caller.principal, earlier, merchant, lang, now), False
    assert code is not None
    payment = payments.pay(
        session,
        merchant_bin=merchant.bin,
        idempotency_key=body.idempotency_key,
        household_id=code.household_id,
        amount_tiyn=body.amount_tiyn,
        now=now,
        payer_iin=code.payer_iin,
        capture=body.capture,
    )
    code.payment_id = payment.id
    session.flush()
    return receipt_out(session, caller.principal, payment, merchant, lang, now), True


@router.post(
    "/wallet/payments",
    response_model=ReceiptOut,
    status_code=201,
    responses={
        200: {"model": ReceiptOut, "description": "A repeat: the first receipt"},
        **REFUSALS,
    },
    summary="Charge (or authorise) a household's wallet with the citizen's payment code",
)
def create_payment(
    body: PaymentIn,
    response: Response,
    caller: Annotated[Caller, Depends(authorize("wallet.charge"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    language = _language(lang, accept_language)
    now = dt.datetime.now(dt.UTC)
    try:
        made, created = _in_transaction(
            lambda s: _charge(s, caller, body, language, now), retry_on_conflict=True
        )
    except PaymentRefusedError as exc:
        return refusal(exc, language)
    response.status_code = 201 if created else 200
    return made


@router.get(
    "/wallet/payments/{payment_id}",
    response_model=ReceiptOut,
    responses=REFUSALS,
    summary="A payment's receipt (the merchant's own payments only)",
)
def get_payment(
    payment_id: int,
    caller: Annotated[Caller, Depends(authorize("wallet.charge"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    language = _language(lang, accept_language)
    now = dt.datetime.now(dt.UTC)

    def read(session: Session) -> ReceiptOut:
        merchant = _merchant_of(session, caller)
        payment = session.get(Payment, payment_id)
        if payment is None or payment.merchant_bin != merchant.bin:
            raise _refuse("unknown_payment", f"no payment {payment_id}")
        return receipt_out(session, caller.principal, payment, merchant, language, now)

    return _answer(read, language)


def _resolve(caller: Caller, payment_id: int, language: str, *, post: bool) -> Any:
    now = dt.datetime.now(dt.UTC)

    def work(session: Session) -> ReceiptOut:
        ledger.write_lock(session)
        merchant = _merchant_of(session, caller)
        resolve = payments.capture if post else payments.void
        payment = resolve(session, payment_id, merchant_bin=merchant.bin, now=now)
        return receipt_out(session, caller.principal, payment, merchant, language, now)

    return _answer(work, language)


@router.post(
    "/wallet/payments/{payment_id}/capture",
    response_model=ReceiptOut,
    responses=REFUSALS,
    summary="Capture an authorised payment (idempotent)",
)
def capture_payment(
    payment_id: int,
    caller: Annotated[Caller, Depends(authorize("wallet.charge"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    return _resolve(caller, payment_id, _language(lang, accept_language), post=True)


@router.post(
    "/wallet/payments/{payment_id}/void",
    response_model=ReceiptOut,
    responses=REFUSALS,
    summary="Void an authorised payment: the reservation goes back to the tranches (idempotent)",
)
def void_payment(
    payment_id: int,
    caller: Annotated[Caller, Depends(authorize("wallet.charge"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    return _resolve(caller, payment_id, _language(lang, accept_language), post=False)


@router.post(
    "/wallet/payments/{payment_id}/refunds",
    response_model=RefundOut,
    status_code=201,
    responses={200: {"model": RefundOut, "description": "A repeat: the first refund"}, **REFUSALS},
    summary="Refund part or all of a posted payment, to the tranches it drew on",
)
def create_refund(
    payment_id: int,
    body: RefundIn,
    response: Response,
    caller: Annotated[Caller, Depends(authorize("wallet.charge"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    language = _language(lang, accept_language)
    now = dt.datetime.now(dt.UTC)

    def work(session: Session) -> tuple[RefundOut, bool]:
        ledger.write_lock(session)
        merchant = _merchant_of(session, caller)
        repeat = session.scalar(
            select(Refund.id).where(
                Refund.payment_id == payment_id, Refund.idempotency_key == body.idempotency_key
            )
        )
        record = payments.refund(
            session,
            payment_id,
            merchant_bin=merchant.bin,
            idempotency_key=body.idempotency_key,
            amount_tiyn=body.amount_tiyn,
            now=now,
            reason=body.reason,
        )
        payment = session.get(Payment, payment_id)
        assert payment is not None
        return refund_out(session, record, payment, merchant, language), repeat is None

    try:
        made, created = _in_transaction(work, retry_on_conflict=True)
    except PaymentRefusedError as exc:
        return refusal(exc, language)
    response.status_code = 201 if created else 200
    return made


@router.get(
    "/wallet/settlements",
    response_model=SettlementsOut,
    responses=REFUSALS,
    summary="The merchant's settled amounts by day, newest first",
)
def list_settlements(
    caller: Annotated[Caller, Depends(authorize("wallet.charge"))],
    since: dt.date | None = None,
    until: dt.date | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    language = _language(lang, accept_language)

    def read(session: Session) -> SettlementsOut:
        merchant = _merchant_of(session, caller)
        days = settlement.settlements_of(
            session, merchant, since=since, until=until, limit=limit, offset=offset
        )
        return SettlementsOut(
            merchant_bin=merchant.bin,
            total_tiyn=sum(d.amount_tiyn for d in days),
            days=[
                SettlementDayOut(
                    day=d.day,
                    amount_tiyn=d.amount_tiyn,
                    amount=format_tenge(d.amount_tiyn, language),
                    transfer_id=d.transfer_id,
                    settled_at=d.settled_at,
                )
                for d in days
            ],
        )

    return _answer(read, language)


# --- the citizen's wallet ---------------------------------------------------------------------


def _household(session: Session, caller: Caller, wanted: str | None, now: dt.datetime) -> str:
    """The citizen's current household (the one asked for, when they have several)."""
    iin = caller.principal.iin
    if not iin:
        raise AccessDeniedError("not_member")
    current = households.households_of(session, iin, local_day(now))
    if wanted is not None:
        if wanted not in current:
            raise AccessDeniedError("not_member")
        return wanted
    if not current:
        raise _refuse("no_household", "the citizen is a member of no household")
    if len(current) > 1:
        raise _refuse("household_required", f"name one of the households: {', '.join(current)}")
    return current[0]


@router.post(
    "/me/wallet/payment-codes",
    response_model=PaymentCodeOut,
    status_code=201,
    responses=REFUSALS,
    summary="A one-time payment code for my household's wallet (valid five minutes)",
)
def create_payment_code(
    caller: Annotated[Caller, Depends(authorize("wallet.manage"))],
    body: PaymentCodeIn | None = None,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    language = _language(lang, accept_language)
    now = dt.datetime.now(dt.UTC)

    def work(session: Session) -> PaymentCodeOut:
        household_id = _household(session, caller, body.household_id if body else None, now)
        assert caller.principal.iin is not None
        code, row = codes.create_code(session, caller.principal.iin, household_id, now)
        return PaymentCodeOut(
            code=code,
            digits=codes.grouped(code),
            qr_payload=codes.QR_PREFIX + code,
            household_id=household_id,
            expires_at=row.expires_at,
        )

    return _answer(work, language)


@router.get(
    "/me/wallet",
    response_model=WalletOut,
    responses=REFUSALS,
    summary="My household's wallet: balances by purpose and the open tranches",
)
def get_my_wallet(
    caller: Annotated[Caller, Depends(authorize("wallet.read"))],
    household_id: str | None = None,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    language = _language(lang, accept_language)
    now = dt.datetime.now(dt.UTC)

    def read(session: Session) -> WalletOut:
        household = _household(session, caller, household_id, now)
        record_read(session, caller.principal, "wallet.read", household, ["payments"])
        return wallet_view(session, household, language, now)

    return _answer(read, language)


@router.get(
    "/me/wallet/transactions",
    response_model=TransactionsOut,
    responses=REFUSALS,
    summary="My household's wallet transactions, newest first: credits, payments, refunds, returns",
)
def list_my_transactions(
    caller: Annotated[Caller, Depends(authorize("wallet.read"))],
    household_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    language = _language(lang, accept_language)
    now = dt.datetime.now(dt.UTC)

    def read(session: Session) -> TransactionsOut:
        household = _household(session, caller, household_id, now)
        record_read(session, caller.principal, "wallet.read", household, ["payments"])
        items, total = transactions(session, household, language, limit=limit, offset=offset)
        return TransactionsOut(
            household_id=household,
            lang=language,
            total=total,
            limit=limit,
            offset=offset,
            items=items,
        )

    return _answer(read, language)


@router.post(
    "/me/wallet/tranches/{tranche_id}/activate",
    response_model=TrancheOut,
    responses=REFUSALS,
    summary="Activate this month's voucher so it can be spent (idempotent)",
)
def activate_tranche(
    tranche_id: int,
    caller: Annotated[Caller, Depends(authorize("wallet.manage"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    language = _language(lang, accept_language)
    now = dt.datetime.now(dt.UTC)

    def work(session: Session) -> TrancheOut:
        ledger.write_lock(session)
        iin = caller.principal.iin or ""
        found = session.get(Tranche, tranche_id)
        if found is None or found.household_id not in households.households_of(
            session, iin, local_day(now)
        ):
            # another household's tranche is "not found" too
            raise _refuse("unknown_tranche", f"no tranche {tranche_id} in your wallet")
        if not found.activation_required:
            raise _refuse("activation_not_needed", "this credit needs no activation")
        try:
            tranche = tranches.activate(session, tranche_id, found.household_id, now)
        except tranches.TrancheError as exc:
            raise _refuse("voucher_lapsed", str(exc)) from exc
        return tranche_out(tranche, language, now)

    return _answer(work, language)
