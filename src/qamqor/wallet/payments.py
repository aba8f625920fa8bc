"""Payments at merchants: charge, authorise and capture or void, refund.

A payment is one database transaction: the payment row, one transfer per tranche drawn on
(wallet → merchant, naming the tranche) and the tranches' sums commit together or not at all,
so a process killed mid-payment leaves it wholly applied or absent. The merchant's idempotency
key makes a retried request return the first payment; the same key with another request is
refused, never charged twice.

Refusals carry a reason code the POS shows in the cashier's language (``wallet.refusal.*`` in
the catalogues): ``unknown_merchant``, ``merchant_suspended``, ``purpose_not_allowed`` (the
household holds money, but none this merchant may take), ``not_activated`` (a voucher that
needs this month's activation), ``expired``, ``insufficient_balance`` (earmarked money for
this merchant's purposes is less than asked), ``idempotency_conflict``.

On PostgreSQL the common path of :func:`pay` — a new key, an active merchant, enough usable
money — runs as one call of the database function ``wallet_pay`` (migration 0011), which takes
the same locks in the same order and writes the same rows as the Python path below. Whatever
else happens (a refusal, a repeated key) it writes nothing and hands over to the Python path,
which stays the reference: the stateful, concurrency and crash tests hold both to one model.
``USE_DATABASE_FUNCTION = False`` turns it off.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, make_transient_to_detached

from qamqor.kit.errors import QamqorError
from qamqor.wallet import ledger, tranches
from qamqor.wallet.categories import UNEARMARKED, allowed_purposes, categories
from qamqor.wallet.models import Account, Merchant, Payment, Refund, Tranche, Transfer

AUTHORISATION_TIMEOUT = dt.timedelta(minutes=30)
PAYMENTS = cast(Table, Payment.__table__)
USE_DATABASE_FUNCTION = True  # PostgreSQL: the common path in one round trip (migration 0011)
# Sent on the driver's own connection, prepared once per connection: the common path of every
# payment, where SQLAlchemy's statement and result layers cost more client CPU than the rest.
_WALLET_PAY = (
    "SELECT id, category, region_code FROM wallet_pay(%s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "CAST(%s AS jsonb))"
)


@cache
def _purposes_json() -> str:
    """categories.yaml as the database function reads it: category -> purposes, cash too."""
    return json.dumps(
        {code: sorted(c.purposes | {UNEARMARKED}) for code, c in categories().items()},
        sort_keys=True,
    )


def _pay_in_database(
    session: Session,
    *,
    merchant_bin: str,
    idempotency_key: str,
    digest: str,
    household_id: str,
    payer_iin: str | None,
    amount_tiyn: int,
    capture: bool,
    timeout_at: dt.datetime,
    now: dt.datetime,
) -> Payment | None:
    """The new payment made by ``wallet_pay``, or None when it left the case to Python."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(
            _WALLET_PAY,
            (
                *(merchant_bin, idempotency_key, digest, household_id, payer_iin, amount_tiyn),
                *(capture, timeout_at, now, _purposes_json()),
            ),
            prepare=True,
        )
        row = cursor.fetchone()
    if row is None:
        return None
    # the function changed sums behind the session's back: what it holds of them is stale
    for held in list(session.identity_map.values()):
        if isinstance(held, Tranche | Account):
            session.expire(held)
    payment_id, category, region_code = row
    payment = Payment(
        id=payment_id,
        **_payment_values(
            merchant_bin=merchant_bin,
            idempotency_key=idempotency_key,
            digest=digest,
            household_id=household_id,
            payer_iin=payer_iin,
            amount_tiyn=amount_tiyn,
            category=category,
            region_code=region_code,
            capture=capture,
            timeout_at=timeout_at,
            now=now,
        ),
    )
    make_transient_to_detached(payment)  # as if loaded: the function wrote its row
    session.add(payment)
    return payment


def _payment_values(
    *,
    merchant_bin: str,
    idempotency_key: str,
    digest: str,
    household_id: str,
    payer_iin: str | None,
    amount_tiyn: int,
    category: str,
    region_code: str,
    capture: bool,
    timeout_at: dt.datetime,
    now: dt.datetime,
) -> dict[str, Any]:
    """A new payment's row, as both paths write it (``wallet_pay`` writes the same)."""
    return {
        "merchant_bin": merchant_bin,
        "idempotency_key": idempotency_key,
        "request_hash": digest,
        "household_id": household_id,
        "payer_iin": payer_iin,
        "amount_tiyn": amount_tiyn,
        "refunded_tiyn": 0,
        "category": category,
        "region_code": region_code,
        "status": "posted" if capture else "pending",
        "timeout_at": None if capture else timeout_at,
        "created_at": now,
        "resolved_at": now if capture else None,
    }


class PaymentRefusedError(QamqorError):
    """A payment, capture, void or refund that cannot be done; ``reason`` says why."""

    code = "payment_refused"

    def __init__(self, reason: str, message: str, **detail: object) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail


def request_hash(household_id: str, payer_iin: str | None, amount_tiyn: int, capture: bool) -> str:
    body = json.dumps([household_id, payer_iin, amount_tiyn, capture], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def merchant_for(session: Session, merchant_bin: str) -> Merchant:
    merchant = session.get(Merchant, merchant_bin)
    if merchant is None:
        raise PaymentRefusedError("unknown_merchant", f"no merchant with BIN {merchant_bin}")
    return merchant


def _why_not(
    session: Session,
    household_id: str,
    purposes: frozenset[str],
    found: list[Tranche],
    amount_tiyn: int,
    now: dt.datetime,
) -> PaymentRefusedError:
    """The most useful reason a payment cannot be covered by ``found`` (allowed purposes)."""
    available = sum(t.remaining_tiyn for t in found if tranches.usable(t, now))
    if available > 0:
        return PaymentRefusedError(
            "insufficient_balance",
            f"{available} tiyn of earmarked money for this merchant, {amount_tiyn} asked",
            available_tiyn=available,
        )
    held = [t for t in found if t.remaining_tiyn > 0 and not t.closed]
    if any(t.activation_required and t.activated_at is None and t.expires_at > now for t in held):
        return PaymentRefusedError("not_activated", "the voucher must be activated this month")
    if any(t.expires_at <= now for t in held):
        return PaymentRefusedError("expired", "the earmarked money for this merchant has expired")
    elsewhere = session.scalar(
        select(Account.id)
        .where(
            Account.kind == "wallet",
            Account.household_id == household_id,
            Account.purpose.not_in(sorted(purposes)),
            Account.credits_posted > Account.debits_posted + Account.debits_pending,
        )
        .limit(1)
    )
    if elsewhere is not None:
        return PaymentRefusedError(
            "purpose_not_allowed", "the wallet's money is earmarked for other purposes"
        )
    return PaymentRefusedError(
        "insufficient_balance", "no earmarked money for this merchant", available_tiyn=0
    )


def pay(
    session: Session,
    *,
    merchant_bin: str,
    idempotency_key: str,
    household_id: str,
    amount_tiyn: int,
    now: dt.datetime,
    payer_iin: str | None = None,
    capture: bool = True,
    timeout: dt.timedelta = AUTHORISATION_TIMEOUT,
) -> Payment:
    """Charge a household's wallet at a merchant, or authorise (``capture=False``) a pending
    payment that :func:`capture` posts or :func:`void` releases, or that lapses after
    ``timeout``. Idempotent by (merchant, key)."""
    if not isinstance(amount_tiyn, int) or amount_tiyn <= 0:
        raise PaymentRefusedError("invalid_amount", "the amount must be a positive number of tiyn")
    ledger.write_lock(session)
    digest = request_hash(household_id, payer_iin, amount_tiyn, capture)
    if USE_DATABASE_FUNCTION and session.get_bind().dialect.name == "postgresql":
        made = _pay_in_database(
            session,
            merchant_bin=merchant_bin,
            idempotency_key=idempotency_key,
            digest=digest,
            household_id=household_id,
            payer_iin=payer_iin,
            amount_tiyn=amount_tiyn,
            capture=capture,
            timeout_at=now + timeout,
            now=now,
        )
        if made is not None:
            return made
    merchant = merchant_for(session, merchant_bin)
    purposes = allowed_purposes(merchant.category)
    accounts, found = tranches.lock_household(
        session, household_id, purposes, also=[merchant.account_id]
    )
    draws = tranches.plan(found, amount_tiyn, now) if merchant.status == "active" else None
    if draws is None:
        # a refusal, unless this repeats a payment made before: that one comes back as it was
        earlier = _earlier(session, merchant_bin, idempotency_key, digest)
        if earlier is not None:
            return earlier
        if merchant.status != "active":
            raise PaymentRefusedError(
                "merchant_suspended", f"merchant {merchant_bin} is {merchant.status}"
            )
        raise _why_not(session, household_id, purposes, found, amount_tiyn, now)
    values = _payment_values(
        merchant_bin=merchant_bin,
        idempotency_key=idempotency_key,
        digest=digest,
        household_id=household_id,
        payer_iin=payer_iin,
        amount_tiyn=amount_tiyn,
        category=merchant.category,
        region_code=merchant.region_code,
        capture=capture,
        timeout_at=now + timeout,
        now=now,
    )
    # The key is checked by the insert itself, under the wallet's lock: a new key inserts (no
    # lookup first: a round trip less on every payment), a key used before inserts nothing and
    # the earlier payment is returned. A retry racing its own first attempt waits for the lock
    # and then finds it here, where a lookup before the lock found nothing and then failed on
    # the unique key (tests/wallet/test_concurrency.py).
    dialect = session.connection().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    payment_id = session.scalar(
        insert(PAYMENTS)
        .values(values)
        .on_conflict_do_nothing(index_elements=["merchant_bin", "idempotency_key"])
        .returning(PAYMENTS.c.id)
    )
    if payment_id is None:
        earlier = _earlier(session, merchant_bin, idempotency_key, digest)
        assert earlier is not None, "the insert met the key's payment"
        return earlier
    payment = Payment(id=payment_id, **values)
    make_transient_to_detached(payment)  # as if loaded: its row is written already
    session.add(payment)
    # The payment's transfers and the tranches' sums in a fixed number of statements, however
    # many tranches it draws on: a payment is most of the ledger's traffic.
    ledger.transfer_new(
        session,
        [
            ledger.TransferRequest(
                key=f"pay:{payment.id}:{draw.tranche.id}",
                debit_account_id=draw.tranche.account_id,
                credit_account_id=merchant.account_id,
                amount_tiyn=draw.amount_tiyn,
                code="payment",
                tranche_id=draw.tranche.id,
                payment_id=payment.id,
            )
            for draw in draws
        ],
        locked=accounts,
        now=now,
        pending=not capture,
        timeout=None if capture else timeout,
    )
    tranches.add_to_sums(session, draws, spent=1 if capture else 0, pending=0 if capture else 1)
    return payment


def payment_by_key(session: Session, merchant_bin: str, idempotency_key: str) -> Payment | None:
    """The merchant's payment made with this idempotency key, if any."""
    return session.scalar(
        select(Payment).where(
            Payment.merchant_bin == merchant_bin, Payment.idempotency_key == idempotency_key
        )
    )


def _earlier(
    session: Session, merchant_bin: str, idempotency_key: str, digest: str
) -> Payment | None:
    """The merchant's payment made with this key, if any; the key with another request is
    refused."""
    earlier = payment_by_key(session, merchant_bin, idempotency_key)
    if earlier is not None and earlier.request_hash != digest:
        raise PaymentRefusedError(
            "idempotency_conflict",
            f"idempotency key {idempotency_key!r} was used for another payment",
        )
    return earlier


def _own_payment(session: Session, payment_id: int, merchant_bin: str | None) -> Payment:
    payment = session.scalar(select(Payment).where(Payment.id == payment_id).with_for_update())
    if payment is None or (merchant_bin is not None and payment.merchant_bin != merchant_bin):
        # another merchant's payment is "not found" too: its existence is not theirs to learn
        raise PaymentRefusedError("unknown_payment", f"no payment {payment_id}")
    return payment


def _pending_transfers(session: Session, payment: Payment) -> list[Transfer]:
    return list(
        session.scalars(
            select(Transfer)
            .where(Transfer.payment_id == payment.id, Transfer.flags == "pending")
            .order_by(Transfer.id)
        )
    )


def _resolve(
    session: Session,
    payment_id: int,
    merchant_bin: str | None,
    now: dt.datetime,
    *,
    post: bool,
    expired: bool = False,
) -> Payment:
    ledger.write_lock(session)
    payment = _own_payment(session, payment_id, merchant_bin)
    wanted = "posted" if post else "voided"
    if payment.status == wanted:
        return payment  # a repeated capture or void: nothing more to do
    if payment.status != "pending":
        raise PaymentRefusedError("not_pending", f"payment {payment_id} is {payment.status}")
    if post and payment.timeout_at is not None and now >= payment.timeout_at:
        raise PaymentRefusedError("authorisation_expired", f"payment {payment_id} timed out")
    pending = _pending_transfers(session, payment)
    ledger.lock_accounts(
        session, {t.debit_account_id for t in pending} | {t.credit_account_id for t in pending}
    )
    locked = {
        t.id: t
        for t in session.scalars(
            select(Tranche)
            .where(Tranche.id.in_(sorted({t.tranche_id for t in pending if t.tranche_id})))
            .order_by(Tranche.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    for transfer in pending:
        if post:
            ledger.post_pending(session, transfer.id, key=f"post:{transfer.id}", now=now)
        elif expired:
            ledger.expire_pending(session, transfer, now)
        else:
            ledger.void_pending(session, transfer.id, key=f"void:{transfer.id}", now=now)
        tranche = locked[transfer.tranche_id] if transfer.tranche_id else None
        if tranche is not None:
            tranche.pending_tiyn -= transfer.amount_tiyn
            if post:
                tranche.spent_tiyn += transfer.amount_tiyn
    payment.status = wanted
    payment.resolved_at = now
    session.flush()
    return payment


def capture(
    session: Session, payment_id: int, *, merchant_bin: str | None, now: dt.datetime
) -> Payment:
    """Post an authorised payment (the goods were handed over)."""
    return _resolve(session, payment_id, merchant_bin, now, post=True)


def void(
    session: Session, payment_id: int, *, merchant_bin: str | None, now: dt.datetime
) -> Payment:
    """Release an authorised payment's reservation back to the tranches."""
    return _resolve(session, payment_id, merchant_bin, now, post=False)


def expire_authorisations(session: Session, now: dt.datetime, limit: int = 1000) -> int:
    """Void the pending payments whose authorisation timed out; returns how many."""
    due = session.scalars(
        select(Payment.id)
        .where(Payment.status == "pending", Payment.timeout_at <= now)
        .order_by(Payment.id)
        .limit(limit)
    ).all()
    for payment_id in due:
        _resolve(session, payment_id, None, now, post=False, expired=True)
    return len(due)


def drawn_per_tranche(session: Session, payment_id: int) -> dict[int, int]:
    """Net tiyn a payment took from each tranche: posted payment transfers less refunds."""
    net: dict[int, int] = defaultdict(int)
    rows = session.execute(
        select(Transfer.tranche_id, Transfer.code, Transfer.flags, Transfer.amount_tiyn).where(
            Transfer.payment_id == payment_id
        )
    ).all()
    for tranche_id, code, flags, amount in rows:
        if tranche_id is None:
            continue
        if code == "payment" and flags in ("posted", "post_pending"):
            net[tranche_id] += amount
        elif code == "refund":
            net[tranche_id] -= amount
    return dict(net)


def refund(
    session: Session,
    payment_id: int,
    *,
    merchant_bin: str | None,
    idempotency_key: str,
    amount_tiyn: int,
    now: dt.datetime,
    reason: str | None = None,
) -> Refund:
    """Give back part or all of a posted payment, to the tranches it drew on (the one drawn
    last first). Money refunded to a tranche that has since closed goes on to its program's
    returns account: an expired earmark does not come back to life."""
    if not isinstance(amount_tiyn, int) or amount_tiyn <= 0:
        raise PaymentRefusedError("invalid_amount", "the amount must be a positive number of tiyn")
    ledger.write_lock(session)
    payment = _own_payment(session, payment_id, merchant_bin)
    earlier = session.scalar(
        select(Refund).where(
            Refund.payment_id == payment.id, Refund.idempotency_key == idempotency_key
        )
    )
    if earlier is not None:
        if earlier.amount_tiyn != amount_tiyn:
            raise PaymentRefusedError(
                "idempotency_conflict",
                f"refund key {idempotency_key!r} was used for another amount",
            )
        return earlier
    if payment.status != "posted":
        raise PaymentRefusedError("not_posted", f"payment {payment_id} is {payment.status}")
    refundable = payment.amount_tiyn - payment.refunded_tiyn
    if amount_tiyn > refundable:
        raise PaymentRefusedError(
            "refund_exceeds_payment",
            f"{refundable} tiyn of payment {payment_id} can still be refunded",
            refundable_tiyn=refundable,
        )
    merchant = merchant_for(session, payment.merchant_bin)
    net = drawn_per_tranche(session, payment.id)
    accounts = ledger.lock_accounts(
        session,
        [merchant.account_id]
        + [
            a
            for a in session.scalars(select(Tranche.account_id).where(Tranche.id.in_(sorted(net))))
        ],
    )
    if accounts[merchant.account_id].available_tiyn < amount_tiyn:
        raise PaymentRefusedError(
            "merchant_balance_insufficient",
            "the merchant's unsettled balance is less than the refund",
        )
    record = Refund(
        payment_id=payment.id,
        idempotency_key=idempotency_key,
        amount_tiyn=amount_tiyn,
        reason=reason,
        created_at=now,
    )
    session.add(record)
    session.flush()
    drawn = {
        t.id: t
        for t in session.scalars(
            select(Tranche)
            .where(Tranche.id.in_(sorted(net)))
            .order_by(Tranche.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    left = amount_tiyn
    for tranche_id in sorted(net, key=lambda i: (drawn[i].expires_at, i), reverse=True):
        if left == 0:
            break
        part = min(left, net[tranche_id])
        if part <= 0:
            continue
        tranche = drawn[tranche_id]
        ledger.transfer(
            session,
            ledger.TransferRequest(
                key=f"refund:{record.id}:{tranche_id}",
                debit_account_id=merchant.account_id,
                credit_account_id=tranche.account_id,
                amount_tiyn=part,
                code="refund",
                tranche_id=tranche_id,
                payment_id=payment.id,
            ),
            now=now,
            locked=accounts,
        )
        tranche.spent_tiyn -= part
        if tranche.closed or tranche.expires_at <= now:
            tranches.give_back(
                session, tranche, part, f"refund-return:{record.id}:{tranche_id}", now
            )
        left -= part
    assert left == 0, "a payment's draws cover its unrefunded amount"
    payment.refunded_tiyn += amount_tiyn
    session.flush()
    return record
