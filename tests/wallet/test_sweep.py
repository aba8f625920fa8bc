"""The sweep: expired and lapsed tranches go back to their program, once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qamqor.kit.db import session_scope
from qamqor.wallet import ledger, payments, sweep, tranches
from qamqor.wallet.models import Tranche, Transfer
from tests.wallet.builders import MONTH_END, NOW, credit, make_merchant

AFTER = MONTH_END + dt.timedelta(minutes=1)


def _balance(session: Session, code: str) -> int:
    account = ledger.account_by_code(session, code)
    assert account is not None
    session.refresh(account)
    return account.balance_tiyn


def test_expired_and_lapsed_tranches_return_their_remainder_once(engine: Engine) -> None:
    with session_scope() as session:
        shop = make_merchant(session)
        spent = credit(session, "H1", 100_000, activation_required=True)
        tranches.activate(session, spent.id, "H1", NOW)
        payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="p1",
            household_id="H1",
            amount_tiyn=30_000,
            now=NOW,
        )
        lapsed = credit(session, "H2", 50_000, activation_required=True)
        later = credit(session, "H3", 70_000, expires_at=MONTH_END + dt.timedelta(days=31))
        ids = (spent.id, lapsed.id, later.id)
    with session_scope() as session:
        assert sweep.count_due(session, AFTER) == 2
        report = sweep.sweep(session, AFTER)
        assert report.to_dict() == {
            "authorisations_voided": 0,
            "closed": 2,
            "expired": 1,
            "lapsed": 1,
            "returned_tiyn": 120_000,
            "households": 2,
            "waiting": 0,
        }
    with session_scope() as session:
        rows = {t.id: t for t in session.scalars(select(Tranche))}
        assert (rows[ids[0]].closed, rows[ids[0]].close_reason) == (True, "expired")
        assert (rows[ids[0]].spent_tiyn, rows[ids[0]].returned_tiyn) == (30_000, 70_000)
        assert (rows[ids[1]].close_reason, rows[ids[1]].returned_tiyn) == ("lapsed", 50_000)
        assert (rows[ids[2]].closed, rows[ids[2]].returned_tiyn) == (False, 0)
        assert _balance(session, "returns:food_voucher") == 120_000
        assert _balance(session, "wallet:H1:food") == 0
        assert _balance(session, "wallet:H3:food") == 70_000
        sweeps = session.scalars(
            select(Transfer.idempotency_key).where(Transfer.code == "sweep").order_by(Transfer.id)
        ).all()
        assert sweeps == [f"sweep:{ids[0]}", f"sweep:{ids[1]}"]
    with session_scope() as session:
        again = sweep.sweep(session, AFTER + dt.timedelta(hours=1))
        assert (again.closed, again.returned_tiyn) == (0, 0)
        assert (
            session.scalar(
                select(func.count()).select_from(Transfer).where(Transfer.code == "sweep")
            )
            == 2
        )


def test_nothing_is_swept_before_expiry(engine: Engine) -> None:
    with session_scope() as session:
        credit(session, "H1", 10_000)
        report = sweep.sweep(session, MONTH_END - dt.timedelta(seconds=1))
        assert (report.closed, report.households) == (0, 0)
        assert _balance(session, "wallet:H1:food") == 10_000


def test_timed_out_authorisations_are_voided_first_and_live_ones_wait(engine: Engine) -> None:
    with session_scope() as session:
        shop = make_merchant(session)
        credit(session, "H1", 10_000)
        credit(session, "H2", 10_000)
        # H1's authorisation timed out before month end; H2's was made a minute before it
        payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="old",
            household_id="H1",
            amount_tiyn=4_000,
            now=NOW,
            capture=False,
        )
        payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="late",
            household_id="H2",
            amount_tiyn=4_000,
            now=MONTH_END - dt.timedelta(minutes=1),
            capture=False,
        )
    with session_scope() as session:
        report = sweep.sweep(session, AFTER)
        assert (report.authorisations_voided, report.closed, report.waiting) == (1, 1, 1)
        assert report.returned_tiyn == 10_000
        held = session.scalar(select(Tranche).where(Tranche.household_id == "H2"))
        assert held is not None and (held.closed, held.pending_tiyn) == (False, 4_000)
    after_timeout = MONTH_END + payments.AUTHORISATION_TIMEOUT
    with session_scope() as session:
        report = sweep.sweep(session, after_timeout)
        assert (report.authorisations_voided, report.closed, report.waiting) == (1, 1, 0)
        assert report.returned_tiyn == 10_000
        assert _balance(session, "returns:food_voucher") == 20_000


def test_chunks_commit_and_cover_every_household(engine: Engine) -> None:
    with session_scope() as session:
        for n in range(5):
            credit(session, f"H{n}", 1_000 + n)
    commits: list[int] = []
    with session_scope() as session:
        report = sweep.sweep(
            session,
            AFTER,
            chunk=2,
            progress=lambda r: commits.append(r.closed),
            commit=session.commit,
        )
    assert commits == [2, 4, 5, 5]
    assert (report.closed, report.households, report.returned_tiyn) == (5, 5, 5_010)
