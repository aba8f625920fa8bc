"""The merchant registry: `qamqor wallet merchants` and the admin API."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from qamqor.cli import app
from qamqor.kit.db import session_scope
from qamqor.wallet.models import Merchant
from qamqor.web.app import create_app
from tests.privacy.builders import fast_hashing, make_officer
from tests.wallet.builders import make_bin

__all__ = ["fast_hashing"]
pytestmark = pytest.mark.usefixtures("fast_hashing")
runner = CliRunner()


def wallet(*args: str) -> str:
    result = runner.invoke(app, ["wallet", "merchants", *args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_add_list_suspend_activate(engine: Engine) -> None:
    grocery, pharmacy = make_bin(1), make_bin(2)
    added = wallet("add", grocery, "--name", "Magnum", "--category", "5411", "--region", "75")
    assert f"merchant {grocery} (Magnum) active; may take: cash, food" in added
    assert f"create-client <name> --bin {grocery}" in added
    wallet("add", pharmacy, "--name", "Europharma", "--category", "5912", "--region", "71")
    suspended = wallet("suspend", pharmacy, "--reason", "licence revoked")
    assert f"merchant {pharmacy} suspended" in suspended
    rows = [json.loads(line) for line in wallet("list", "--json").splitlines()]
    assert [(r["bin"], r["status"], r["status_reason"]) for r in rows] == sorted(
        [(grocery, "active", None), (pharmacy, "suspended", "licence revoked")]
    )
    only = [
        json.loads(line) for line in wallet("list", "--status", "suspended", "--json").splitlines()
    ]
    assert [r["bin"] for r in only] == [pharmacy]
    paged = wallet("list", "--limit", "1", "--offset", "1", "--json").splitlines()
    assert len(paged) == 1
    assert "Europharma" in wallet("list")
    wallet("activate", pharmacy)
    with session_scope() as session:
        merchant = session.get(Merchant, pharmacy)
        assert merchant is not None and (merchant.status, merchant.status_reason) == (
            "active",
            None,
        )


def test_bad_merchants_are_refused(engine: Engine) -> None:
    bad_bin = make_bin(3)[:-1] + str((int(make_bin(3)[-1]) + 1) % 10)
    refused = runner.invoke(
        app,
        [
            "wallet",
            "merchants",
            "add",
            bad_bin,
            "--name",
            "X",
            "--category",
            "5411",
            "--region",
            "75",
        ],
    )
    assert refused.exit_code == 1 and "not a valid BIN" in refused.output
    unknown = runner.invoke(
        app,
        [
            "wallet",
            "merchants",
            "add",
            make_bin(3),
            "--name",
            "X",
            "--category",
            "9999",
            "--region",
            "75",
        ],
    )
    assert unknown.exit_code == 1 and "unknown merchant category '9999'" in unknown.output
    missing = runner.invoke(app, ["wallet", "merchants", "suspend", make_bin(4), "--reason", "x"])
    assert missing.exit_code == 1 and "no merchant" in missing.output


def test_categories_in_each_language() -> None:
    english = wallet("categories")
    assert (
        "5912" in english
        and "Drug stores and pharmacies" in english
        and "medicine, cash" in english
    )
    assert "Аптеки" in wallet("categories", "--lang", "ru")
    assert "Дәріханалар" in wallet("categories", "--lang", "kk")


def test_the_admin_api(engine: Engine) -> None:
    with session_scope() as session:
        _, token = make_officer(session, "admin", ("all",))
        _, analyst = make_officer(session, "analyst", ("all",))
    admin = {"Authorization": f"Bearer {token}"}
    client = TestClient(create_app())
    shop = make_bin(7)
    body = {"bin": shop, "name": "Small", "category": "5411", "region_code": "75"}
    made = client.post("/api/v1/wallet/merchants", json=body, headers=admin)
    assert made.status_code == 200, made.text
    assert made.json()["status"] == "active" and made.json()["purposes"] == ["cash", "food"]
    assert made.json()["category_name"] == "Grocery stores, supermarkets"
    renamed = client.post(
        "/api/v1/wallet/merchants?lang=kk", json={**body, "name": "Small Market"}, headers=admin
    )
    assert renamed.json()["name"] == "Small Market"
    assert renamed.json()["category_name"] == "Азық-түлік дүкендері, супермаркеттер"
    bad = client.post("/api/v1/wallet/merchants", json={**body, "category": "9999"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["reason"] == "merchant_invalid"
    assert "unknown merchant category" in bad.json()["message"]

    url = f"/api/v1/wallet/merchants/{shop}/status"
    no_reason = client.post(url, json={"status": "suspended"}, headers=admin)
    assert (no_reason.status_code, no_reason.json()["reason"]) == (422, "merchant_invalid")
    suspended = client.post(
        url, json={"status": "suspended", "reason": "fraud check"}, headers=admin
    )
    assert suspended.status_code == 200
    assert (suspended.json()["status"], suspended.json()["status_reason"]) == (
        "suspended",
        "fraud check",
    )
    listing = client.get("/api/v1/wallet/merchants", params={"status": "suspended"}, headers=admin)
    assert [m["bin"] for m in listing.json()["merchants"]] == [shop]
    assert (
        client.get("/api/v1/wallet/merchants", params={"status": "active"}, headers=admin).json()[
            "merchants"
        ]
        == []
    )
    unknown = client.post(
        f"/api/v1/wallet/merchants/{make_bin(8)}/status", json={"status": "active"}, headers=admin
    )
    assert (unknown.status_code, unknown.json()["reason"]) == (404, "unknown_merchant")
    assert (
        client.get(
            "/api/v1/wallet/merchants", headers={"Authorization": f"Bearer {analyst}"}
        ).status_code
        == 403
    )
