"""Settlement: each merchant's takings up to the end of a local day go to the settlement
account, once per merchant and day."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from qamqor.kit.db import session_scope
from qamqor.wallet import ledger, payments, settlement
from qamqor.wallet.models import Transfer
from tests.wallet.builders import NOW, credit, make_merchant

DAY = dt.date(2026, 12, 10)  # NOW is 14:00 on 10 December in Almaty (UTC+5)
NEXT_MORNING = dt.datetime(2026, 12, 11, 3, 0, tzinfo=dt.UTC)  # 08:00 on 11 December


def _pay(session, shop: str, key: str, amount: int, at: dt.datetime = NOW) -> int:  # type: ignore[no-untyped-def]
    return payments.pay(
        session,
        merchant_bin=shop,
        idempotency_key=key,
        household_id="H1",
        amount_tiyn=amount,
        now=at,
    ).id


def _balance(session, code: str) -> int:  # type: ignore[no-untyped-def]
    account = ledger.account_by_code(session, code)
    return account.balance_tiyn if account else 0


def test_a_day_is_settled_once_per_merchant(engine: Engine) -> None:
    with session_scope() as session:
        shop, pharmacy = make_merchant(session, 1), make_merchant(session, 2, category="5912")
        credit(session, amount=100_000)
        credit(session, amount=50_000, purpose="medicine", program="disabled_child")
        _pay(session, shop.bin, "a", 30_000)
        _pay(session, shop.bin, "b", 12_345)
        _pay(session, pharmacy.bin, "c", 7_000)
        bins = (shop.bin, pharmacy.bin)
    with session_scope() as session:
        done = settlement.settle(session, now=NEXT_MORNING, day=DAY)
        assert [(d.merchant_bin, d.amount_tiyn, d.already) for d in done] == sorted(
            [(bins[0], 42_345, False), (bins[1], 7_000, False)]
        )
    with session_scope() as session:
        assert _balance(session, f"merchant:{bins[0]}") == 0
        assert _balance(session, f"merchant:{bins[1]}") == 0
        assert _balance(session, "settlement") == 49_345
        moved = session.scalars(
            select(Transfer).where(Transfer.code == "settlement").order_by(Transfer.id)
        ).all()
        assert {t.idempotency_key for t in moved} == {
            f"settlement:{bins[0]}:2026-12-10",
            f"settlement:{bins[1]}:2026-12-10",
        }
    with session_scope() as session:  # the job runs again: nothing moves twice
        again = settlement.settle(session, now=NEXT_MORNING + dt.timedelta(hours=1), day=DAY)
        assert sorted((d.amount_tiyn, d.already) for d in again) == [(7_000, True), (42_345, True)]
    with session_scope() as session:
        assert _balance(session, "settlement") == 49_345


def test_money_after_the_cut_off_waits_for_the_next_day(engine: Engine) -> None:
    evening = dt.datetime(2026, 12, 10, 19, 30, tzinfo=dt.UTC)  # 00:30 on 11 December, local
    with session_scope() as session:
        shop = make_merchant(session)
        credit(session, amount=100_000)
        _pay(session, shop.bin, "day", 10_000)
        _pay(session, shop.bin, "night", 3_000, at=evening)
        bin_ = shop.bin
    with session_scope() as session:
        (first,) = settlement.settle(session, now=NEXT_MORNING, day=DAY, merchant_bin=bin_)
        assert first.amount_tiyn == 10_000
    with session_scope() as session:
        assert _balance(session, f"merchant:{bin_}") == 3_000
        (second,) = settlement.settle(
            session, now=dt.datetime(2026, 12, 12, 3, 0, tzinfo=dt.UTC), merchant_bin=bin_
        )  # default day: yesterday, 11 December
        assert (second.day, second.amount_tiyn) == (dt.date(2026, 12, 11), 3_000)
    with session_scope() as session:
        days = settlement.settlements_of(session, shop)
        assert [(d.day, d.amount_tiyn) for d in days] == [
            (dt.date(2026, 12, 11), 3_000),
            (dt.date(2026, 12, 10), 10_000),
        ]
        assert [d.day for d in settlement.settlements_of(session, shop, since=DAY, until=DAY)] == [
            DAY
        ]


def test_a_refund_after_the_cut_off_is_not_settled_again(engine: Engine) -> None:
    """Settled is the smaller of the day's net and what the account holds now."""
    with session_scope() as session:
        shop = make_merchant(session)
        credit(session, amount=100_000)
        paid = _pay(session, shop.bin, "p", 20_000)
        payments.refund(
            session,
            paid,
            merchant_bin=shop.bin,
            idempotency_key="r",
            amount_tiyn=8_000,
            now=NEXT_MORNING - dt.timedelta(hours=1),  # after the cut-off of 10 December
        )
        bin_ = shop.bin
    with session_scope() as session:
        (done,) = settlement.settle(session, now=NEXT_MORNING, day=DAY)
        assert done.amount_tiyn == 12_000
        assert _balance(session, f"merchant:{bin_}") == 0


def test_authorisations_are_settled_when_captured(engine: Engine) -> None:
    with session_scope() as session:
        shop = make_merchant(session)
        credit(session, amount=100_000)
        held = payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="auth",
            household_id="H1",
            amount_tiyn=5_000,
            now=NOW,
            capture=False,
        ).id
        bin_ = shop.bin
    with session_scope() as session:
        (nothing,) = settlement.settle(session, now=NEXT_MORNING, day=DAY)
        assert (nothing.amount_tiyn, nothing.transfer_id) == (0, None)
    with session_scope() as session:
        payments.capture(session, held, merchant_bin=bin_, now=NOW + dt.timedelta(minutes=10))
    with session_scope() as session:
        # a day with nothing settled has no key used: the run after the capture settles it
        (done,) = settlement.settle(session, now=NEXT_MORNING, day=DAY)
        assert done.amount_tiyn == 5_000


def test_a_day_not_over_and_an_unknown_merchant_are_refused(engine: Engine) -> None:
    with session_scope() as session, pytest.raises(settlement.SettlementError, match="not ended"):
        settlement.settle(session, now=NOW, day=DAY)
    with session_scope() as session, pytest.raises(settlement.SettlementError, match="no merchant"):
        settlement.settle(session, now=NEXT_MORNING, day=DAY, merchant_bin="990000000000")


def test_the_settle_command(engine: Engine) -> None:
    import typer

    from qamqor.wallet.merchant_cli import settle_command

    app = typer.Typer()
    app.command("settle")(settle_command)
    app.command("noop")(lambda: None)  # a group, as under `qamqor wallet`
    with session_scope() as session:
        shop = make_merchant(session)
        credit(session, amount=100_000)
        # the command settles yesterday (local time) by the real clock: pay two days ago
        _pay(session, shop.bin, "p", 25_050, at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
        bin_ = shop.bin
    runner = CliRunner()
    result = runner.invoke(app, ["settle", "--merchant", bin_], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "250.50" in result.output and "settled now: 250.50 ₸ for 1 merchant(s)" in result.output
    again = runner.invoke(app, ["settle", "--merchant", bin_], terminal_width=200)
    assert "already settled" in again.output and "settled now: 0.00 ₸" in again.output
    bad = runner.invoke(app, ["settle", "--as-of", "10.12.2026"])
    assert bad.exit_code == 1 and "not a date" in bad.output
