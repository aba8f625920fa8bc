"""OpenID Connect sign-in against an in-process fake provider: no network."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.kit.settings import get_settings
from qamqor.privacy import oidc
from qamqor.privacy.models import Account, OidcRequest
from qamqor.privacy.oidc import OidcError, b64url_encode, verify_id_token
from qamqor.web.app import create_app
from tests.registry.builders import valid_iin

ISSUER = "https://idp.example.kz"
CLIENT = "qamqor-portal"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _b64int(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def jwks() -> dict[str, Any]:
    rsa_numbers = RSA_KEY.public_key().public_numbers()
    ec_numbers = EC_KEY.public_key().public_numbers()
    return {
        "keys": [
            {
                "kty": "RSA",
                "kid": "rsa-1",
                "use": "sig",
                "n": _b64int(rsa_numbers.n),
                "e": _b64int(rsa_numbers.e),
            },
            {
                "kty": "EC",
                "kid": "ec-1",
                "crv": "P-256",
                "x": b64url_encode(ec_numbers.x.to_bytes(32, "big")),
                "y": b64url_encode(ec_numbers.y.to_bytes(32, "big")),
            },
        ]
    }


def sign(claims: dict[str, Any], alg: str = "RS256", kid: str | None = None) -> str:
    header = {"alg": alg, "typ": "JWT", "kid": kid or ("rsa-1" if alg == "RS256" else "ec-1")}
    head = b64url_encode(json.dumps(header).encode())
    body = b64url_encode(json.dumps(claims).encode())
    data = f"{head}.{body}".encode()
    if alg == "RS256":
        sig = RSA_KEY.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = decode_dss_signature(EC_KEY.sign(data, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = b""
    return f"{head}.{body}.{b64url_encode(sig)}"


def claims(nonce: str = "n-1", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "subject-1",
        "iat": now,
        "exp": now + 300,
        "nonce": nonce,
        "iin": valid_iin(700),
        "name": "Айгүл Сейітқалиева",
        **extra,
    }


def verify(token: str, nonce: str = "n-1") -> dict[str, Any]:
    return verify_id_token(token, jwks(), issuer=ISSUER, audience=CLIENT, nonce=nonce)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_id_token_signatures_verify(alg: str) -> None:
    assert verify(sign(claims(), alg))["iin"] == valid_iin(700)


# Tokens are made when the test runs, not when it is collected: a collected token with five
# minutes to live expired before its turn came in a long run.
@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: sign(claims(), "none"), "algorithm"),
        (lambda: sign(claims(), "HS256"), "algorithm"),
        (lambda: sign(claims(aud="someone-else")), "not for this client"),
        (lambda: sign(claims(iss="https://evil.example")), "issuer"),
        (lambda: sign(claims(exp=int(time.time()) - 3600)), "expired"),
        (
            lambda: sign(claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 7200)),
            "future",
        ),
        (lambda: sign(claims(nonce="replayed")), "nonce"),
        (lambda: sign(claims(), kid="unknown"), "no signing key"),
        (lambda: sign(claims(), "ES256", kid="rsa-1"), "key type"),
        (lambda: sign(claims(aud=[CLIENT, "other"])), "azp"),
    ],
)
def test_bad_id_tokens_are_refused(make: Callable[[], str], why: str) -> None:
    with pytest.raises(OidcError) as refused:
        verify(make())
    assert why in str(refused.value)


def test_a_tampered_payload_breaks_the_signature() -> None:
    head, body, sig = sign(claims()).split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged["iin"] = valid_iin(701)
    token = f"{head}.{b64url_encode(json.dumps(forged).encode())}.{sig}"
    with pytest.raises(OidcError, match="signature"):
        verify(token)


class FakeProvider:
    """Discovery, JWKS and a token endpoint that checks the client secret and PKCE."""

    def __init__(self) -> None:
        self.codes: dict[str, dict[str, Any]] = {}
        self.iin = valid_iin(700)

    def authorize(self, url: str) -> str:
        """What the browser does at the provider: returns the code for the callback."""
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert query["client_id"] == CLIENT and query["code_challenge_method"] == "S256"
        code = f"code-{len(self.codes)}"
        self.codes[code] = query
        return code

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/authorize",
                    "token_endpoint": f"{ISSUER}/token",
                    "jwks_uri": f"{ISSUER}/jwks",
                },
            )
        if path == "/jwks":
            return httpx.Response(200, json=jwks())
        if path == "/token" and request.method == "POST":
            expected = base64.b64encode(f"{CLIENT}:s3cret".encode()).decode()
            if request.headers.get("authorization") != f"Basic {expected}":
                return httpx.Response(401, json={"error": "invalid_client"})
            form = dict(urllib.parse.parse_qsl(request.content.decode()))
            issued = self.codes.pop(form["code"], None)
            if issued is None:
                return httpx.Response(400, json={"error": "invalid_grant"})
            challenge = b64url_encode(hashlib.sha256(form["code_verifier"].encode()).digest())
            if challenge != issued["code_challenge"]:
                return httpx.Response(400, json={"error": "invalid_grant"})
            token = sign(claims(nonce=issued["nonce"], iin=self.iin), "ES256")
            return httpx.Response(200, json={"id_token": token, "token_type": "Bearer"})
        return httpx.Response(404)


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    fake = FakeProvider()
    monkeypatch.setattr(oidc, "TRANSPORT", httpx.MockTransport(fake))
    for name, value in {
        "ISSUER": ISSUER,
        "CLIENT_ID": CLIENT,
        "CLIENT_SECRET": "s3cret",
        "REDIRECT_URI": "http://testserver/api/v1/auth/oidc/callback",
    }.items():
        monkeypatch.setenv(f"QAMQOR_OIDC_{name}", value)
    get_settings.cache_clear()
    yield fake
    get_settings.cache_clear()


def test_authorization_code_flow_signs_the_citizen_in(
    engine: Engine, provider: FakeProvider
) -> None:
    client = TestClient(create_app())
    start = client.get("/api/v1/auth/oidc/login", follow_redirects=False)
    assert start.status_code == 302
    location = start.headers["location"]
    assert location.startswith(f"{ISSUER}/authorize?")
    code = provider.authorize(location)
    state = provider.codes[code]["state"]
    done = client.get(
        "/api/v1/auth/oidc/callback", params={"code": code, "state": state}, follow_redirects=False
    )
    assert done.status_code == 303
    assert "qamqor_session=" in done.headers["set-cookie"]
    me = client.get("/api/v1/me").json()
    assert me["kind"] == "citizen" and me["iin"] == valid_iin(700)
    assert me["display_name"] == "Айгүл Сейітқалиева"
    with session_scope() as session:
        account = session.scalars(select(Account)).one()
        assert account.password_hash is None  # OIDC-only
        assert session.scalar(select(func.count()).select_from(OidcRequest)) == 0

    # the state is single use: replaying the callback fails
    replay = client.get(
        "/api/v1/auth/oidc/callback", params={"code": code, "state": state}, follow_redirects=False
    )
    assert replay.status_code == 401

    # a second sign-in maps to the same account
    code = provider.authorize(
        client.get("/api/v1/auth/oidc/login", follow_redirects=False).headers["location"]
    )
    client.get(
        "/api/v1/auth/oidc/callback",
        params={"code": code, "state": provider.codes[code]["state"]},
        follow_redirects=False,
    )
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 1


def test_a_stale_request_is_refused_and_spent(engine: Engine, provider: FakeProvider) -> None:
    client = TestClient(create_app())
    location = client.get("/api/v1/auth/oidc/login", follow_redirects=False).headers["location"]
    code = provider.authorize(location)
    with session_scope() as session:
        request = session.scalars(select(OidcRequest)).one()
        request.created_at -= dt.timedelta(minutes=11)
    late = client.get(
        "/api/v1/auth/oidc/callback",
        params={"code": code, "state": provider.codes[code]["state"]},
        follow_redirects=False,
    )
    assert late.status_code == 401 and "too long" in late.json()["detail"]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(OidcRequest)) == 0


def test_oidc_routes_say_when_not_configured(engine: Engine) -> None:
    client = TestClient(create_app())
    response = client.get("/api/v1/auth/oidc/login", headers={"Accept-Language": "ru"})
    assert response.status_code == 404
    assert response.json()["detail"].startswith("Вход через провайдера")
