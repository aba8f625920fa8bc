"""The ledger core: balances, purposes, draw order, authorisations, refunds, append-only."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from qamqor.kit.db import session_scope
from qamqor.wallet import ledger, payments
from qamqor.wallet.models import Account, Tranche, Transfer
from tests.wallet.builders import MONTH_END, NOW, credit, make_merchant


def _balance(session, code: str) -> int:  # type: ignore[no-untyped-def]
    account = ledger.account_by_code(session, code)
    assert account is not None
    return account.balance_tiyn


def test_credit_and_payment_move_money_budget_to_household_to_merchant(engine: Engine) -> None:
    with session_scope() as session:
        shop = make_merchant(session)
        credit(session, amount=50_000)
        payment = payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="k1",
            household_id="H1",
            amount_tiyn=20_000,
            now=NOW,
        )
        assert payment.status == "posted"
    with session_scope() as session:
        assert _balance(session, "budget:food_voucher") == -50_000
        assert _balance(session, "wallet:H1:food") == 30_000
        assert _balance(session, f"merchant:{shop.bin}") == 20_000
        (tranche,) = session.scalars(select(Tranche)).all()
        assert (tranche.spent_tiyn, tranche.remaining_tiyn) == (20_000, 30_000)


def test_purpose_not_allowed_and_insufficient_balance(engine: Engine) -> None:
    with session_scope() as session:
        pharmacy = make_merchant(session, 2, category="5912")
        shop = make_merchant(session, 3)
        credit(session, amount=10_000)
    with session_scope() as session, pytest.raises(payments.PaymentRefusedError) as refused:
        payments.pay(
            session,
            merchant_bin=pharmacy.bin,
            idempotency_key="a",
            household_id="H1",
            amount_tiyn=100,
            now=NOW,
        )
    assert refused.value.reason == "purpose_not_allowed"
    with session_scope() as session, pytest.raises(payments.PaymentRefusedError) as refused:
        payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="b",
            household_id="H1",
            amount_tiyn=10_001,
            now=NOW,
        )
    assert refused.value.reason == "insufficient_balance"
    assert refused.value.detail["available_tiyn"] == 10_000


def test_earliest_expiry_drawn_first_and_refund_returns_last_drawn(engine: Engine) -> None:
    later = NOW + dt.timedelta(days=60)
    sooner = NOW + dt.timedelta(days=5)
    with session_scope() as session:
        shop = make_merchant(session)
        a = credit(session, amount=10_000, expires_at=later, key="late")
        b = credit(session, amount=10_000, expires_at=sooner, key="soon")
        payment = payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="p",
            household_id="H1",
            amount_tiyn=15_000,
            now=NOW,
        )
        assert (b.spent_tiyn, a.spent_tiyn) == (10_000, 5_000)
        payments.refund(
            session,
            payment.id,
            merchant_bin=shop.bin,
            idempotency_key="r",
            amount_tiyn=7_000,
            now=NOW,
        )
        assert (b.spent_tiyn, a.spent_tiyn) == (8_000, 0)
        again = payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="p",
            household_id="H1",
            amount_tiyn=15_000,
            now=NOW,
        )
        assert again.id == payment.id
        with pytest.raises(payments.PaymentRefusedError) as refused:
            payments.pay(
                session,
                merchant_bin=shop.bin,
                idempotency_key="p",
                household_id="H1",
                amount_tiyn=15_001,
                now=NOW,
            )
        assert refused.value.reason == "idempotency_conflict"


def test_authorise_then_capture_or_void(engine: Engine) -> None:
    with session_scope() as session:
        shop = make_merchant(session)
        credit(session, amount=10_000)
        held = payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="h",
            household_id="H1",
            amount_tiyn=6_000,
            now=NOW,
            capture=False,
        )
        wallet = ledger.account_by_code(session, "wallet:H1:food")
        assert wallet is not None
        session.refresh(wallet)
        assert (wallet.balance_tiyn, wallet.available_tiyn) == (10_000, 4_000)
        with pytest.raises(payments.PaymentRefusedError):
            payments.pay(
                session,
                merchant_bin=shop.bin,
                idempotency_key="x",
                household_id="H1",
                amount_tiyn=5_000,
                now=NOW,
            )
        payments.void(session, held.id, merchant_bin=shop.bin, now=NOW)
        session.refresh(wallet)
        assert wallet.available_tiyn == 10_000
        held2 = payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="h2",
            household_id="H1",
            amount_tiyn=6_000,
            now=NOW,
            capture=False,
        )
        payments.capture(session, held2.id, merchant_bin=shop.bin, now=NOW)
        session.refresh(wallet)
        assert (wallet.balance_tiyn, wallet.available_tiyn) == (4_000, 4_000)
        held3 = payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="h3",
            household_id="H1",
            amount_tiyn=1_000,
            now=NOW,
            capture=False,
        )
        later = NOW + payments.AUTHORISATION_TIMEOUT
        assert payments.expire_authorisations(session, later) == 1
        with pytest.raises(payments.PaymentRefusedError) as refused:
            payments.capture(session, held3.id, merchant_bin=shop.bin, now=later)
        assert refused.value.reason == "not_pending"


def test_transfers_are_append_only_and_balance_constraint_holds(engine: Engine) -> None:
    with session_scope() as session:
        credit(session, amount=1_000)
    with pytest.raises(DBAPIError), session_scope() as session:
        session.execute(text("UPDATE wallet_transfer SET amount_tiyn = 1"))
    with pytest.raises(DBAPIError), session_scope() as session:
        session.execute(text("DELETE FROM wallet_transfer"))
    with pytest.raises(IntegrityError), session_scope() as session:
        session.execute(
            text("UPDATE wallet_account SET debits_posted = 2000 WHERE kind = 'wallet'")
        )
    with session_scope() as session:
        assert session.scalar(select(Transfer.amount_tiyn)) == 1_000
        assert session.scalar(select(Account.debits_posted).where(Account.kind == "wallet")) == 0


def _scenario(session, household: str, shop_serial: int) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    """Payments of every kind the database function takes on; what they wrote, by label."""
    shop = make_merchant(session, shop_serial)
    pharmacy = make_merchant(session, shop_serial + 1, category="5912")
    soon, late = NOW + dt.timedelta(days=3), NOW + dt.timedelta(days=40)
    credit(session, household, 7_000, expires_at=late, key=f"{household}:late")
    credit(session, household, 5_000, expires_at=soon, key=f"{household}:soon")
    credit(session, household, 4_000, purpose="cash", program="asp", key=f"{household}:cash")
    credit(session, household, 3_000, purpose="medicine", program="med", key=f"{household}:med")
    outcomes: list[tuple[object, ...]] = []
    for key, merchant, amount, capture in [
        ("p1", shop, 6_000, True),  # food soon (5,000), then cash (month end: 1,000)
        ("p2", shop, 9_000, False),  # cash (3,000), then food late (6,000): authorised
        ("p3", pharmacy, 2_500, True),  # medicine and cash expire together: the older tranche
        ("p1", shop, 6_000, True),  # a repeat: the first payment back
        ("p4", shop, 99_000, True),  # refused
    ]:
        try:
            made = payments.pay(
                session,
                merchant_bin=merchant.bin,
                idempotency_key=key,
                household_id=household,
                amount_tiyn=amount,
                now=NOW,
                capture=capture,
            )
        except payments.PaymentRefusedError as refused:
            outcomes.append((key, "refused", refused.reason))
            continue
        draws = session.execute(
            select(Tranche.purpose, Tranche.expires_at, Transfer.amount_tiyn, Transfer.flags)
            .join(Tranche, Tranche.id == Transfer.tranche_id)
            .where(Transfer.payment_id == made.id)
            .order_by(Transfer.id)
        ).all()
        outcomes.append((key, made.status, made.amount_tiyn, made.category, tuple(draws)))
    session.flush()
    sums = session.execute(
        select(Account.purpose, Account.debits_pending, Account.debits_posted)
        .where(Account.household_id == household)
        .order_by(Account.purpose)
    ).all()
    left = session.execute(
        select(Tranche.purpose, Tranche.spent_tiyn, Tranche.pending_tiyn)
        .where(Tranche.household_id == household)
        .order_by(Tranche.expires_at, Tranche.amount_tiyn)
    ).all()
    outcomes.append(("sums", tuple(sums), tuple(left)))
    return outcomes


def test_the_database_function_pays_as_the_python_path_does(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL ``wallet_pay`` takes the common path; with it off, Python does: the same
    draws, statuses, refusals and sums. (On SQLite both runs take the Python path.)"""
    with session_scope() as session:
        fast = _scenario(session, "HF", 10)
    monkeypatch.setattr(payments, "USE_DATABASE_FUNCTION", False)
    with session_scope() as session:
        reference = _scenario(session, "HP", 20)
    assert fast == reference
    assert fast[0][4] == (
        ("food", NOW + dt.timedelta(days=3), 5_000, "posted"),
        ("cash", MONTH_END, 1_000, "posted"),  # cash expires at month end, before late food
    )
    assert fast[4] == ("p4", "refused", "insufficient_balance")
