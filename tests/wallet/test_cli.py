"""``qamqor wallet``: credit, sweep, report, trace, reconcile, signals, demo."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from qamqor.cli import app
from qamqor.kit.db import session_scope
from qamqor.kit.settings import get_settings
from qamqor.proactive.models import Entitlement, Offer
from qamqor.wallet import payments, tranches
from qamqor.wallet.models import Payment, Tranche
from tests.privacy.builders import fast_hashing, make_household
from tests.wallet.builders import credit, make_merchant
from tests.wallet.test_credits import make_entitlement
from tests.wallet.test_reports import scenario
from tests.wallet.test_signals import _profiles

pytestmark = pytest.mark.usefixtures("fast_hashing")
__all__ = ["fast_hashing"]
runner = CliRunner()


def _this_month() -> dt.date:
    return dt.datetime.now(ZoneInfo("Asia/Almaty")).date().replace(day=1)


def test_credit_is_idempotent_and_reports_json(engine: Engine) -> None:
    month = _this_month()
    with session_scope() as session:
        make_entitlement(session, "H1", 393_200, start=month, end=None)
        make_entitlement(session, "H2", 100_000, start=month, end=None)
    first = runner.invoke(app, ["wallet", "credit", "--month", f"{month:%Y-%m}", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) == {
        "month": f"{month:%Y-%m}",
        "entitlements": 2,
        "opened": 2,
        "already": 0,
        "credited_tiyn": 493_200,
        "skipped": {},
    }
    again = runner.invoke(app, ["wallet", "credit", "--chunk", "1"])
    assert again.exit_code == 0, again.output
    assert "2 already credited" in again.output and "0 tranches opened" in again.output
    future = f"{month.year + 1}-{month.month:02d}"
    refused = runner.invoke(app, ["wallet", "credit", "--month", future])
    assert refused.exit_code == 1
    assert "has not begun" in refused.output
    bad = runner.invoke(app, ["wallet", "credit", "--month", "December"])
    assert bad.exit_code == 2


def test_report_trace_and_reconcile(engine: Engine) -> None:
    with session_scope() as session:
        made = scenario(session)
    report = runner.invoke(app, ["wallet", "report", "--program", "food_voucher", "--json"])
    assert report.exit_code == 0, report.output
    (food,) = json.loads(report.output)
    assert (food["credited_tiyn"], food["spent_tiyn"], food["pending_tiyn"]) == (
        150_000,
        45_000,
        10_000,
    )
    table = runner.invoke(app, ["wallet", "report"])
    assert table.exit_code == 0, table.output
    assert "5411 Grocery stores, supermarkets 250.00 ₸" in table.output
    assert "medicine_aid" in table.output
    assert runner.invoke(app, ["wallet", "report", "--program", "nope"]).exit_code == 1

    traced = runner.invoke(app, ["wallet", "trace", str(made["at_shop"])])
    assert traced.exit_code == 0, traced.output
    assert "budget:food_voucher --credit" in traced.output
    assert "wallet:H1:food -> merchant:" in traced.output
    assert "net drawn 250.00 ₸" in traced.output
    assert runner.invoke(app, ["wallet", "trace", "424242"]).exit_code == 1

    clean = runner.invoke(app, ["wallet", "reconcile"])
    assert clean.exit_code == 0, clean.output
    assert "books reconcile" in clean.output
    with session_scope() as session:
        session.execute(
            text(
                "UPDATE wallet_account SET credits_posted = credits_posted + 1 "
                "WHERE code = 'wallet:H2:food'"
            )
        )
    broken = runner.invoke(app, ["wallet", "reconcile"])
    assert broken.exit_code == 1
    assert "RECONCILIATION FAILED" in broken.output
    assert "[account_sums] account wallet:H2:food" in broken.output
    as_json = runner.invoke(app, ["wallet", "reconcile", "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.output)["ok"] is False


def test_sweep_returns_what_expired_and_refuses_to_sweep_ahead(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = now - dt.timedelta(hours=1)
    with session_scope() as session:
        for household, amount in (("H1", 10_000), ("H2", 25_000)):
            tranches.open_tranche(
                session,
                household_id=household,
                program_id="food_voucher",
                purpose="food",
                amount_tiyn=amount,
                period_start=expired.date().replace(day=1),
                period_end=expired.date(),
                expires_at=expired,
                now=expired - dt.timedelta(days=3),
                activation_required=household == "H2",
                key=f"cli-{household}",
            )
        credit(session, "H3", 5_000, expires_at=now + dt.timedelta(days=400), key="later")
    before = (expired - dt.timedelta(minutes=1)).isoformat()
    early = runner.invoke(app, ["wallet", "sweep", "--as-of", before, "--json"])
    assert early.exit_code == 0, early.output
    assert json.loads(early.output)["closed"] == 0
    swept = runner.invoke(app, ["wallet", "sweep", "--json"])
    assert swept.exit_code == 0, swept.output
    data = json.loads(swept.output)
    assert (data["closed"], data["expired"], data["lapsed"], data["returned_tiyn"]) == (
        2,
        1,
        1,
        35_000,
    )
    words = runner.invoke(app, ["wallet", "sweep"])
    assert words.exit_code == 0 and "0 tranches closed" in words.output
    # tomorrow where the CLI reads dates (local midnight): from 19:00 UTC on, UTC's
    # tomorrow is already today in Almaty
    local = ZoneInfo(get_settings().local_timezone)
    ahead = (now.astimezone(local) + dt.timedelta(days=1)).date().isoformat()
    refused = runner.invoke(app, ["wallet", "sweep", "--as-of", ahead])
    assert refused.exit_code == 2 and "ahead of time" in refused.output
    past = runner.invoke(app, ["wallet", "sweep", "--as-of", "2026-11-01", "--json"])
    assert json.loads(past.output)["as_of"] == "2026-10-31T19:00:00+00:00"  # Almaty midnight


def test_signals_run_list_and_review(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        _profiles(session, {"F1": "75"})
        away = make_merchant(session, 1, region="71")
        credit(session, "F1", 50_000)
        for n in range(2):
            payments.pay(
                session,
                merchant_bin=away.bin,
                idempotency_key=str(n),
                household_id="F1",
                amount_tiyn=1_000,
                now=now - dt.timedelta(hours=1),
            )
    listed = runner.invoke(app, ["wallet", "signals", "--run", "--json"])
    assert listed.exit_code == 0, listed.output
    (signal,) = json.loads(listed.output)
    assert (signal["kind"], signal["household_id"], signal["status"]) == ("far", "F1", "open")
    table = runner.invoke(app, ["wallet", "signals", "--status", "open"])
    assert table.exit_code == 0 and "far" in table.output
    neither = runner.invoke(app, ["wallet", "signals", "review", str(signal["id"]), "--note", "x"])
    assert neither.exit_code == 2
    done = runner.invoke(
        app,
        ["wallet", "signals", "review", str(signal["id"]), "--dismiss", "--note", "border"],
    )
    assert done.exit_code == 0, done.output
    assert f"signal {signal['id']}: dismissed by cli:" in done.output
    again = runner.invoke(
        app, ["wallet", "signals", "review", str(signal["id"]), "--confirm", "--note", "no"]
    )
    assert again.exit_code == 1 and "already dismissed" in again.output
    assert (
        json.loads(runner.invoke(app, ["wallet", "signals", "--status", "open", "--json"]).output)
        == []
    )


def test_demo_accepts_the_voucher_pays_and_is_refused_at_the_pharmacy(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        head, _ = make_household(session, "DEMO-1", "75", 900)
        session.add(
            Offer(
                household_id="DEMO-1",
                program_id="food_voucher",
                decision_id=1,
                amount_tiyn=786_400,
                recipient_iin=head,
                status="notified",
                created_at=now - dt.timedelta(hours=1),
                expires_at=now + dt.timedelta(hours=71),
            )
        )
    shown = runner.invoke(app, ["wallet", "demo"])
    assert shown.exit_code == 0, shown.output
    assert "refused: purpose_not_allowed" in shown.output
    assert "food_voucher: credited 7,864 ₸, spent 3,932 ₸" in shown.output
    again = runner.invoke(app, ["wallet", "demo", "--json"])
    assert again.exit_code == 0, again.output
    result = json.loads(again.output)
    assert result["household_id"] == "DEMO-1"
    assert result["refusal"]["reason"] == "purpose_not_allowed"
    assert result["report"]["spent_by_category"] == {"5411": 393_200}
    with session_scope() as session:
        (entitlement,) = session.scalars(select(Entitlement)).all()
        assert (entitlement.channel, entitlement.purpose) == ("wallet", "food")
        (tranche,) = session.scalars(select(Tranche)).all()
        assert tranche.activated_at is not None
        assert [p.amount_tiyn for p in session.scalars(select(Payment))] == [393_200]


def test_demo_without_an_offer_says_what_to_run(engine: Engine) -> None:
    result = runner.invoke(app, ["wallet", "demo"])
    assert result.exit_code == 1
    assert "qamqor worker --once" in result.output
