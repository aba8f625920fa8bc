"""``qamqor accounts`` and ``qamqor privacy`` on both databases."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from qamqor.cli import app
from qamqor.kit.db import session_scope
from qamqor.web.app import create_app
from tests.privacy.builders import BIN, fast_hashing, make_household
from tests.registry.builders import valid_iin

pytestmark = pytest.mark.usefixtures("fast_hashing")
__all__ = ["fast_hashing"]
runner = CliRunner()


def test_create_accounts_and_list_them(engine: Engine) -> None:
    made = runner.invoke(
        app,
        [
            "accounts",
            "create-officer",
            "a.nurlanova",
            "--role",
            "social_worker",
            "--institution",
            "Алматы қ. ЖҚО",
            "--region",
            "75",
            "--password",
            "a long enough password",
        ],
    )
    assert made.exit_code == 0, made.output
    citizen = runner.invoke(app, ["accounts", "create-citizen", valid_iin(900)])
    assert citizen.exit_code == 0 and "password (shown once):" in citizen.output
    client = runner.invoke(app, ["accounts", "create-client", "shop", "--bin", BIN])
    assert client.exit_code == 0
    token = client.output.split("SHA-256): ", 1)[1].split()[0]
    me = TestClient(create_app()).get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["role"] == "merchant_client" and me.json()["bin"] == BIN
    gateway = runner.invoke(app, ["accounts", "create-client", "sms-gateway", "--gateway"])
    assert gateway.exit_code == 0 and "gateway_client sms-gateway created" in gateway.output
    both = runner.invoke(app, ["accounts", "create-client", "x", "--gateway", "--bin", BIN])
    assert both.exit_code == 1 and "exactly one of" in both.output
    listing = runner.invoke(app, ["accounts", "list", "--json"])
    logins = {a["login"]: a for a in json.loads(listing.output)}
    assert set(logins) == {"a.nurlanova", valid_iin(900), "shop", "sms-gateway"}
    assert logins["sms-gateway"]["kind"] == "gateway_client"
    assert logins["a.nurlanova"]["regions"] == "75"
    assert token not in listing.output
    assert "Accounts" in runner.invoke(app, ["accounts", "list"]).output
    bad = runner.invoke(
        app,
        [
            "accounts",
            "create-officer",
            "x.y",
            "--role",
            "king",
            "--institution",
            "i",
            "--region",
            "75",
        ],
    )
    assert bad.exit_code == 1 and "unknown role" in bad.output
    assert runner.invoke(app, ["accounts", "unlock", "a.nurlanova"]).exit_code == 0


def test_seed_demo_uses_a_real_household_member_and_every_role(engine: Engine) -> None:
    with session_scope() as session:
        head, _ = make_household(session, "DEMO-1", "19", 950)
    first = runner.invoke(app, ["accounts", "seed-demo", "--json"])
    assert first.exit_code == 0, first.output
    accounts = {a["role"]: a for a in json.loads(first.output)}
    assert set(accounts) == {
        "citizen",
        "social_worker",
        "program_officer",
        "analyst",
        "dq_steward",
        "auditor",
        "admin",
        "registry_client",
        "merchant_client",
        "gateway_client",
    }
    assert accounts["citizen"]["login"] == head
    assert accounts["gateway_client"]["scope"] == "SMS replies"
    assert accounts["social_worker"]["scope"] == "region 19"
    client = TestClient(create_app())
    signed_in = client.post(
        "/api/v1/auth/token",
        json={"login": accounts["citizen"]["login"], "password": accounts["citizen"]["secret"]},
    )
    me = client.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    ).json()
    assert me["households"] == ["DEMO-1"]
    # running it again resets the secrets: the old registry token stops working
    again = {
        a["role"]: a
        for a in json.loads(runner.invoke(app, ["accounts", "seed-demo", "--json"]).output)
    }
    old = {"Authorization": f"Bearer {accounts['registry_client']['secret']}"}
    new = {"Authorization": f"Bearer {again['registry_client']['secret']}"}
    assert client.get("/api/v1/me", headers=old).status_code == 401
    assert client.get("/api/v1/me", headers=new).json()["source"] == "household"
    table = runner.invoke(app, ["accounts", "seed-demo"])
    assert "demo.auditor" in table.output


def test_privacy_alerts_and_policy_commands(engine: Engine) -> None:
    empty = runner.invoke(app, ["privacy", "alerts", "--json"])
    assert empty.exit_code == 0 and json.loads(empty.output) == {"total": 0, "items": []}
    assert "Access alerts" in runner.invoke(app, ["privacy", "alerts"]).output
    rows = json.loads(runner.invoke(app, ["privacy", "policy", "--json"]).output)
    assert {"role": "auditor", "action": "audit.read_alerts"}.items() <= next(
        r for r in rows if r["role"] == "auditor" and r["action"] == "audit.read_alerts"
    ).items()
    printed = runner.invoke(app, ["privacy", "policy"], env={"COLUMNS": "200"}).output
    assert "household.read_profile" in printed
