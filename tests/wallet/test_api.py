"""The wallet's API: payment codes, POS payments and receipts, refunds, the citizen's wallet."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.kit.i18n import translate
from qamqor.privacy import identities
from qamqor.privacy.models import AccessEvent
from qamqor.proactive.notify import local_day
from qamqor.rules.explain import format_tenge
from qamqor.wallet import codes, ledger, merchants, settlement, tranches
from qamqor.wallet.models import Payment, PaymentCode
from qamqor.web.app import create_app
from tests.privacy.builders import bearer, fast_hashing, make_citizen, make_household
from tests.registry.builders import valid_iin
from tests.wallet.builders import make_bin, make_merchant

__all__ = ["fast_hashing"]
pytestmark = pytest.mark.usefixtures("fast_hashing")

HOME, OTHER = "HW-1", "HW-2"


@dataclass
class World:
    client: TestClient
    citizen: dict[str, str]  # head of HOME
    spouse: dict[str, str]
    outsider: dict[str, str]  # head of OTHER
    shop: dict[str, str]  # a grocery (food)
    pharmacy: dict[str, str]  # a pharmacy (medicine)
    shop_bin: str
    pharmacy_bin: str
    food_tranche: int
    medicine_tranche: int


def _client_token(session: Any, name: str, bin_: str) -> dict[str, str]:
    _, token = identities.create_client(session, name=name, display_name=name, bin=bin_)
    return bearer(token)


def _open(session: Any, household: str, purpose: str, program: str, amount: int, **kw: Any) -> int:
    now = dt.datetime.now(dt.UTC)
    return tranches.open_tranche(
        session,
        household_id=household,
        program_id=program,
        purpose=purpose,
        amount_tiyn=amount,
        period_start=now.date(),
        period_end=now.date() + dt.timedelta(days=20),
        expires_at=kw.pop("expires_at", now + dt.timedelta(days=20)),
        now=now - dt.timedelta(minutes=1),
        key=f"api-test:{household}:{purpose}:{amount}",
        **kw,
    ).id


@pytest.fixture
def world(engine: Engine) -> World:
    with session_scope() as session:
        head, spouse = make_household(session, HOME, "75", 800)
        outsider, _ = make_household(session, OTHER, "71", 810)
        citizen = bearer(make_citizen(session, head)[1])
        spouse_token = bearer(make_citizen(session, spouse)[1])
        other = bearer(make_citizen(session, outsider)[1])
        shop = make_merchant(session, 1, category="5411", region="75")
        pharmacy = make_merchant(session, 2, category="5912", region="75")
        shop_token = _client_token(session, "shop-1", shop.bin)
        pharmacy_token = _client_token(session, "pharmacy-1", pharmacy.bin)
        food = _open(session, HOME, "food", "food_voucher", 100_000)
        medicine = _open(session, OTHER, "medicine", "disabled_child", 50_000)
        return World(
            TestClient(create_app()),
            citizen,
            spouse_token,
            other,
            shop_token,
            pharmacy_token,
            shop.bin,
            pharmacy.bin,
            food,
            medicine,
        )


def new_code(w: World, who: dict[str, str] | None = None) -> str:
    made = w.client.post("/api/v1/me/wallet/payment-codes", headers=who or w.citizen)
    assert made.status_code == 201, made.text
    return str(made.json()["code"])


def pay(
    w: World, code: str, amount: int, key: str, who: dict[str, str] | None = None, **extra: Any
) -> Any:
    headers = {**(who or w.shop), **extra.pop("headers", {})}
    body = {"idempotency_key": key, "payment_code": code, "amount_tiyn": amount, **extra}
    return w.client.post("/api/v1/wallet/payments", json=body, headers=headers)


def access_events(action: str) -> list[AccessEvent]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(AccessEvent).where(AccessEvent.action == action).order_by(AccessEvent.id)
            )
        )


def test_a_citizen_makes_a_code_and_the_shop_charges_it(world: World) -> None:
    w = world
    made = w.client.post("/api/v1/me/wallet/payment-codes", headers=w.citizen)
    assert made.status_code == 201
    body = made.json()
    code = body["code"]
    assert len(code) == 12 and body["digits"] == codes.grouped(code)
    assert body["qr_payload"] == f"QAMQOR-PAY:{code}" and body["household_id"] == HOME
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert dt.timedelta(minutes=4) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=5)

    paid = w.client.post(
        "/api/v1/wallet/payments",
        json={
            "idempotency_key": "till-1",
            "payment_code": body["qr_payload"],
            "amount_tiyn": 30_050,
        },
        headers={**w.shop, "Accept-Language": "ru"},
    )
    assert paid.status_code == 201, paid.text
    receipt = paid.json()
    assert receipt["status"] == "posted" and receipt["status_text"] == "проведён"
    assert (receipt["amount_tiyn"], receipt["amount"]) == (30_050, "300,50 ₸")
    assert (receipt["merchant_bin"], receipt["merchant_name"]) == (w.shop_bin, "Shop 1")
    assert receipt["category"] == "5411"
    assert receipt["category_name"] == "Продуктовые магазины, супермаркеты"
    assert receipt["draws"] == [
        {
            "tranche_id": w.food_tranche,
            "purpose": "food",
            "purpose_name": "Питание",
            "program_id": "food_voucher",
            "program_name": "Продуктовый ваучер семьям, получающим АСП",
            "amount_tiyn": 30_050,
        }
    ]
    assert receipt["balance_tiyn"] == 69_950 and receipt["lang"] == "ru"
    # the merchant saw the household's balance: an access event, the merchant the principal
    (event,) = access_events("wallet.charge")
    assert (event.household_id, event.role, event.outcome) == (HOME, "merchant_client", "allowed")
    assert event.categories == ["payments"] and event.audit_index is not None
    with session_scope() as session:
        stored = session.scalars(select(PaymentCode)).one()
        assert stored.payment_id == receipt["payment_id"] and stored.used_at is not None
        payment = session.get(Payment, receipt["payment_id"])
        assert payment is not None and payment.payer_iin is not None


def test_a_repeat_returns_the_first_receipt_and_charges_once(world: World) -> None:
    w = world
    code = new_code(w)
    first = pay(w, code, 20_000, "k-1")
    assert first.status_code == 201
    again = pay(w, code, 20_000, "k-1")
    assert again.status_code == 200
    assert again.json()["payment_id"] == first.json()["payment_id"]
    assert again.json()["draws"] == first.json()["draws"]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == 1
        wallet = ledger.account_by_code(session, ledger.wallet_code(HOME, "food"))
        assert wallet is not None and wallet.balance_tiyn == 80_000
    other_amount = pay(w, code, 20_001, "k-1")
    assert other_amount.status_code == 409
    assert other_amount.json()["reason"] == "idempotency_conflict"
    other_code = pay(w, new_code(w), 20_000, "k-1")
    assert other_code.json()["reason"] == "idempotency_conflict"
    reused = pay(w, code, 1_000, "k-2", headers={"Accept-Language": "kk"})
    assert reused.status_code == 409
    assert reused.json() == {
        "reason": "code_used",
        "message": translate("wallet.refusal.code_used", "kk"),
    }


def test_refusals_leave_the_code_usable(world: World) -> None:
    w = world
    code = new_code(w)
    wrong_shop = pay(w, code, 1_000, "p-1", who=w.pharmacy, headers={"Accept-Language": "ru"})
    assert wrong_shop.status_code == 409
    assert wrong_shop.json() == {
        "reason": "purpose_not_allowed",
        "message": translate("wallet.refusal.purpose_not_allowed", "ru"),
    }
    too_much = w.client.post(
        "/api/v1/wallet/payments?lang=en",
        json={"idempotency_key": "s-1", "payment_code": code, "amount_tiyn": 100_001},
        headers=w.shop,
    )
    assert too_much.status_code == 409
    assert too_much.json()["reason"] == "insufficient_balance"
    assert too_much.json()["message"] == (
        f"Not enough earmarked money for this merchant: {format_tenge(100_000, 'en')} available."
    )
    zero = pay(w, code, 0, "s-2")
    assert (zero.status_code, zero.json()["reason"]) == (422, "invalid_amount")
    # none of these used the code
    assert pay(w, code, 100_000, "s-3").status_code == 201


def test_codes_that_cannot_pay(world: World) -> None:
    w = world
    unknown = pay(w, "000000000001", 1_000, "u-1")
    assert (unknown.status_code, unknown.json()["reason"]) == (422, "code_invalid")
    with session_scope() as session:
        code, _ = codes.create_code(
            session, valid_iin(800), HOME, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
        )
    expired = pay(w, code, 1_000, "u-2")
    assert (expired.status_code, expired.json()["reason"]) == (409, "code_expired")
    with session_scope() as session:
        merchants.set_status(
            session, w.shop_bin, "suspended", reason="audit", now=dt.datetime.now(dt.UTC)
        )
    suspended = pay(w, new_code(w), 1_000, "u-3")
    assert (suspended.status_code, suspended.json()["reason"]) == (409, "merchant_suspended")
    with session_scope() as session:
        unregistered = _client_token(session, "not-a-merchant", make_bin(50))
    nobody = pay(w, new_code(w), 1_000, "u-4", who=unregistered)
    assert (nobody.status_code, nobody.json()["reason"]) == (404, "unknown_merchant")


def test_only_merchants_charge_and_citizens_make_codes(world: World) -> None:
    w = world
    code = new_code(w)
    as_citizen = pay(w, code, 1_000, "x", who=w.citizen)
    assert as_citizen.status_code == 403
    as_shop = w.client.post("/api/v1/me/wallet/payment-codes", headers=w.shop)
    assert as_shop.status_code == 403
    anonymous = w.client.post(
        "/api/v1/wallet/payments",
        json={"idempotency_key": "x", "payment_code": code, "amount_tiyn": 1},
    )
    assert anonymous.status_code == 401


def test_authorise_then_capture_or_void(world: World) -> None:
    w = world
    held = pay(w, new_code(w), 40_000, "a-1", capture=False)
    assert held.status_code == 201
    receipt = held.json()
    assert receipt["status"] == "pending" and receipt["authorised_until"] is not None
    assert receipt["balance_tiyn"] == 60_000
    pid = receipt["payment_id"]
    captured = w.client.post(f"/api/v1/wallet/payments/{pid}/capture", headers=w.shop)
    assert captured.status_code == 200 and captured.json()["status"] == "posted"
    assert captured.json()["authorised_until"] is None
    twice = w.client.post(f"/api/v1/wallet/payments/{pid}/capture", headers=w.shop)
    assert twice.status_code == 200 and twice.json()["status"] == "posted"
    late_void = w.client.post(f"/api/v1/wallet/payments/{pid}/void", headers=w.shop)
    assert (late_void.status_code, late_void.json()["reason"]) == (409, "not_pending")

    second = pay(w, new_code(w), 10_000, "a-2", capture=False).json()
    voided = w.client.post(f"/api/v1/wallet/payments/{second['payment_id']}/void", headers=w.shop)
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    assert voided.json()["balance_tiyn"] == 60_000
    foreign = w.client.post(f"/api/v1/wallet/payments/{pid}/capture", headers=w.pharmacy)
    assert (foreign.status_code, foreign.json()["reason"]) == (404, "unknown_payment")


def test_a_receipt_is_the_merchants_own_and_hides_the_balance_after_the_code(
    world: World,
) -> None:
    w = world
    pid = pay(w, new_code(w), 25_000, "r-1").json()["payment_id"]
    mine = w.client.get(f"/api/v1/wallet/payments/{pid}", headers=w.shop)
    assert mine.status_code == 200 and mine.json()["balance_tiyn"] == 75_000
    assert len(access_events("wallet.charge")) == 2
    theirs = w.client.get(f"/api/v1/wallet/payments/{pid}", headers=w.pharmacy)
    assert theirs.status_code == 404 and theirs.json()["reason"] == "unknown_payment"
    missing = w.client.get("/api/v1/wallet/payments/999999", headers=w.shop)
    assert missing.status_code == 404
    with session_scope() as session:
        session.execute(
            update(PaymentCode).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    later = w.client.get(f"/api/v1/wallet/payments/{pid}", headers=w.shop)
    assert later.status_code == 200
    assert later.json()["balance_tiyn"] is None and later.json()["balance"] is None
    assert later.json()["amount_tiyn"] == 25_000
    assert len(access_events("wallet.charge")) == 2  # nothing personal shown: nothing recorded


def test_refunds_with_a_receipt_and_their_idempotency(world: World) -> None:
    w = world
    pid = pay(w, new_code(w), 30_000, "f-1").json()["payment_id"]
    url = f"/api/v1/wallet/payments/{pid}/refunds"
    body = {"idempotency_key": "ref-1", "amount_tiyn": 12_000, "reason": "returned milk"}
    first = w.client.post(url, json=body, headers=w.shop)
    assert first.status_code == 201, first.text
    refund = first.json()
    assert (refund["amount_tiyn"], refund["payment_refunded_tiyn"]) == (12_000, 12_000)
    assert refund["reason"] == "returned milk" and refund["merchant_name"] == "Shop 1"
    assert refund["parts"] == [
        {
            "tranche_id": w.food_tranche,
            "purpose": "food",
            "purpose_name": "Food",
            "program_id": "food_voucher",
            "program_name": "Food voucher for ASP families",
            "amount_tiyn": 12_000,
            "returned_to_program": False,
        }
    ]
    again = w.client.post(url, json=body, headers=w.shop)
    assert again.status_code == 200 and again.json()["refund_id"] == refund["refund_id"]
    too_much = w.client.post(
        url, json={"idempotency_key": "ref-2", "amount_tiyn": 18_001}, headers=w.shop
    )
    assert too_much.status_code == 409
    assert too_much.json()["reason"] == "refund_exceeds_payment"
    assert format_tenge(18_000, "en") in too_much.json()["message"]
    foreign = w.client.post(url, json={**body, "idempotency_key": "x"}, headers=w.pharmacy)
    assert foreign.status_code == 404
    with session_scope() as session:
        wallet = ledger.account_by_code(session, ledger.wallet_code(HOME, "food"))
        assert wallet is not None and wallet.balance_tiyn == 82_000


def test_the_citizens_wallet_balances_and_activation(world: World) -> None:
    w = world
    with session_scope() as session:
        voucher = _open(session, HOME, "food", "food_voucher", 40_000, activation_required=True)
    seen = w.client.get("/api/v1/me/wallet", params={"lang": "kk"}, headers=w.citizen)
    assert seen.status_code == 200
    wallet = seen.json()
    assert wallet["household_id"] == HOME and wallet["lang"] == "kk"
    assert wallet["balances"] == [
        {
            "purpose": "food",
            "purpose_name": "Азық-түлік",
            "available_tiyn": 100_000,
            "available": format_tenge(100_000, "kk"),
            "awaiting_activation_tiyn": 40_000,
            "pending_tiyn": 0,
        }
    ]
    states = {t["id"]: (t["status"], t["activation_required"]) for t in wallet["tranches"]}
    assert states == {w.food_tranche: ("usable", False), voucher: ("needs_activation", True)}
    assert {t["program_name"] for t in wallet["tranches"]} == {
        "АӘК алатын отбасыларға азық-түлік ваучері"
    }
    # the spouse reads the same household's wallet; each read is an access event
    assert w.client.get("/api/v1/me/wallet", headers=w.spouse).json()["household_id"] == HOME
    assert [e.household_id for e in access_events("wallet.read")] == [HOME, HOME]

    url = f"/api/v1/me/wallet/tranches/{voucher}/activate"
    assert w.client.post(url, headers=w.outsider).json()["reason"] == "unknown_tranche"
    done = w.client.post(url, headers=w.citizen)
    assert done.status_code == 200 and done.json()["status"] == "usable"
    assert done.json()["activated_at"] is not None
    assert w.client.post(url, headers=w.spouse).status_code == 200  # idempotent
    plain = w.client.post(
        f"/api/v1/me/wallet/tranches/{w.food_tranche}/activate", headers=w.citizen
    )
    assert (plain.status_code, plain.json()["reason"]) == (409, "activation_not_needed")
    after = w.client.get("/api/v1/me/wallet", headers=w.citizen).json()
    assert after["balances"][0]["available_tiyn"] == 140_000
    assert after["balances"][0]["awaiting_activation_tiyn"] == 0
    # the outsider sees their own household only
    theirs = w.client.get("/api/v1/me/wallet", headers=w.outsider).json()
    assert theirs["household_id"] == OTHER
    assert [b["purpose"] for b in theirs["balances"]] == ["medicine"]
    asked = w.client.get("/api/v1/me/wallet", params={"household_id": HOME}, headers=w.outsider)
    assert asked.status_code == 403


def test_a_lapsed_voucher_cannot_be_activated(world: World) -> None:
    w = world
    with session_scope() as session:
        voucher = _open(
            session,
            HOME,
            "food",
            "food_voucher",
            5_000,
            activation_required=True,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1),
        )
        tranche = session.get(tranches.Tranche, voucher)
        assert tranche is not None
        tranche.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    lapsed = w.client.post(f"/api/v1/me/wallet/tranches/{voucher}/activate", headers=w.citizen)
    assert (lapsed.status_code, lapsed.json()["reason"]) == (409, "voucher_lapsed")


def test_transactions_newest_first_with_pages(world: World) -> None:
    w = world
    pid = pay(w, new_code(w), 30_000, "t-1").json()["payment_id"]
    w.client.post(
        f"/api/v1/wallet/payments/{pid}/refunds",
        json={"idempotency_key": "t-r", "amount_tiyn": 5_000},
        headers=w.shop,
    )
    listing = w.client.get("/api/v1/me/wallet/transactions", headers=w.citizen)
    assert listing.status_code == 200
    page = listing.json()
    assert page["total"] == 3
    assert [(i["kind"], i["direction"], i["amount_tiyn"]) for i in page["items"]] == [
        ("refund", "in", 5_000),
        ("payment", "out", 30_000),
        ("credit", "in", 100_000),
    ]
    payment = page["items"][1]
    assert (payment["merchant_name"], payment["status"], payment["payment_id"]) == (
        "Shop 1",
        "posted",
        pid,
    )
    assert payment["description"] == "Payment: Shop 1 — paid"
    assert page["items"][2]["description"] == "Credit: Food voucher for ASP families (Food)"
    second = w.client.get(
        "/api/v1/me/wallet/transactions", params={"limit": 1, "offset": 1}, headers=w.citizen
    ).json()
    assert [i["kind"] for i in second["items"]] == ["payment"] and second["total"] == 3


def test_a_swept_tranche_shows_as_a_return(world: World) -> None:
    w = world
    with session_scope() as session:
        tranche = session.get(tranches.Tranche, w.food_tranche)
        assert tranche is not None
        tranches.lock_household(session, HOME, ["food"])
        tranches.close(session, tranche, "expired", dt.datetime.now(dt.UTC))
    page = w.client.get("/api/v1/me/wallet/transactions?lang=ru", headers=w.citizen).json()
    assert [(i["kind"], i["amount_tiyn"]) for i in page["items"]] == [
        ("return", 100_000),
        ("credit", 100_000),
    ]
    assert page["items"][0]["description"] == (
        "Возвращено в программу: Продуктовый ваучер семьям, получающим АСП (срок истёк)"
    )
    assert w.client.get("/api/v1/me/wallet", headers=w.citizen).json()["tranches"] == []


def test_a_citizen_without_a_household(world: World) -> None:
    w = world
    with session_scope() as session:
        lonely = bearer(make_citizen(session, valid_iin(900))[1])
    made = w.client.post("/api/v1/me/wallet/payment-codes", headers=lonely)
    assert (made.status_code, made.json()["reason"]) == (404, "no_household")
    assert w.client.get("/api/v1/me/wallet", headers=lonely).status_code == 404


def test_settlements_by_day_for_the_merchant(world: World) -> None:
    w = world
    pay(w, new_code(w), 12_345, "s-1")
    now = dt.datetime.now(dt.UTC)
    day = local_day(now)  # today, local time: the payment was made before its end
    with session_scope() as session:
        done = settlement.settle(
            session, now=now + dt.timedelta(days=2), day=day, merchant_bin=w.shop_bin
        )
        assert [d.amount_tiyn for d in done] == [12_345]
    listing = w.client.get("/api/v1/wallet/settlements", headers=w.shop)
    assert listing.status_code == 200
    assert listing.json()["total_tiyn"] == 12_345
    assert [(d["day"], d["amount_tiyn"]) for d in listing.json()["days"]] == [
        (day.isoformat(), 12_345)
    ]
    assert w.client.get("/api/v1/wallet/settlements", headers=w.pharmacy).json()["days"] == []
    assert w.client.get("/api/v1/wallet/settlements", headers=w.citizen).status_code == 403


def test_a_request_sent_twice_at_once_charges_once(world: World) -> None:
    """The till retries before the first answer: one 201, one 200 with the same receipt."""
    w = world
    code = new_code(w)
    barrier = threading.Barrier(2)
    answers: list[Any] = []
    pair = [TestClient(create_app()), TestClient(create_app())]
    for client in pair:  # the app builds its routes' models on the first request: not in threads
        assert client.post("/api/v1/wallet/payments", json={}, headers=w.shop).status_code == 422
    clients = iter(pair)

    def send() -> None:
        client = next(clients)
        barrier.wait()
        answers.append(
            client.post(
                "/api/v1/wallet/payments",
                json={"idempotency_key": "twin", "payment_code": code, "amount_tiyn": 7_000},
                headers=w.shop,
            )
        )

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
    assert len({a.json()["payment_id"] for a in answers}) == 1
    with session_scope() as session:
        wallet = ledger.account_by_code(session, ledger.wallet_code(HOME, "food"))
        assert wallet is not None and wallet.balance_tiyn == 93_000


def test_the_citizens_access_log_names_the_shop_that_read_the_balance(world: World) -> None:
    w = world
    assert pay(w, new_code(w), 1_000, "log-1").status_code == 201
    log = w.client.get("/api/v1/me/access-log", headers=w.citizen)
    assert log.status_code == 200, log.text
    (shop_read,) = [e for e in log.json()["items"] if e["action"] == "wallet.charge"]
    assert shop_read["who"] == "merchant_client"
    assert shop_read["institution"] == f"shop-1 (BIN {w.shop_bin})"
    assert shop_read["officer"] is None  # an organisation, not a person
