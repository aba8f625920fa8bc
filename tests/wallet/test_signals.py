"""Misuse signals over hand-built payments: found, recorded once, reviewed, never blocking."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qamqor.kit.db import session_scope
from qamqor.profiles.models import ProfileBuild, ProfileHead
from qamqor.wallet import merchants, payments, signals
from qamqor.wallet.models import Payment, Signal
from qamqor.web.app import create_app
from tests.privacy.builders import bearer, fast_hashing, make_officer
from tests.wallet.builders import NOW, credit, make_merchant

pytestmark = pytest.mark.usefixtures("fast_hashing")
__all__ = ["fast_hashing"]

SINCE = NOW - dt.timedelta(days=7)
UNTIL = NOW + dt.timedelta(hours=1)


def _pay(
    session: Session, merchant: str, household: str, amount: int, key: str, at: dt.datetime = NOW
) -> Payment:
    return payments.pay(
        session,
        merchant_bin=merchant,
        idempotency_key=key,
        household_id=household,
        amount_tiyn=amount,
        now=at,
    )


def _profiles(session: Session, regions: dict[str, str | None]) -> None:
    build = ProfileBuild(
        as_of=NOW.date(),
        scope="all",
        max_batch_id=0,
        catalogue_sha256="0" * 64,
        feature_names=[],
        households=len(regions),
        changed=len(regions),
        phases={},
        started_at=NOW,
        finished_at=NOW,
    )
    session.add(build)
    session.flush()
    for household, region in regions.items():
        session.add(
            ProfileHead(
                household_id=household,
                version=1,
                build_id=build.id,
                region_code=region,
                content_sha256="0" * 64,
            )
        )
    session.flush()


def test_a_merchant_draining_whole_balances_is_signalled_once(engine: Engine) -> None:
    with session_scope() as session:
        drainer = make_merchant(session, 1)
        honest = make_merchant(session, 2)
        for n in range(5):
            credit(session, f"D{n}", 10_000 + n)
            _pay(session, drainer.bin, f"D{n}", 10_000 + n, f"d{n}")  # the whole balance
            credit(session, f"K{n}", 10_000)
            _pay(session, honest.bin, f"K{n}", 9_000, f"k{n}")  # leaves 1,000
        _pay(session, drainer.bin, "K0", 500, "k-extra")  # one ordinary payment among them
        report = signals.run_signals(session, SINCE, UNTIL)
        assert report.found == {"drain": 1, "split": 0, "far": 0}
        assert report.inserted == {"drain": 1, "split": 0, "far": 0}
        (signal,) = session.scalars(select(Signal)).all()
        assert (signal.kind, signal.merchant_bin, signal.status) == ("drain", drainer.bin, "open")
        assert signal.detail["draining_payments"] == 5
        assert signal.detail["payments"] == 6
        assert signal.detail["share"] == round(5 / 6, 3)
        assert signal.detail["households"] == 5
        assert signal.dedupe_key == f"drain:{drainer.bin}:2026-W50"
        again = signals.run_signals(session, SINCE, UNTIL)
        assert (again.found["drain"], again.inserted["drain"]) == (1, 0)
        assert session.scalar(select(func.count()).select_from(Signal)) == 1
        # nothing is blocked: the merchant still takes payments
        credit(session, "D9", 5_000)
        assert _pay(session, drainer.bin, "D9", 5_000, "after").status == "posted"


def test_draining_payments_below_the_share_or_count_are_quiet(engine: Engine) -> None:
    with session_scope() as session:
        shop = make_merchant(session)
        for n in range(5):
            credit(session, f"D{n}", 10_000)
            _pay(session, shop.bin, f"D{n}", 10_000, f"d{n}")
        for n in range(5):  # five ordinary payments: 5 of 10 drain, below 60%
            credit(session, f"K{n}", 10_000)
            _pay(session, shop.bin, f"K{n}", 2_000, f"k{n}")
        assert signals.run_signals(session, SINCE, UNTIL).found["drain"] == 0
        limits = signals.Thresholds(drain_min_share=0.5)
        assert signals.run_signals(session, SINCE, UNTIL, limits).found["drain"] == 1


def test_a_pending_authorisation_counts_as_drawn_and_a_void_gives_it_back(
    engine: Engine,
) -> None:
    with session_scope() as session:
        shop = make_merchant(session)
        credit(session, "H1", 10_000)
        held = payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="a",
            household_id="H1",
            amount_tiyn=10_000,
            now=NOW,
            capture=False,
        )
        assert signals.draining_payments(session, SINCE, UNTIL) == {held.id}
        payments.void(session, held.id, merchant_bin=shop.bin, now=NOW)
        assert signals.draining_payments(session, SINCE, UNTIL) == set()  # voided: left out
        again = _pay(session, shop.bin, "H1", 4_000, "b", NOW + dt.timedelta(minutes=1))
        assert signals.draining_payments(session, SINCE, UNTIL) == set()
        last = _pay(session, shop.bin, "H1", 6_000, "c", NOW + dt.timedelta(minutes=2))
        assert signals.draining_payments(session, SINCE, UNTIL) == {last.id}
        del again


def test_split_payments_just_under_the_limit(engine: Engine) -> None:
    limit = signals.SPLIT_LIMIT_TIYN
    just_under = limit - 50_000  # 19,500 ₸: within 10% under 20,000 ₸
    with session_scope() as session:
        shop = make_merchant(session)
        credit(session, "S1", 10_000_000)
        credit(session, "S2", 10_000_000)
        credit(session, "S3", 10_000_000)
        first = _pay(session, shop.bin, "S1", just_under, "s1a", NOW)
        second = _pay(session, shop.bin, "S1", just_under - 1, "s1b", NOW + dt.timedelta(minutes=4))
        # far apart in time: two ordinary purchases
        _pay(session, shop.bin, "S2", just_under, "s2a", NOW)
        _pay(session, shop.bin, "S2", just_under, "s2b", NOW + dt.timedelta(minutes=30))
        # quick, but not near the limit
        _pay(session, shop.bin, "S3", 1_000_000, "s3a", NOW)
        _pay(session, shop.bin, "S3", 1_000_000, "s3b", NOW + dt.timedelta(minutes=1))
        report = signals.run_signals(session, SINCE, UNTIL)
        assert report.found == {"drain": 0, "split": 1, "far": 0}
        (signal,) = session.scalars(select(Signal)).all()
        assert (signal.kind, signal.household_id, signal.merchant_bin) == ("split", "S1", shop.bin)
        assert signal.dedupe_key == f"split:{shop.bin}:S1:{first.id}"
        assert signal.detail["payment_ids"] == [first.id, second.id]
        assert signal.detail["total_tiyn"] == 2 * just_under - 1
        assert signal.detail["limit_tiyn"] == limit
        # a later window that starts inside the burst finds the same burst: nothing new
        later = signals.run_signals(session, NOW + dt.timedelta(minutes=2), UNTIL)
        assert (later.found["split"], later.inserted["split"]) == (1, 0)


def test_payments_outside_the_households_region(engine: Engine) -> None:
    with session_scope() as session:
        _profiles(session, {"F1": "75", "F2": "71", "F3": None})
        away = make_merchant(session, 1, region="71")
        for household in ("F1", "F2", "F3", "F4"):  # F4 has no profile
            credit(session, household, 50_000)
            _pay(session, away.bin, household, 1_000, f"{household}-1")
            _pay(session, away.bin, household, 2_000, f"{household}-2")
        credit(session, "F5", 50_000)
        _profiles(session, {"F5": "75"})
        _pay(session, away.bin, "F5", 1_000, "F5-1")  # once while travelling: quiet
        report = signals.run_signals(session, SINCE, UNTIL)
        assert report.found == {"drain": 0, "split": 0, "far": 1}
        (signal,) = session.scalars(select(Signal)).all()
        assert signal.dedupe_key == f"far:F1:{away.bin}"
        assert signal.detail["household_region"] == "75"
        assert signal.detail["merchant_region"] == "71"
        assert (signal.detail["payments"], signal.detail["amount_tiyn"]) == (2, 3_000)
        assert signals.run_signals(session, SINCE, UNTIL).inserted["far"] == 0
        # a signal never blocks: the merchant stays active and the household can pay there
        assert merchants.list_merchants(session)[0].status == "active"
        assert _pay(session, away.bin, "F1", 1_000, "F1-3").status == "posted"


def test_review_confirms_or_dismisses_once_with_a_note(engine: Engine) -> None:
    with session_scope() as session:
        _profiles(session, {"F1": "75"})
        away = make_merchant(session, 1, region="71")
        credit(session, "F1", 50_000)
        _pay(session, away.bin, "F1", 1_000, "1")
        _pay(session, away.bin, "F1", 1_000, "2")
        (signal_id,) = signals.run_signals(session, SINCE, UNTIL).signal_ids
        with pytest.raises(signals.SignalError, match="note"):
            signals.review(
                session, signal_id, decision="dismissed", note=" ", reviewer="r", now=NOW
            )
        with pytest.raises(signals.SignalError):
            signals.review(session, signal_id, decision="open", note="x", reviewer="r", now=NOW)
        done = signals.review(
            session,
            signal_id,
            decision="dismissed",
            note="lives at the oblast border",
            reviewer="program_officer:a.b",
            now=NOW,
        )
        assert (done.status, done.reviewed_by, done.review_note) == (
            "dismissed",
            "program_officer:a.b",
            "lives at the oblast border",
        )
        same = signals.review(
            session, signal_id, decision="dismissed", note="again", reviewer="x", now=NOW
        )
        assert same.review_note == "lives at the oblast border"
        with pytest.raises(signals.SignalError, match="already dismissed"):
            signals.review(
                session, signal_id, decision="confirmed", note="no", reviewer="x", now=NOW
            )
        assert [s.id for s in signals.list_signals(session, status="dismissed")] == [signal_id]
        assert signals.list_signals(session, status="open") == []


def test_signal_routes_need_a_purpose_and_log_the_households(engine: Engine) -> None:
    from qamqor.privacy.models import AccessEvent

    with session_scope() as session:
        _profiles(session, {"F1": "75"})
        away = make_merchant(session, 1, region="71")
        credit(session, "F1", 50_000)
        _pay(session, away.bin, "F1", 1_000, "1")
        _pay(session, away.bin, "F1", 1_000, "2")
        (signal_id,) = signals.run_signals(session, SINCE, UNTIL).signal_ids
        _, officer = make_officer(session, "program_officer", ("all",))
    client = TestClient(create_app())
    assert client.get("/api/v1/wallet/signals", headers=bearer(officer)).status_code == 403
    purpose = {**bearer(officer), "X-Purpose": "review:SIG-1"}
    listed = client.get("/api/v1/wallet/signals", params={"status": "open"}, headers=purpose)
    assert listed.status_code == 200, listed.text
    assert [(s["id"], s["kind"]) for s in listed.json()["items"]] == [(signal_id, "far")]
    url = f"/api/v1/wallet/signals/{signal_id}/review"
    reviewed = client.post(
        url, json={"decision": "confirmed", "note": "card lent"}, headers=purpose
    )
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["status"] == "confirmed"
    assert reviewed.json()["reviewed_by"].startswith("program_officer:")
    conflict = client.post(url, json={"decision": "dismissed", "note": "x"}, headers=purpose)
    assert conflict.status_code == 409
    assert (
        client.post(
            "/api/v1/wallet/signals/99999/review",
            json={"decision": "dismissed", "note": "x"},
            headers=purpose,
        ).status_code
        == 404
    )
    with session_scope() as session:
        events = session.scalars(
            select(AccessEvent.household_id).where(AccessEvent.action == "wallet.read_signals")
        ).all()
        assert events == ["F1", "F1"]  # the list and the review
