"""Traceability: a payment's path, a program's report, and their API routes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qamqor.kit.db import session_scope
from qamqor.kit.errors import NotFoundError
from qamqor.privacy.models import AccessEvent
from qamqor.wallet import payments, reports, sweep
from qamqor.web.app import create_app
from tests.privacy.builders import bearer, fast_hashing, make_officer
from tests.wallet.builders import MONTH_END, NOW, credit, make_merchant

pytestmark = pytest.mark.usefixtures("fast_hashing")
__all__ = ["fast_hashing"]

AFTER = MONTH_END + dt.timedelta(minutes=1)


def scenario(session: Session) -> dict[str, Any]:
    """Two programs, three merchants in two regions, payments, a refund, an authorisation."""
    shop = make_merchant(session, 1, "5411", "ALA")
    kiosk = make_merchant(session, 2, "5499", "AST")
    pharmacy = make_merchant(session, 3, "5912", "ALA")
    h1_food = credit(session, "H1", 100_000)
    credit(session, "H2", 50_000)
    credit(session, "H1", 40_000, purpose="medicine", program="medicine_aid")

    def pay(merchant: str, household: str, amount: int, key: str, capture: bool = True) -> int:
        return payments.pay(
            session,
            merchant_bin=merchant,
            idempotency_key=key,
            household_id=household,
            amount_tiyn=amount,
            now=NOW,
            capture=capture,
        ).id

    at_shop = pay(shop.bin, "H1", 30_000, "a")
    pay(kiosk.bin, "H2", 20_000, "b")
    pay(pharmacy.bin, "H1", 10_000, "c")
    payments.refund(
        session,
        at_shop,
        merchant_bin=shop.bin,
        idempotency_key="r",
        amount_tiyn=5_000,
        now=NOW,
        reason="returned milk",
    )
    held = pay(shop.bin, "H2", 10_000, "d", capture=False)
    return {"shop": shop.bin, "at_shop": at_shop, "held": held, "h1_food": h1_food.id}


def test_program_report_before_and_after_the_sweep(engine: Engine) -> None:
    with session_scope() as session:
        scenario(session)
        food, medicine = reports.program_report(session)
        assert food.to_dict() == {
            "program_id": "food_voucher",
            "tranches": 2,
            "households": 2,
            "credited_tiyn": 150_000,
            "spent_tiyn": 45_000,
            "pending_tiyn": 10_000,
            "returned_tiyn": 0,
            "outstanding_tiyn": 95_000,
            "closed_expired": 0,
            "closed_lapsed": 0,
            "spent_by_purpose": {"food": 45_000},
            "spent_by_category": {"5411": 25_000, "5499": 20_000},
            "spent_by_region": {"ALA": 25_000, "AST": 20_000},
            "returned_by_reason": {},
        }
        assert (medicine.program_id, medicine.credited_tiyn, medicine.spent_tiyn) == (
            "medicine_aid",
            40_000,
            10_000,
        )
        assert medicine.spent_by_category == {"5912": 10_000}
    with session_scope() as session:
        sweep.sweep(session, AFTER)
        (food,) = reports.program_report(session, "food_voucher")
        assert (food.spent_tiyn, food.pending_tiyn, food.outstanding_tiyn) == (45_000, 0, 0)
        assert (food.returned_tiyn, food.closed_expired) == (105_000, 2)
        assert food.returned_by_reason == {"expired": 105_000}
        assert food.credited_tiyn == food.spent_tiyn + food.returned_tiyn


def test_a_published_program_without_credits_reports_zeros_and_an_unknown_one_is_not_found(
    engine: Engine,
) -> None:
    with session_scope() as session:
        (empty,) = reports.program_report(session, "food_voucher")
        assert (empty.credited_tiyn, empty.tranches, empty.spent_by_region) == (0, 0, {})
        with pytest.raises(NotFoundError):
            reports.program_report(session, "no_such_program")


def test_trace_follows_budget_wallet_merchant_and_the_refund(engine: Engine) -> None:
    with session_scope() as session:
        made = scenario(session)
        path = reports.trace(session, made["at_shop"])
    assert path["payment"]["amount_tiyn"] == 30_000
    assert path["payment"]["refunded_tiyn"] == 5_000
    assert path["merchant"]["account"] == f"merchant:{made['shop']}"
    (leg,) = path["legs"]
    assert leg["program_id"] == "food_voucher"
    assert leg["budget_account"] == "budget:food_voucher"
    assert leg["wallet_account"] == "wallet:H1:food"
    assert leg["tranche"]["id"] == made["h1_food"]
    credit_ = leg["credit_transfer"]
    assert (credit_["debit"], credit_["credit"], credit_["amount_tiyn"]) == (
        "budget:food_voucher",
        "wallet:H1:food",
        100_000,
    )
    assert [(t["debit"], t["credit"], t["amount_tiyn"]) for t in leg["payment_transfers"]] == [
        ("wallet:H1:food", f"merchant:{made['shop']}", 30_000)
    ]
    assert [(t["debit"], t["credit"], t["amount_tiyn"]) for t in leg["refund_transfers"]] == [
        (f"merchant:{made['shop']}", "wallet:H1:food", 5_000)
    ]
    assert leg["net_drawn_tiyn"] == 25_000
    assert [(r["amount_tiyn"], r["reason"]) for r in path["refunds"]] == [(5_000, "returned milk")]


def test_trace_of_a_payment_over_two_tranches_has_two_legs(engine: Engine) -> None:
    with session_scope() as session:
        shop = make_merchant(session)
        soon = credit(session, "H1", 10_000, expires_at=NOW + dt.timedelta(days=3), key="soon")
        late = credit(session, "H1", 10_000, key="late")
        paid = payments.pay(
            session,
            merchant_bin=shop.bin,
            idempotency_key="p",
            household_id="H1",
            amount_tiyn=15_000,
            now=NOW,
        )
        path = reports.trace(session, paid.id)
        assert [(leg["tranche"]["id"], leg["net_drawn_tiyn"]) for leg in path["legs"]] == [
            (soon.id, 10_000),
            (late.id, 5_000),
        ]
        with pytest.raises(NotFoundError):
            reports.trace(session, 999_999)


def test_report_and_trace_routes(engine: Engine) -> None:
    with session_scope() as session:
        made = scenario(session)
        _, officer = make_officer(session, "program_officer", ("all",))
        _, worker = make_officer(session, "social_worker", ("75",))
    client = TestClient(create_app())
    report = client.get("/api/v1/wallet/programs/food_voucher/report", headers=bearer(officer))
    assert report.status_code == 200, report.text
    assert report.json()["spent_by_category"] == {"5411": 25_000, "5499": 20_000}
    assert (
        client.get("/api/v1/wallet/programs/nope/report", headers=bearer(officer)).status_code
        == 404
    )
    assert (
        client.get(
            "/api/v1/wallet/programs/food_voucher/report", headers=bearer(worker)
        ).status_code
        == 403
    )
    url = f"/api/v1/wallet/payments/{made['at_shop']}/trace"
    assert client.get(url, headers=bearer(officer)).status_code == 403  # no purpose
    traced = client.get(url, params={"purpose": "case:2026-77"}, headers=bearer(officer))
    assert traced.status_code == 200, traced.text
    assert traced.json()["legs"][0]["net_drawn_tiyn"] == 25_000
    missing = client.get(
        "/api/v1/wallet/payments/999999/trace", headers={**bearer(officer), "X-Purpose": "case:1"}
    )
    assert missing.status_code == 404
    with session_scope() as session:
        events = session.scalars(
            select(AccessEvent).where(AccessEvent.action == "wallet.trace")
        ).all()
        assert [(e.household_id, e.categories, e.purpose_reference, e.outcome) for e in events] == [
            ("H1", ["payments"], "2026-77", "allowed")
        ]
