"""Sign-in, lockout, sessions and tokens, on both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.privacy import identities
from qamqor.privacy.identities import AccountError, AuthenticationError
from qamqor.privacy.models import Account, Credential
from qamqor.web.app import create_app
from tests.privacy.builders import BIN, PASSWORD, bearer, fast_hashing, make_citizen, make_officer
from tests.registry.builders import valid_iin

pytestmark = pytest.mark.usefixtures("fast_hashing")
__all__ = ["fast_hashing"]


@pytest.fixture
def client(engine: Engine) -> TestClient:
    return TestClient(create_app())


def test_password_is_stored_as_argon2id_and_verifies(engine: Engine) -> None:
    with session_scope() as session:
        make_officer(session, "social_worker", login="a.nurlanova")
    with session_scope() as session:
        stored = session.scalars(select(Account.password_hash)).one()
        assert stored is not None and stored.startswith("$argon2id$")
        assert PASSWORD not in stored
        assert identities.authenticate(session, "a.nurlanova", PASSWORD).login == "a.nurlanova"


def test_unknown_login_and_wrong_password_look_the_same(
    client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope() as session:
        make_citizen(session, valid_iin(1))
    verified: list[str] = []
    real = identities._verify
    monkeypatch.setattr(
        identities, "_verify", lambda stored, pw: verified.append(stored) or real(stored, pw)
    )
    wrong = client.post("/api/v1/auth/login", json={"login": valid_iin(1), "password": "x" * 12})
    unknown = client.post("/api/v1/auth/login", json={"login": valid_iin(2), "password": "x" * 12})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    # both paths paid for one Argon2 verification: the unknown login against the dummy hash
    assert len(verified) == 2 and verified[1] == identities.dummy_hash()


def test_lockout_after_repeated_failures_refuses_even_the_right_password(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QAMQOR_LOGIN_MAX_ATTEMPTS", "3")
    identities.get_settings.cache_clear()
    with session_scope() as session:
        make_officer(session, "admin", ("all",), login="root.admin")
    for _ in range(3):
        with session_scope() as session, pytest.raises(AuthenticationError):
            identities.authenticate(session, "root.admin", "wrong password!")
    with session_scope() as session:
        account = session.scalars(select(Account)).one()
        assert account.locked_until is not None
        assert account.locked_until > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=14)
    with session_scope() as session, pytest.raises(AuthenticationError) as locked:
        identities.authenticate(session, "root.admin", PASSWORD)
    assert locked.value.key == "auth.failed"  # the same message: no hint the account exists
    with session_scope() as session:
        identities.unlock(session, "root.admin")
    with session_scope() as session:
        assert identities.authenticate(session, "root.admin", PASSWORD).failed_logins == 0


def test_lockout_expires(engine: Engine) -> None:
    with session_scope() as session:
        account, _ = make_officer(session, "analyst", ("all",))
        account.locked_until = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with session_scope() as session:
        assert identities.authenticate(session, account.login, PASSWORD).id == account.id


def test_failed_logins_are_counted_through_the_api(client: TestClient, engine: Engine) -> None:
    with session_scope() as session:
        make_citizen(session, valid_iin(3))
    client.post("/api/v1/auth/login", json={"login": valid_iin(3), "password": "nope nope nope"})
    with session_scope() as session:
        assert session.scalars(select(Account.failed_logins)).one() == 1


def test_login_sets_a_hardened_session_cookie_and_logout_revokes_it(
    client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_scope() as session:
        make_citizen(session, valid_iin(4))
    response = client.post("/api/v1/auth/login", json={"login": valid_iin(4), "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["kind"] == "citizen"
    cookie = response.headers["set-cookie"]
    assert "qamqor_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    token = response.cookies["qamqor_session"]
    with session_scope() as session:
        stored = session.scalars(select(Credential.token_sha256)).all()
        assert token not in stored and identities.token_hash(token) in stored
    assert client.get("/api/v1/me").json()["login"] == valid_iin(4)
    assert client.post("/api/v1/auth/logout").status_code == 204
    client.cookies.set("qamqor_session", token)  # replaying the revoked session fails
    assert client.get("/api/v1/me").status_code == 401

    monkeypatch.setenv("QAMQOR_SESSION_COOKIE_SECURE", "true")
    identities.get_settings.cache_clear()
    secure = client.post("/api/v1/auth/login", json={"login": valid_iin(4), "password": PASSWORD})
    assert "Secure" in secure.headers["set-cookie"]


def test_bearer_token_from_the_api_works_until_logout(client: TestClient, engine: Engine) -> None:
    with session_scope() as session:
        make_officer(session, "auditor", ("all",), login="the.auditor")
    issued = client.post("/api/v1/auth/token", json={"login": "the.auditor", "password": PASSWORD})
    assert issued.status_code == 200
    body = issued.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    headers = bearer(body["access_token"])
    me = client.get("/api/v1/me", headers=headers).json()
    assert me["role"] == "auditor" and me["regions"] == ["all"]
    assert "audit.read_alerts" in me["actions"] and "household.read_profile" not in me["actions"]
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_expired_and_garbage_tokens_are_refused(client: TestClient, engine: Engine) -> None:
    with session_scope() as session:
        _, token = make_officer(session, "analyst", ("all",))
        session.execute(text("UPDATE privacy_credential SET expires_at = created_at"))
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    refused = client.get("/api/v1/me", headers=bearer("qt_not-a-token"))
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"


def test_client_tokens_are_bound_and_shown_once(engine: Engine) -> None:
    with session_scope() as session:
        _, token = identities.create_client(
            session, name="household-registry", display_name="ЦКС", source="household"
        )
        _, merchant_token = identities.create_client(
            session, name="pharmacy-1", display_name="Аптека", bin=BIN
        )
        gateway, gateway_token = identities.create_client(
            session, name="sms-gateway", display_name="SMS", gateway=True
        )
        assert (gateway.kind, gateway.source, gateway.bin) == ("gateway_client", None, None)
    with session_scope() as session:
        relay = identities.resolve_token(session, gateway_token, ("client",))
        assert relay is not None and relay.role == relay.kind == "gateway_client"
        assert (relay.source, relay.bin, relay.regions) == (None, None, ())
        found = identities.resolve_token(session, token, ("client",))
        assert found is not None and found.role == "registry_client"
        assert found.source == "household"
        other = identities.resolve_token(session, merchant_token, ("client",))
        assert other is not None and other.role == "merchant_client" and other.bin == BIN
        assert identities.resolve_token(session, token, ("session",)) is None
        assert token not in {c.token_sha256 for c in session.scalars(select(Credential))}
    with session_scope() as session, pytest.raises(AccountError):
        identities.create_client(session, name="x", display_name="x", source="nope")
    with session_scope() as session, pytest.raises(AccountError):
        identities.create_client(session, name="y", display_name="y", bin="123456789012")
    for binding in ({}, {"bin": BIN, "gateway": True}, {"source": "household", "bin": BIN}):
        with session_scope() as session, pytest.raises(AccountError, match="exactly one of"):
            identities.create_client(session, name="z", display_name="z", **binding)  # type: ignore[arg-type]


def test_account_checks(engine: Engine) -> None:
    with session_scope() as session, pytest.raises(AccountError, match="role"):
        identities.create_officer(
            session,
            login="x.y",
            password=PASSWORD,
            display_name="x",
            role="superuser",
            institution="i",
            regions=["75"],
        )
    with session_scope() as session, pytest.raises(AccountError, match="KATO"):
        make_officer(session, "social_worker", ("99",))
    with session_scope() as session, pytest.raises(AccountError, match="IIN"):
        identities.create_citizen(session, iin="123456789012", display_name="x", password=PASSWORD)
    with session_scope() as session, pytest.raises(AccountError, match="at least"):
        identities.create_citizen(session, iin=valid_iin(5), display_name="x", password="short")
