"""From entitlement to money: monthly credits, their expiry, activation, period and amount."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qamqor.kit.db import session_scope
from qamqor.proactive.models import Entitlement, Notice, Offer
from qamqor.wallet import credits, ledger
from qamqor.wallet.models import Tranche, Transfer
from tests.wallet.builders import MONTH_END, NOW

DECEMBER = dt.date(2026, 12, 1)
_decisions = itertools.count(1)


def make_entitlement(
    session: Session,
    household: str = "H1",
    amount: int = 393_200,
    start: dt.date = DECEMBER,
    end: dt.date | None = dt.date(2027, 2, 28),
    status: str = "active",
    program: str = "food_voucher",
    channel: str = "wallet",
    purpose: str = "food",
) -> Entitlement:
    """An accepted offer and its entitlement, as ``offers.accept`` leaves them."""
    offer = Offer(
        household_id=household,
        program_id=program,
        decision_id=next(_decisions),
        amount_tiyn=amount,
        recipient_iin=None,
        status="accepted",
        created_at=NOW - dt.timedelta(days=20),
        expires_at=NOW - dt.timedelta(days=17),
        responded_at=NOW - dt.timedelta(days=19),
        response_channel="portal",
    )
    session.add(offer)
    session.flush()
    entitlement = Entitlement(
        offer_id=offer.id,
        household_id=household,
        program_id=program,
        amount_tiyn=amount,
        period_start=start,
        period_end=end,
        channel=channel,
        purpose=purpose,
        status=status,
        created_at=NOW - dt.timedelta(days=19),
    )
    session.add(entitlement)
    session.flush()
    return entitlement


def add_notice(
    session: Session,
    entitlement: Entitlement,
    kind: str,
    effective_on: dt.date,
    before: int | None = None,
    after: int | None = None,
) -> None:
    session.add(
        Notice(
            household_id=entitlement.household_id,
            program_id=entitlement.program_id,
            decision_id=next(_decisions) + 10_000,
            entitlement_id=entitlement.id,
            kind=kind,
            amount_before_tiyn=before,
            amount_after_tiyn=after,
            effective_on=effective_on,
            appeal_until=NOW.date() + dt.timedelta(days=30),
            created_at=NOW,
        )
    )
    session.flush()


def test_one_tranche_per_wallet_entitlement_expiring_at_local_month_end(engine: Engine) -> None:
    with session_scope() as session:
        first = make_entitlement(session, "H1", 393_200)
        second = make_entitlement(session, "H2", 589_800)
        make_entitlement(session, "H3", 5_000_000, channel="bank", purpose="cash", program="asp")
        report = credits.schedule_credits(session, DECEMBER, NOW)
        assert report.to_dict() == {
            "month": "2026-12",
            "entitlements": 2,
            "opened": 2,
            "already": 0,
            "credited_tiyn": 983_000,
            "skipped": {},
        }
    with session_scope() as session:
        rows = session.scalars(select(Tranche).order_by(Tranche.entitlement_id)).all()
        assert [(t.entitlement_id, t.household_id, t.amount_tiyn) for t in rows] == [
            (first.id, "H1", 393_200),
            (second.id, "H2", 589_800),
        ]
        tranche = rows[0]
        assert (tranche.program_id, tranche.purpose) == ("food_voucher", "food")
        assert (tranche.period_start, tranche.period_end) == (DECEMBER, dt.date(2026, 12, 31))
        # month_end: midnight of 1 January in Almaty, 19:00 UTC on the 31st
        assert tranche.expires_at == MONTH_END
        assert tranche.activation_required is True and tranche.activated_at is None
        budget = ledger.account_by_code(session, "budget:food_voucher")
        assert budget is not None and budget.balance_tiyn == -983_000
        wallet = ledger.account_by_code(session, "wallet:H1:food")
        assert wallet is not None and wallet.balance_tiyn == 393_200


def test_scheduling_twice_credits_once(engine: Engine) -> None:
    with session_scope() as session:
        make_entitlement(session)
        credits.schedule_credits(session, DECEMBER, NOW)
    with session_scope() as session:
        again = credits.schedule_credits(session, DECEMBER, NOW + dt.timedelta(hours=1))
        assert (again.opened, again.already, again.credited_tiyn) == (0, 1, 0)
        assert session.scalar(select(func.count()).select_from(Transfer)) == 1
        assert session.scalar(select(func.count()).select_from(Tranche)) == 1


def test_chunks_cover_every_entitlement(engine: Engine) -> None:
    with session_scope() as session:
        for n in range(7):
            make_entitlement(session, f"H{n}", 10_000 + n)
    seen: list[int] = []
    with session_scope() as session:
        report = credits.schedule_credits(
            session, DECEMBER, NOW, chunk=3, progress=lambda r: seen.append(r.entitlements)
        )
    assert seen == [3, 6, 7]
    assert (report.opened, report.credited_tiyn) == (7, 70_021)


def test_months_outside_the_period_and_ended_entitlements_get_nothing(engine: Engine) -> None:
    with session_scope() as session:
        ended_in_november = make_entitlement(
            session, "H1", start=dt.date(2026, 9, 1), end=dt.date(2026, 11, 30), status="ending"
        )
        ended_without_end = make_entitlement(session, "H2", end=None, status="ended")
        # the worker clears period_end when a household is eligible again; the food voucher's
        # three months (September to November) still hold
        beyond_duration = make_entitlement(session, "H3", start=dt.date(2026, 9, 1), end=None)
        paid = make_entitlement(session, "H4", start=dt.date(2026, 10, 1), end=None)
        report = credits.schedule_credits(session, DECEMBER, NOW)
        assert report.skipped == {"ended": 1, "outside_period": 1}
        assert report.opened == 1
        households = session.scalars(select(Tranche.household_id)).all()
        assert households == ["H4"]
        del ended_in_november, ended_without_end, beyond_duration, paid


def test_a_notice_of_lost_eligibility_pays_to_its_effective_day(engine: Engine) -> None:
    with session_scope() as session:
        ending = make_entitlement(session, end=dt.date(2027, 2, 28), status="ending")
        add_notice(session, ending, "eligibility_lost", dt.date(2027, 1, 31))
        december = credits.schedule_credits(session, DECEMBER, NOW)
        january = credits.schedule_credits(
            session, dt.date(2027, 1, 1), dt.datetime(2027, 1, 5, tzinfo=dt.UTC)
        )
        february = credits.schedule_credits(
            session, dt.date(2027, 2, 1), dt.datetime(2027, 2, 5, tzinfo=dt.UTC)
        )
        assert (december.opened, january.opened, february.opened) == (1, 1, 0)
        assert february.skipped == {"outside_period": 1}


def test_an_amount_change_applies_from_its_effective_day(engine: Engine) -> None:
    with session_scope() as session:
        # the worker already wrote the new amount (7,000 ₸) into the entitlement in December
        changed = make_entitlement(session, amount=700_000)
        add_notice(session, changed, "amount_changed", dt.date(2027, 1, 1), 500_000, 700_000)
        credits.schedule_credits(session, DECEMBER, NOW)
        credits.schedule_credits(
            session, dt.date(2027, 1, 1), dt.datetime(2027, 1, 2, tzinfo=dt.UTC)
        )
        amounts = session.scalars(select(Tranche.amount_tiyn).order_by(Tranche.period_start))
        assert list(amounts) == [500_000, 700_000]


def test_a_month_not_begun_is_refused_and_one_over_is_skipped(engine: Engine) -> None:
    with session_scope() as session:
        make_entitlement(session, start=dt.date(2026, 11, 1))
        with pytest.raises(credits.CreditError, match="2027-01 has not begun"):
            credits.schedule_credits(session, dt.date(2027, 1, 1), NOW)
        november = credits.schedule_credits(session, dt.date(2026, 11, 1), NOW)
        assert (november.opened, november.skipped) == (0, {"month_over": 1})
        # 1 January 00:30 in Almaty is still 31 December in UTC: January has begun locally
        early = dt.datetime(2026, 12, 31, 19, 30, tzinfo=dt.UTC)
        assert credits.schedule_credits(session, dt.date(2027, 1, 1), early).opened == 1


def test_payment_terms_from_the_spec_and_their_defaults() -> None:
    voucher = credits.payment_terms({"expiry": "month_end", "activation": "monthly"})
    assert voucher == credits.PaymentTerms(expiry_months=1, activation_required=True)
    default = credits.payment_terms({"channel": "wallet", "purpose": "medicine"})
    assert default == credits.PaymentTerms(expiry_months=12, activation_required=False)
    assert credits.payment_terms({"expiry_months": 3}).expiry_months == 3
    # 12 months from December 2026: local midnight of 1 December 2027 (UTC+5)
    assert credits.expiry_of(default, DECEMBER) == dt.datetime(2027, 11, 30, 19, tzinfo=dt.UTC)
    for wrong in (
        {"expiry": "month_end", "expiry_months": 2},
        {"expiry": "year_end"},
        {"expiry_months": 0},
        {"activation": "weekly"},
    ):
        with pytest.raises(credits.CreditError):
            credits.payment_terms(wrong, "p")
