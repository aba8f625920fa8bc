"""A till that pays in a loop, for ``test_crash.py`` to kill with SIGKILL at random moments.

``python -m tests.wallet.crash_payer DATABASE_URL MERCHANT_BIN HOUSEHOLD COUNT``

Payment ``i`` always has the key ``crash-<i>`` and the amount :func:`amount`, so a run after a
kill repeats exactly the requests the killed one made. Every third payment is authorised and
then captured in a second transaction, every fifth is partly refunded in a third: a kill can
fall inside any of the three, or between them. Prints ``ready`` once connected, then a line per
finished payment.
"""

from __future__ import annotations

import sys

from qamqor.kit.db import make_engine, session_scope
from qamqor.wallet import payments
from tests.wallet.builders import NOW


def amount(i: int) -> int:
    """1,000 to 2,499 tiyn: over a 1,000-tiyn tranche, so most payments draw on two or three."""
    return 1_000 + (i * 373) % 1_500


def refund_of(i: int) -> int | None:
    return 300 + i if i % 5 == 0 else None


def run(url: str, merchant_bin: str, household: str, count: int) -> None:
    engine = make_engine(url)
    with engine.connect():
        pass
    print("ready", flush=True)
    for i in range(count):
        capture = i % 3 != 0
        with session_scope(engine) as session:
            payment_id = payments.pay(
                session,
                merchant_bin=merchant_bin,
                idempotency_key=f"crash-{i}",
                household_id=household,
                amount_tiyn=amount(i),
                now=NOW,
                capture=capture,
            ).id
        if not capture:
            with session_scope(engine) as session:
                payments.capture(session, payment_id, merchant_bin=merchant_bin, now=NOW)
        part = refund_of(i)
        if part is not None:
            with session_scope(engine) as session:
                payments.refund(
                    session,
                    payment_id,
                    merchant_bin=merchant_bin,
                    idempotency_key=f"crash-refund-{i}",
                    amount_tiyn=part,
                    now=NOW,
                )
        print(i, flush=True)


if __name__ == "__main__":
    url, merchant_bin, household, count = sys.argv[1:5]
    run(url, merchant_bin, household, int(count))
