"""Many payments at once against one wallet never overspend (PostgreSQL; SQLite too).

Each worker is a thread with its own connection and its own transactions, released together by
a barrier, so payments really race for the one wallet's row locks (PostgreSQL) or for the
write lock (SQLite: ``BEGIN IMMEDIATE`` and ``busy_timeout`` queue them). Whatever the
interleaving: the money posted is exactly what the wallet held or what was asked, whichever is
less; every payment is either posted or refused for ``insufficient_balance``; nothing else
goes wrong (no deadlock, no unique-key error); and the books reconcile.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from qamqor.kit.db import make_engine, session_scope
from qamqor.wallet import ledger, payments, reconcile
from qamqor.wallet.models import Payment, Tranche
from tests.wallet.builders import NOW, credit, make_merchant
from tests.wallet.ledger_checks import check_ledger

HOUSEHOLD = "C1"
# (tiyn, days to expiry): sizes 500-tiyn payments do not divide, so payments straddle
# tranches, and expiries out of credit order, so drawing order is not insertion order.
TRANCHES = ((12_345, 30), (20_000, 5), (17_655, 20), (25_000, 10), (25_000, 40))
BALANCE = sum(amount for amount, _ in TRANCHES)  # 100,000 tiyn
BY_EXPIRY = [amount for amount, _ in sorted(TRANCHES, key=lambda t: t[1])]
WORKERS, EACH = 16, 20


def worker_url(engine: Engine) -> str:
    """The test database's URL for another connection or process (PostgreSQL: its schema)."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        url += f"?options=-csearch_path%3D{schema}"
    return url


@pytest.fixture
def pool(engine: Engine) -> Iterator[Engine]:
    """An engine with a connection for every worker, on the test database."""
    racing = make_engine(worker_url(engine), pool_size=WORKERS + 2, max_overflow=0)
    yield racing
    racing.dispose()


@dataclass
class Outcomes:
    posted: list[int] = field(default_factory=list)  # payment ids
    refused: list[tuple[str, int, object]] = field(default_factory=list)  # reason, asked, available
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def race(jobs: list[Callable[[], None]], outcomes: Outcomes) -> None:
    """Run every job in a thread of its own, all released at once; collect unexpected errors."""
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[], None]) -> None:
        try:
            barrier.wait(timeout=60)
            job()
        except BaseException as error:  # every surprise fails the test
            with outcomes.lock:
                outcomes.errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a worker hangs"
    assert outcomes.errors == [], outcomes.errors[:3]


def payer(
    pool: Engine, shop: str, worker: int, amounts: list[int], outcomes: Outcomes
) -> Callable[[], None]:
    def pay_all() -> None:
        for i, amount in enumerate(amounts):
            try:
                with session_scope(pool) as session:
                    payment = payments.pay(
                        session,
                        merchant_bin=shop,
                        idempotency_key=f"w{worker}-{i}",
                        household_id=HOUSEHOLD,
                        amount_tiyn=amount,
                        now=NOW,
                    )
                    paid = payment.id
            except payments.PaymentRefusedError as refusal:
                with outcomes.lock:
                    outcomes.refused.append(
                        (refusal.reason, amount, refusal.detail.get("available_tiyn"))
                    )
                continue
            with outcomes.lock:
                outcomes.posted.append(paid)

    return pay_all


def watch_balance(pool: Engine, stop: threading.Event, seen: list[int]) -> Callable[[], None]:
    """Read the wallet's available balance over and over while payments race."""

    def watch() -> None:
        while not stop.is_set():
            with pool.connect() as conn:
                seen.append(
                    conn.execute(
                        text(
                            "SELECT credits_posted - debits_posted - debits_pending "
                            "FROM wallet_account WHERE code = :code"
                        ),
                        {"code": ledger.wallet_code(HOUSEHOLD, "food")},
                    ).scalar_one()
                )

    return watch


def fund(engine: Engine) -> str:
    with session_scope() as session:
        shop = make_merchant(session).bin
        for n, (amount, days) in enumerate(TRANCHES):
            credit(
                session,
                household=HOUSEHOLD,
                amount=amount,
                expires_at=NOW + dt.timedelta(days=days),
                key=f"fund-{n}",
            )
    return shop


def books_balance() -> None:
    with session_scope() as session:
        check_ledger(session)
        assert reconcile.reconcile(session) == []


def only_postgresql(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: the thread test below races it")


@pytest.mark.slow
def test_parallel_payments_never_overspend_one_wallet(engine: Engine, pool: Engine) -> None:
    only_postgresql(engine)
    shop = fund(engine)
    balance = BALANCE
    outcomes = Outcomes()
    stop, seen = threading.Event(), list[int]()
    watcher = threading.Thread(target=watch_balance(pool, stop, seen))
    watcher.start()
    # 16 workers x 20 payments of 500 tiyn: 160,000 asked of 100,000
    race([payer(pool, shop, w, [500] * EACH, outcomes) for w in range(WORKERS)], outcomes)
    stop.set()
    watcher.join()
    demanded = WORKERS * EACH * 500
    assert len(outcomes.posted) + len(outcomes.refused) == WORKERS * EACH
    assert {reason for reason, _, _ in outcomes.refused} == {"insufficient_balance"}
    assert all(available < asked for _, asked, available in outcomes.refused)  # type: ignore[operator]
    with session_scope() as session:
        posted = session.scalar(select(func.sum(Payment.amount_tiyn))) or 0
        assert posted == min(balance, demanded) == 500 * len(outcomes.posted)
        wallet = ledger.account_by_code(session, ledger.wallet_code(HOUSEHOLD, "food"))
        assert wallet is not None and wallet.balance_tiyn == 0
        spent = session.scalars(select(Tranche.spent_tiyn).order_by(Tranche.expires_at))
        assert list(spent) == BY_EXPIRY
    assert seen and min(seen) >= 0, "the wallet was seen below zero"
    books_balance()


@pytest.mark.slow
def test_parallel_payments_of_mixed_sizes_draw_earliest_expiry_first(
    engine: Engine, pool: Engine
) -> None:
    """Amounts that do not fill the wallet exactly: what is refused did not fit at that
    moment, and what was posted plus what is left is exactly what was credited."""
    only_postgresql(engine)
    shop = fund(engine)
    rng = random.Random(11)
    plans = [[rng.randint(1, 1_200) for _ in range(EACH)] for _ in range(WORKERS)]
    outcomes = Outcomes()
    race([payer(pool, shop, w, plans[w], outcomes) for w in range(WORKERS)], outcomes)
    assert {reason for reason, _, _ in outcomes.refused} <= {"insufficient_balance"}
    assert all(available < asked for _, asked, available in outcomes.refused)  # type: ignore[operator]
    with session_scope() as session:
        posted = session.scalar(select(func.sum(Payment.amount_tiyn))) or 0
        wallet = ledger.account_by_code(session, ledger.wallet_code(HOUSEHOLD, "food"))
        assert wallet is not None
        assert posted + wallet.balance_tiyn == BALANCE
        assert posted <= BALANCE and len(outcomes.posted) > 0
        # earliest expiry first: full tranches, then at most one partly spent, then untouched
        spent = [
            t.spent_tiyn for t in session.scalars(select(Tranche).order_by(Tranche.expires_at))
        ]
        full = 0
        while full < len(spent) and spent[full] == BY_EXPIRY[full]:
            full += 1
        assert all(s == 0 for s in spent[full + 1 :]), spent
    books_balance()


@pytest.mark.slow
def test_refunds_race_payments_and_every_tiyn_is_accounted(engine: Engine, pool: Engine) -> None:
    only_postgresql(engine)
    shop = fund(engine)
    with session_scope() as session:
        first = [
            payments.pay(
                session,
                merchant_bin=shop,
                idempotency_key=f"first-{i}",
                household_id=HOUSEHOLD,
                amount_tiyn=2_000,
                now=NOW,
            ).id
            for i in range(40)
        ]  # 80,000 of 100,000 spent
    outcomes = Outcomes()
    refunded: list[int] = []

    def refunder(ids: list[int]) -> Callable[[], None]:
        def refund_all() -> None:
            for payment_id in ids:
                for part in (500, 1_500):  # a partial refund, then the rest
                    with session_scope(pool) as session:
                        payments.refund(
                            session,
                            payment_id,
                            merchant_bin=shop,
                            idempotency_key=f"r{part}",
                            amount_tiyn=part,
                            now=NOW,
                        )
                    with outcomes.lock:
                        refunded.append(part)

        return refund_all

    jobs = [refunder(first[k::8]) for k in range(8)]
    jobs += [payer(pool, shop, w, [700] * EACH, outcomes) for w in range(8)]
    race(jobs, outcomes)
    assert sum(refunded) == 80_000
    assert {reason for reason, _, _ in outcomes.refused} <= {"insufficient_balance"}
    with session_scope() as session:
        later = (
            session.scalar(select(func.sum(Payment.amount_tiyn)).where(Payment.id.not_in(first)))
            or 0
        )
        assert later == 700 * len(outcomes.posted)
        wallet = ledger.account_by_code(session, ledger.wallet_code(HOUSEHOLD, "food"))
        merchant = ledger.account_by_code(session, ledger.merchant_code(shop))
        assert wallet is not None and merchant is not None
        assert wallet.balance_tiyn == BALANCE - later
        assert merchant.balance_tiyn == later
        assert all(
            p.refunded_tiyn == p.amount_tiyn
            for p in session.scalars(select(Payment).where(Payment.id.in_(first)))
        )
    books_balance()


@pytest.mark.slow
def test_the_same_key_at_once_is_one_payment(engine: Engine, pool: Engine) -> None:
    """Sixteen retries of one request racing each other: one payment, one debit, and every
    retry gets that payment back."""
    only_postgresql(engine)
    shop = fund(engine)
    got: list[int] = []
    outcomes = Outcomes()

    def retry() -> None:
        with session_scope(pool) as session:
            payment = payments.pay(
                session,
                merchant_bin=shop,
                idempotency_key="once",
                household_id=HOUSEHOLD,
                amount_tiyn=30_000,
                now=NOW,
            )
            paid = payment.id
        with outcomes.lock:
            got.append(paid)

    race([retry for _ in range(WORKERS)], outcomes)
    assert len(got) == WORKERS and len(set(got)) == 1
    with session_scope() as session:
        assert session.scalar(select(func.count(Payment.id))) == 1
        wallet = ledger.account_by_code(session, ledger.wallet_code(HOUSEHOLD, "food"))
        assert wallet is not None and wallet.balance_tiyn == BALANCE - 30_000
    books_balance()


def test_threads_on_one_wallet_queue_on_sqlite_too(engine: Engine, pool: Engine) -> None:
    """SQLite has one writer: ``BEGIN IMMEDIATE`` and ``busy_timeout`` make racing payments
    wait their turn, and the result is the same as on PostgreSQL."""
    shop = fund(engine)
    outcomes = Outcomes()
    race([payer(pool, shop, w, [2_500] * 8, outcomes) for w in range(6)], outcomes)
    assert len(outcomes.posted) == 40 and len(outcomes.refused) == 8  # 100,000 / 2,500
    assert {reason for reason, _, _ in outcomes.refused} == {"insufficient_balance"}
    with session_scope() as session:
        key = session.scalars(select(Payment.idempotency_key).order_by(Payment.id)).first()
    got: list[int] = []

    def retry() -> None:
        with session_scope(pool) as session:
            payment = payments.pay(
                session,
                merchant_bin=shop,
                idempotency_key=str(key),
                household_id=HOUSEHOLD,
                amount_tiyn=2_500,
                now=NOW,
            )
            paid = payment.id
        got.append(paid)

    race([retry for _ in range(6)], outcomes)
    assert len(set(got)) == 1
    with session_scope() as session:
        assert session.scalar(select(func.count(Payment.id))) == 40
    books_balance()
