"""Random sequences of wallet operations keep every ledger invariant (hypothesis, stateful).

A ``RuleBasedStateMachine`` credits tranches (purposes, programs, expiries, activation), pays
at merchants of different categories (capture or authorise), captures, voids, refunds, moves
the clock, expires authorisations and sweeps due tranches, each in its own transaction, on
SQLite and PostgreSQL. A plain-Python model predicts every outcome: which tranches a payment
draws on and how much (earliest expiry first, allowed purposes only), whether it is refused
and why, what a refund gives back and to whom, what a sweep returns. After every step the
database must equal the model, and :func:`tests.wallet.ledger_checks.check_ledger` recomputes
every sum from the transfers.

Each example starts on empty wallet tables (sweeps and expiries act on the whole database), and
its households, programs and merchants carry the example's number besides.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qamqor.kit.db import Base, get_engine, session_scope
from qamqor.rules.spec import PURPOSES
from qamqor.wallet import ledger, merchants, payments, reconcile, sweep, tranches
from qamqor.wallet.categories import allowed_purposes
from qamqor.wallet.models import Payment, Transfer
from qamqor.wallet.models import Tranche as TrancheRow
from tests.wallet.builders import NOW, make_bin
from tests.wallet.ledger_checks import check_ledger

T = TypeVar("T")

# Merchants of one purpose each, one of two purposes sharing one with another: food,
# medicine, rehabilitation + medicine, social services (cash is allowed at every one).
CATEGORIES = ("5411", "5912", "8099", "8398")
HOUSEHOLDS = 2
PROGRAMS = ("food", "asp")
EXPIRIES = (
    dt.timedelta(minutes=20),
    dt.timedelta(hours=2),
    dt.timedelta(days=2),
    dt.timedelta(days=10),
    dt.timedelta(days=40),
)
STEPS = (
    dt.timedelta(minutes=1),
    dt.timedelta(minutes=10),
    dt.timedelta(minutes=31),  # past an authorisation's 30 minutes
    dt.timedelta(hours=6),
    dt.timedelta(days=3),
    dt.timedelta(days=15),
)
# Small payments mostly go through, large ones find money short: both are wanted.
AMOUNTS = st.one_of(st.integers(1, 4_000), st.integers(1, 20_000))
# Food and cash more often than the rest, so purposes meet at the same merchant.
CREDIT_PURPOSES = st.sampled_from(("food", "food", "food", "cash", "cash", "medicine", *PURPOSES))
# The grocer most often: several tranches meet there, so payments draw on more than one.
MERCHANT = st.sampled_from((0, 0, 0, 1, 2, 3))
CREDIT = st.tuples(
    st.integers(0, HOUSEHOLDS - 1),
    CREDIT_PURPOSES,
    st.integers(0, len(PROGRAMS) - 1),
    st.integers(500, 6_000),
    st.sampled_from(EXPIRIES),
    st.sampled_from((False, False, True)),  # activation required
)
_examples = itertools.count(1)


@dataclass
class ModelTranche:
    id: int
    household: str
    program: str
    purpose: str
    amount: int
    expires_at: dt.datetime
    activation_required: bool
    activated: bool = False
    spent: int = 0
    pending: int = 0
    returned: int = 0
    closed: bool = False
    close_reason: str | None = None

    @property
    def remaining(self) -> int:
        return self.amount - self.spent - self.pending - self.returned

    def usable(self, now: dt.datetime) -> bool:
        return (
            not self.closed
            and self.expires_at > now
            and (self.activated or not self.activation_required)
            and self.remaining > 0
        )


@dataclass
class ModelPayment:
    id: int
    key: str
    household: str
    merchant: int
    amount: int
    capture: bool
    status: str
    timeout_at: dt.datetime | None
    draws: list[tuple[int, int]]  # (tranche id, tiyn), in drawing order
    refunded: int = 0
    refunds: dict[int, int] = field(default_factory=dict)  # tranche id -> tiyn refunded


def pick(items: list[T], index: int) -> T:
    return items[index % len(items)]


def refused(action: Callable[[Session], object]) -> payments.PaymentRefusedError | None:
    """Run ``action`` in a transaction of its own; the refusal, or None when it went through."""
    try:
        with session_scope() as session:
            action(session)
    except payments.PaymentRefusedError as error:
        return error
    return None


def empty_wallet_tables() -> None:
    """Start an example on an empty wallet: sweeps and expiries act on the whole database."""
    engine = get_engine()
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name.startswith("wallet_")]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            return
        # the transfers refuse DELETE by trigger: set the wallet's triggers aside to empty them
        triggers = conn.execute(
            text(
                "SELECT name, sql FROM sqlite_master "
                "WHERE type = 'trigger' AND tbl_name LIKE 'wallet%'"
            )
        ).all()
        for name, _sql in triggers:
            conn.execute(text(f'DROP TRIGGER "{name}"'))
        for table in tables:
            conn.execute(text(f"DELETE FROM {table}"))
        for _name, sql in triggers:
            conn.execute(text(sql))


class WalletMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.example = next(_examples)
        self.now = NOW
        self.households = [f"S{self.example}H{i}" for i in range(HOUSEHOLDS)]
        self.programs = [f"s{self.example}_{p}" for p in PROGRAMS]
        self.tranches: dict[int, ModelTranche] = {}
        self.payments: list[ModelPayment] = []
        self.credits = 0
        self.merchants: list[tuple[str, str]] = []  # (BIN, category)
        self.suspended: set[str] = set()
        empty_wallet_tables()
        with session_scope() as session:
            for k, category in enumerate(CATEGORIES):
                shop = merchants.register(
                    session,
                    bin_=make_bin(self.example * 100 + k * 10),
                    name=f"Shop {k}",
                    category=category,
                    region_code="ALA",
                    now=NOW,
                )
                self.merchants.append((shop.bin, category))

    # --- the model's predictions -----------------------------------------------------------

    def _held(self, household: str, purposes: frozenset[str]) -> list[ModelTranche]:
        return sorted(
            (
                t
                for t in self.tranches.values()
                if t.household == household and t.purpose in purposes and not t.closed
            ),
            key=lambda t: (t.expires_at, t.id),
        )

    def _expected_refusal(
        self, household: str, bin_: str, category: str, amount: int
    ) -> tuple[str, list[tuple[int, int]]]:
        """("", draws) when the payment goes through, else (reason, [])."""
        if bin_ in self.suspended:
            return "merchant_suspended", []
        purposes = allowed_purposes(category)
        found = self._held(household, purposes)
        draws, left = [], amount
        for t in found:
            if left and t.usable(self.now):
                part = min(left, t.remaining)
                draws.append((t.id, part))
                left -= part
        if left == 0:
            return "", draws
        if any(t.usable(self.now) for t in found):
            return "insufficient_balance", []
        held = [t for t in found if t.remaining > 0]
        if any(t.activation_required and not t.activated and t.expires_at > self.now for t in held):
            return "not_activated", []
        if any(t.expires_at <= self.now for t in held):
            return "expired", []
        elsewhere = any(
            t.household == household and t.purpose not in purposes and t.remaining > 0
            for t in self.tranches.values()
        )
        return ("purpose_not_allowed" if elsewhere else "insufficient_balance"), []

    # --- rules ------------------------------------------------------------------------------

    @initialize(credits=st.lists(CREDIT, min_size=3, max_size=8))
    def first_credits(self, credits: list[tuple[int, str, int, int, dt.timedelta, bool]]) -> None:
        for spec in credits:
            self.credit(*spec)

    @rule(
        household=st.integers(0, HOUSEHOLDS - 1),
        purpose=CREDIT_PURPOSES,
        program=st.integers(0, len(PROGRAMS) - 1),
        amount=st.integers(500, 6_000),
        expiry=st.sampled_from(EXPIRIES),
        activation_required=st.sampled_from((False, False, True)),
    )
    def credit(
        self,
        household: int,
        purpose: str,
        program: int,
        amount: int,
        expiry: dt.timedelta,
        activation_required: bool,
    ) -> None:
        self.credits += 1
        key = f"s{self.example}:credit:{self.credits}"
        owner, program_id = self.households[household], self.programs[program]
        with session_scope() as session:
            tranche = tranches.open_tranche(
                session,
                household_id=owner,
                program_id=program_id,
                purpose=purpose,
                amount_tiyn=amount,
                period_start=self.now.date(),
                period_end=(self.now + expiry).date(),
                expires_at=self.now + expiry,
                now=self.now,
                activation_required=activation_required,
                key=key,
            )
            tranche_id = tranche.id
        self.tranches[tranche_id] = ModelTranche(
            tranche_id,
            owner,
            program_id,
            purpose,
            amount,
            self.now + expiry,
            activation_required,
        )
        # the same credit again is the same tranche, not a second one
        with session_scope() as session:
            again = tranches.open_tranche(
                session,
                household_id=owner,
                program_id=program_id,
                purpose=purpose,
                amount_tiyn=amount,
                period_start=self.now.date(),
                period_end=(self.now + expiry).date(),
                expires_at=self.now + expiry,
                now=self.now,
                activation_required=activation_required,
                key=key,
            )
            assert again.id == tranche_id

    @precondition(lambda self: any(t.activation_required for t in self.tranches.values()))
    @rule(index=st.integers(0, 10_000))
    def activate(self, index: int) -> None:
        tranche = pick([t for t in self.tranches.values() if t.activation_required], index)
        lapsed = tranche.closed or tranche.expires_at <= self.now
        try:
            with session_scope() as session:
                tranches.activate(session, tranche.id, tranche.household, self.now)
        except tranches.TrancheError:
            assert lapsed
            return
        assert not lapsed
        tranche.activated = True

    @rule(
        household=st.integers(0, HOUSEHOLDS - 1),
        merchant=MERCHANT,
        amount=AMOUNTS,
        capture=st.booleans(),
    )
    def pay(self, household: int, merchant: int, amount: int, capture: bool) -> None:
        self._pay(household, merchant, amount, capture)

    @rule(
        household=st.integers(0, HOUSEHOLDS - 1),
        merchant=MERCHANT,
        amount=st.integers(1, 1_500),
    )
    def pay_small(self, household: int, merchant: int, amount: int) -> None:
        """Small captured payments, the most common at a till (and a second chance for the
        pay rules when hypothesis's swarm testing switches rules off)."""
        self._pay(household, merchant, amount, capture=True)

    def _pay(self, household: int, merchant: int, amount: int, capture: bool) -> None:
        owner = self.households[household]
        bin_, category = self.merchants[merchant]
        expected, draws = self._expected_refusal(owner, bin_, category, amount)
        key = f"pay-{len(self.payments)}-{amount}"
        made: list[Payment] = []

        def charge(session: Session) -> None:
            made.append(
                payments.pay(
                    session,
                    merchant_bin=bin_,
                    idempotency_key=key,
                    household_id=owner,
                    amount_tiyn=amount,
                    now=self.now,
                    capture=capture,
                )
            )

        error = refused(charge)
        event(f"pay: {expected or ('posted' if capture else 'authorised')}, {len(draws)} draws")
        if expected:
            assert error is not None, f"paid, but the model expected {expected}"
            assert error.reason == expected, (error.reason, str(error))
            if expected == "insufficient_balance" and "available_tiyn" in error.detail:
                usable = sum(
                    t.remaining
                    for t in self._held(owner, allowed_purposes(category))
                    if t.usable(self.now)
                )
                assert error.detail["available_tiyn"] == usable
            return
        assert error is None, f"refused ({error.reason}: {error}), the model expected {draws}"
        payment = made[0]
        with session_scope() as session:
            actual = [
                (t.tranche_id, t.amount_tiyn)
                for t in session.scalars(
                    select(Transfer).where(Transfer.payment_id == payment.id).order_by(Transfer.id)
                )
            ]
        assert actual == draws, "not drawn earliest expiry first on allowed purposes"
        for tranche_id, part in draws:
            if capture:
                self.tranches[tranche_id].spent += part
            else:
                self.tranches[tranche_id].pending += part
        self.payments.append(
            ModelPayment(
                id=payment.id,
                key=key,
                household=owner,
                merchant=merchant,
                amount=amount,
                capture=capture,
                status="posted" if capture else "pending",
                timeout_at=None if capture else self.now + payments.AUTHORISATION_TIMEOUT,
                draws=draws,
            )
        )

    def repeat_payment(self, index: int, same: bool) -> None:
        """A retried request returns the first payment; the key with another amount is
        refused. Neither moves money."""
        payment = pick(self.payments, index)
        bin_ = self.merchants[payment.merchant][0]
        got: list[int] = []

        def again(session: Session) -> None:
            got.append(
                payments.pay(
                    session,
                    merchant_bin=bin_,
                    idempotency_key=payment.key,
                    household_id=payment.household,
                    amount_tiyn=payment.amount if same else payment.amount + 1,
                    now=self.now,
                    capture=payment.capture,
                ).id
            )

        error = refused(again)
        if same:
            assert error is None and got == [payment.id]
        else:
            assert error is not None and error.reason == "idempotency_conflict"

    def capture_or_void(self, index: int, post: bool) -> None:
        payment = pick(self.payments, index)
        bin_ = self.merchants[payment.merchant][0]
        wanted = "posted" if post else "voided"
        if payment.status == wanted:
            expected = ""  # a repeat: nothing more to do
        elif payment.status != "pending":
            expected = "not_pending"
        elif post and payment.timeout_at is not None and self.now >= payment.timeout_at:
            expected = "authorisation_expired"
        else:
            expected = ""
        action = payments.capture if post else payments.void
        error = refused(lambda s: action(s, payment.id, merchant_bin=bin_, now=self.now))
        if expected:
            assert error is not None and error.reason == expected, (expected, error)
            return
        assert error is None, error
        if payment.status == "pending":
            self._resolve(payment, post)

    def _resolve(self, payment: ModelPayment, post: bool) -> None:
        for tranche_id, part in payment.draws:
            tranche = self.tranches[tranche_id]
            tranche.pending -= part
            if post:
                tranche.spent += part
        payment.status = "posted" if post else "voided"

    def refund(self, index: int, share: int, full: bool) -> None:
        payment = pick(self.payments, index)
        bin_ = self.merchants[payment.merchant][0]
        left_to_refund = payment.amount - payment.refunded
        amount = left_to_refund if full else max(1, payment.amount * share // 100)
        key = f"refund-{payment.id}-{payment.refunded}-{amount}"
        if amount <= 0:
            expected = "invalid_amount"
        elif payment.status != "posted":
            expected = "not_posted"
        elif amount > left_to_refund:
            expected = "refund_exceeds_payment"
        else:
            expected = ""
        error = refused(
            lambda s: payments.refund(
                s,
                payment.id,
                merchant_bin=bin_,
                idempotency_key=key,
                amount_tiyn=amount,
                now=self.now,
            )
        )
        if expected:
            assert error is not None and error.reason == expected, (expected, error)
            return
        assert error is None, error
        # back to the tranches drawn on, the one drawn last first
        net = {tid: part - payment.refunds.get(tid, 0) for tid, part in payment.draws}
        order = sorted(net, key=lambda tid: (self.tranches[tid].expires_at, tid), reverse=True)
        left = amount
        for tranche_id in order:
            part = min(left, net[tranche_id])
            if part <= 0:
                continue
            tranche = self.tranches[tranche_id]
            tranche.spent -= part
            if tranche.closed or tranche.expires_at <= self.now:
                tranche.returned += part  # an expired earmark does not come back to life
            payment.refunds[tranche_id] = payment.refunds.get(tranche_id, 0) + part
            left -= part
        assert left == 0
        payment.refunded += amount
        # the same refund again is the first one
        assert (
            refused(
                lambda s: payments.refund(
                    s,
                    payment.id,
                    merchant_bin=bin_,
                    idempotency_key=key,
                    amount_tiyn=amount,
                    now=self.now,
                )
            )
            is None
        )

    @rule(merchant=st.integers(1, len(CATEGORIES) - 1))  # not the grocer: it takes most
    def suspend_or_reactivate(self, merchant: int) -> None:
        bin_ = self.merchants[merchant][0]
        status = "active" if bin_ in self.suspended else "suspended"
        with session_scope() as session:
            merchants.set_status(session, bin_, status, reason="review", now=self.now)
        if status == "active":
            self.suspended.discard(bin_)
        else:
            self.suspended.add(bin_)

    def advance_time(self, step: dt.timedelta) -> None:
        self.now += step

    def expire_authorisations(self) -> None:
        due = [
            p
            for p in self.payments
            if p.status == "pending" and p.timeout_at is not None and p.timeout_at <= self.now
        ]
        with session_scope() as session:
            count = payments.expire_authorisations(session, self.now)
        assert count == len(due)
        for payment in due:
            self._resolve(payment, post=False)

    # Few rules, each broad: hypothesis's swarm testing switches rules off per example, and
    # with a dozen narrow ones most examples made no payment at all.
    @precondition(lambda self: self.payments)
    @rule(
        index=st.integers(0, 10_000),
        action=st.sampled_from(("repeat", "conflict", "capture", "void", "refund")),
        share=st.integers(1, 100),
        full=st.booleans(),
    )
    def follow_up(self, index: int, action: str, share: int, full: bool) -> None:
        """What a till does after a payment: retry it, capture or void it, refund it."""
        event(f"follow-up: {action}")
        if action in ("repeat", "conflict"):
            self.repeat_payment(index, same=action == "repeat")
        elif action in ("capture", "void"):
            self.capture_or_void(index, post=action == "capture")
        else:
            self.refund(index, share, full)

    @rule(step=st.sampled_from(STEPS), expire=st.booleans(), sweep=st.booleans())
    def clock(self, step: dt.timedelta, expire: bool, sweep: bool) -> None:
        """Time passes, then maybe the night's jobs: authorisations lapse, tranches swept."""
        self.advance_time(step)
        if expire:
            self.expire_authorisations()
        if sweep:
            self.sweep()

    def sweep(self) -> None:
        """``qamqor wallet sweep``'s chunk (``sweep.sweep_chunk``): every due tranche closes and
        its remainder goes back to the program; one with an authorisation still pending waits.
        The invariant then compares every tranche's state with the model's."""
        with session_scope() as session:
            report = sweep.sweep_chunk(session, self.now)
        event(f"sweep: {report.closed} closed")
        due = [t for t in self.tranches.values() if not t.closed and t.expires_at <= self.now]
        closing = [t for t in due if t.pending == 0]
        lapsed = [t for t in closing if t.activation_required and not t.activated]
        assert (report.closed, report.lapsed, report.waiting, report.returned_tiyn) == (
            len(closing),
            len(lapsed),
            len(due) - len(closing),
            sum(t.remaining for t in closing),
        )
        for tranche in closing:
            tranche.returned += tranche.remaining
            tranche.closed = True
            tranche.close_reason = "lapsed" if tranche in lapsed else "expired"

    def teardown(self) -> None:
        """The wallet's own reconciliation (``qamqor wallet reconcile``) agrees at the end."""
        with session_scope() as session:
            assert reconcile.reconcile(session) == []

    # --- after every step ---------------------------------------------------------------------

    @invariant()
    def database_equals_model_and_reconciles(self) -> None:
        with session_scope() as session:
            totals = check_ledger(session)
            rows = {
                t.id: t
                for t in session.scalars(
                    select(TrancheRow).where(TrancheRow.household_id.in_(self.households))
                )
            }
            assert set(rows) == set(self.tranches)
            for tranche_id, model in self.tranches.items():
                row = rows[tranche_id]
                assert (
                    row.spent_tiyn,
                    row.pending_tiyn,
                    row.returned_tiyn,
                    row.closed,
                    row.close_reason,
                    row.activated_at is not None,
                ) == (
                    model.spent,
                    model.pending,
                    model.returned,
                    model.closed,
                    model.close_reason,
                    model.activated,
                ), f"tranche {tranche_id}"
            stored = {
                p.id: (p.status, p.refunded_tiyn, p.amount_tiyn)
                for p in session.scalars(
                    select(Payment).where(Payment.household_id.in_(self.households))
                )
            }
            assert stored == {p.id: (p.status, p.refunded, p.amount) for p in self.payments}
            for program in self.programs:
                mine = [t for t in self.tranches.values() if t.program == program]
                issued = sum(t.amount for t in mine)
                assert totals.issued.get(program, 0) == issued
                assert totals.spent.get(program, 0) == sum(t.spent for t in mine)
                assert totals.returned.get(program, 0) == sum(t.returned for t in mine)
                budget = ledger.account_by_code(session, ledger.budget_code(program))
                assert (budget.debits_posted if budget else 0) == issued
            for bin_, _category in self.merchants:
                account = ledger.account_by_code(session, ledger.merchant_code(bin_))
                assert account is not None
                index = [b for b, _ in self.merchants].index(bin_)
                mine_paid = [p for p in self.payments if p.merchant == index]
                assert account.balance_tiyn == sum(
                    p.amount - p.refunded for p in mine_paid if p.status == "posted"
                )
                assert account.credits_pending == sum(
                    p.amount for p in mine_paid if p.status == "pending"
                )


# 40 examples of up to 30 steps: about half a minute per database on the CI machine.
SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.slow
def test_random_operations_keep_every_ledger_invariant(engine: Engine) -> None:
    run_state_machine_as_test(WalletMachine, settings=SETTINGS)
