"""A till killed mid-payment leaves each payment wholly applied or absent (SIGKILL, for real).

``tests/wallet/crash_payer.py`` pays in a loop in a process of its own, each payment its own
transaction (then a capture and a refund for some); the test kills it with SIGKILL at random
moments, as ``tests/proactive/test_worker.py`` kills its worker. After every kill the books are
checked from the transfers up: each payment's transfers sum to its amount, each tranche's parts
add up, every balance reconciles. Then the till runs again from the first key: the payments
already made come back as they are, none is charged twice, and the end state is exactly that of
a run nobody interrupted.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.wallet import ledger, reconcile
from qamqor.wallet.models import Payment, Refund
from tests.wallet.builders import NOW, credit, make_merchant
from tests.wallet.crash_payer import amount, refund_of
from tests.wallet.ledger_checks import check_ledger
from tests.wallet.test_concurrency import worker_url

ROOT = Path(__file__).resolve().parents[2]
HOUSEHOLD = "K1"
COUNT = 120
TRANCHES = 300  # of 1,000 tiyn each: most payments draw on two or three
KILLS = 5


def books_balance() -> int:
    """Check the books; the number of payments made so far."""
    with session_scope() as session:
        check_ledger(session)
        assert reconcile.reconcile(session) == []
        return session.scalar(select(func.count(Payment.id))) or 0


@pytest.mark.slow
def test_a_till_killed_mid_payment_leaves_whole_payments_and_retries_charge_once(
    engine: Engine, tmp_path: Path
) -> None:
    with session_scope() as session:
        shop = make_merchant(session).bin
        for n in range(TRANCHES):
            credit(
                session,
                household=HOUSEHOLD,
                amount=1_000,
                expires_at=NOW + dt.timedelta(hours=1 + n),
                key=f"crash-fund-{n}",
            )
    env = {**os.environ, "QAMQOR_VAR_DIR": str(tmp_path / "var")}
    command = [
        sys.executable,
        "-m",
        "tests.wallet.crash_payer",
        worker_url(engine),
        shop,
        HOUSEHOLD,
        str(COUNT),
    ]
    rng = random.Random(23)
    made = [0]
    for _ in range(KILLS):
        till = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert till.stdout is not None
        assert till.stdout.readline().strip() == "ready"
        # Killed by progress, not by the clock (a fast machine once finished all 120 before the
        # first kill): a few payments past the last kill's, then within the next one's work.
        target = made[-1] + rng.randint(1, COUNT // (2 * KILLS))
        for line in till.stdout:
            if int(line) + 1 >= target:
                break
        time.sleep(rng.uniform(0.0, 0.005))
        till.send_signal(signal.SIGKILL)
        till.wait()
        made.append(books_balance())
    made = made[1:]
    # the kills fell while there was work: the first left payments to make
    assert 0 < made[0] < COUNT, made
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert books_balance() == COUNT
    with session_scope() as session:
        stored = session.scalars(select(Payment).order_by(Payment.id)).all()
        assert sorted(p.idempotency_key for p in stored) == sorted(
            f"crash-{i}" for i in range(COUNT)
        )
        by_key = {p.idempotency_key: p for p in stored}
        for i in range(COUNT):
            payment = by_key[f"crash-{i}"]
            assert (payment.amount_tiyn, payment.status) == (amount(i), "posted")
            assert payment.refunded_tiyn == (refund_of(i) or 0)
        assert session.scalar(select(func.count(Refund.id))) == sum(
            1 for i in range(COUNT) if refund_of(i)
        )
        charged = sum(amount(i) - (refund_of(i) or 0) for i in range(COUNT))
        wallet = ledger.account_by_code(session, ledger.wallet_code(HOUSEHOLD, "food"))
        merchant = ledger.account_by_code(session, ledger.merchant_code(shop))
        assert wallet is not None and merchant is not None
        assert wallet.balance_tiyn == TRANCHES * 1_000 - charged
        assert merchant.balance_tiyn == charged
