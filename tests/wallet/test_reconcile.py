"""Reconcile proves the books, and fails loudly on a corrupted row."""

from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.wallet import payments, reconcile, settlement, sweep
from qamqor.wallet.models import Account, Tranche, Transfer
from tests.wallet.builders import MONTH_END, NOW
from tests.wallet.test_reports import scenario


def _checks(problems: list[reconcile.Problem]) -> set[tuple[str, str]]:
    return {(p.check, p.subject) for p in problems}


def test_clean_books_reconcile_through_payments_refunds_voids_sweeps(engine: Engine) -> None:
    with session_scope() as session:
        made = scenario(session)
        assert reconcile.reconcile(session) == []
        payments.capture(session, made["held"], merchant_bin=made["shop"], now=NOW)
        assert reconcile.reconcile(session) == []
    with session_scope() as session:
        sweep.sweep(session, MONTH_END + dt.timedelta(minutes=1))
        assert reconcile.reconcile(session) == []
        # a refund after the tranche closed goes on to the returns account
        payments.refund(
            session,
            made["at_shop"],
            merchant_bin=made["shop"],
            idempotency_key="late",
            amount_tiyn=1_000,
            now=MONTH_END + dt.timedelta(hours=1),
        )
        assert reconcile.reconcile(session) == []


def test_clean_books_reconcile_after_settlement(engine: Engine) -> None:
    with session_scope() as session:
        made = scenario(session)
        settled = settlement.settle(session, now=NOW + dt.timedelta(days=1), day=NOW.date())
        assert sum(s.amount_tiyn for s in settled) == 55_000  # 25,000 + 20,000 + 10,000
        assert reconcile.reconcile(session) == []
        del made


def test_a_corrupted_account_sum_is_found(engine: Engine) -> None:
    with session_scope() as session:
        scenario(session)
        session.execute(
            text(
                "UPDATE wallet_account SET credits_posted = credits_posted + 7 "
                "WHERE code = 'wallet:H1:food'"
            )
        )
        problems = reconcile.reconcile(session)
    found = _checks(problems)
    assert ("account_sums", "account wallet:H1:food") in found
    assert ("wallet_holds_tranches", "account wallet:H1:food") in found
    assert ("ledger_balanced", "all accounts") in found
    (sums,) = [p for p in problems if p.check == "account_sums"]
    assert (sums.expected, sums.found) == (100_000 + 5_000, 100_000 + 5_000 + 7)
    assert "credits_posted differ" in str(sums)


def test_a_corrupted_tranche_is_found(engine: Engine) -> None:
    with session_scope() as session:
        made = scenario(session)
        session.execute(
            text("UPDATE wallet_tranche SET spent_tiyn = spent_tiyn + 100 WHERE id = :id"),
            {"id": made["h1_food"]},
        )
        problems = reconcile.reconcile(session)
    tranche = [p for p in problems if p.check == "tranche_sums"]
    assert [(p.subject, p.message, p.expected, p.found) for p in tranche] == [
        (f"tranche {made['h1_food']}", "spent_tiyn differs", 25_000, 25_100)
    ]
    # the wallet's balance and the merchants' no longer match what the tranche says it spent
    assert ("wallet_holds_tranches", "account wallet:H1:food") in _checks(problems)
    assert ("merchants_hold_spent", "merchants and settlement") in _checks(problems)


def test_budget_payment_and_negative_corruptions_are_found(engine: Engine) -> None:
    with session_scope() as session:
        made = scenario(session)
        session.execute(
            text(
                "UPDATE wallet_account SET debits_posted = debits_posted + 50 "
                "WHERE code = 'budget:food_voucher'"
            )
        )
        session.execute(
            text("UPDATE wallet_payment SET refunded_tiyn = 0 WHERE id = :id"),
            {"id": made["at_shop"]},
        )
        session.execute(
            text("UPDATE wallet_account SET may_go_negative = :yes WHERE code = 'wallet:H2:food'"),
            {"yes": True},
        )
        problems = reconcile.reconcile(session)
    found = _checks(problems)
    assert ("budget_credits", "program food_voucher") in found
    assert ("payment_sums", f"payment {made['at_shop']}") in found
    assert ("account_negative", "account wallet:H2:food") in found
    (budget,) = [p for p in problems if p.check == "budget_credits"]
    assert (budget.expected, budget.found) == (150_000, 150_050)


def test_a_transfer_that_resolves_nothing_is_found(engine: Engine) -> None:
    # the CHECK constraints keep amounts positive and accounts distinct; a post that names a
    # posted transfer (not a pending one) slips past them and must be caught here
    with session_scope() as session:
        scenario(session)
        first = session.get(Transfer, 1)
        assert first is not None
        session.execute(
            insert(Transfer).values(
                idempotency_key="forged",
                debit_account_id=first.debit_account_id,
                credit_account_id=first.credit_account_id,
                amount_tiyn=1,
                code="payment",
                flags="post_pending",
                pending_id=first.id,
                created_at=NOW,
            )
        )
        problems = reconcile.reconcile(session)
    assert ("transfer_shape", "transfer 1") not in _checks(problems)
    assert any(
        p.check == "transfer_shape" and p.message == "does not resolve pending transfer 1"
        for p in problems
    )


def test_reconcile_runs_in_sql_over_many_rows(engine: Engine) -> None:
    """5,000 tranches and 10,000 transfers, written in bulk: reconcile stays well under a
    few seconds (aggregates in the database, no Python loop over rows)."""
    n = 5_000
    with session_scope() as session:
        session.execute(
            insert(Account),
            [
                {
                    "id": 1,
                    "code": "budget:bulk",
                    "kind": "budget",
                    "program_id": "bulk",
                    "may_go_negative": True,
                    "debits_pending": 0,
                    "debits_posted": n * 100,
                    "credits_pending": 0,
                    "credits_posted": 0,
                    "created_at": NOW,
                },
                {
                    "id": 2,
                    "code": "merchant:bulk",
                    "kind": "merchant",
                    "may_go_negative": False,
                    "debits_pending": 0,
                    "debits_posted": 0,
                    "credits_pending": 0,
                    "credits_posted": n * 40,
                    "created_at": NOW,
                },
            ]
            + [
                {
                    "id": 10 + i,
                    "code": f"wallet:B{i}:food",
                    "kind": "wallet",
                    "household_id": f"B{i}",
                    "purpose": "food",
                    "may_go_negative": False,
                    "debits_pending": 0,
                    "debits_posted": 40,
                    "credits_pending": 0,
                    "credits_posted": 100,
                    "created_at": NOW,
                }
                for i in range(n)
            ],
        )
        session.execute(
            insert(Tranche),
            [
                {
                    "id": i + 1,
                    "account_id": 10 + i,
                    "household_id": f"B{i}",
                    "program_id": "bulk",
                    "purpose": "food",
                    "period_start": dt.date(2026, 12, 1),
                    "period_end": dt.date(2026, 12, 31),
                    "expires_at": MONTH_END,
                    "activation_required": False,
                    "amount_tiyn": 100,
                    "spent_tiyn": 40,
                    "pending_tiyn": 0,
                    "returned_tiyn": 0,
                    "closed": False,
                    "created_at": NOW,
                }
                for i in range(n)
            ],
        )
        session.execute(
            insert(Transfer),
            [
                {
                    "idempotency_key": f"{kind}:{i}",
                    "debit_account_id": debit,
                    "credit_account_id": credit_,
                    "amount_tiyn": amount,
                    "code": kind,
                    "flags": "posted",
                    "tranche_id": i + 1,
                    "created_at": NOW,
                }
                for i in range(n)
                for kind, debit, credit_, amount in (
                    ("credit", 1, 10 + i, 100),
                    ("payment", 10 + i, 2, 40),
                )
            ],
        )
    with session_scope() as session:
        started = time.monotonic()
        problems = reconcile.reconcile(session)
        seconds = time.monotonic() - started
    assert problems == []
    assert seconds < 5, f"reconcile took {seconds:.1f} s over {2 * n} transfers"
