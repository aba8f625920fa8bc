"""Citizen sign-in through an OpenID Connect provider (authorization-code flow with PKCE).

``begin`` stores a single-use request (SHA-256 of the state, the nonce, the PKCE verifier)
and returns the provider's authorization URL; ``complete`` takes the code and state back,
redeems the code at the token endpoint (client_secret_basic), verifies the ID token against
the provider's JWKS — RS256 or ES256, checked here with ``cryptography`` (RFC 7515/7518), then
``iss``, ``aud``/``azp``, ``exp``, ``iat`` and ``nonce`` (OpenID Connect Core 1.0 §3.1.3.7) —
and maps the IIN claim (``QAMQOR_OIDC_IIN_CLAIM``) to the citizen's account, creating it on
first sign-in. Endpoints come from the issuer's discovery document
(``/.well-known/openid-configuration``), whose ``issuer`` must equal the configured one.

The HTTP client is built by ``http_client()``; tests swap ``TRANSPORT`` for an in-process
fake provider, so nothing leaves the machine.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import urllib.parse
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy.orm import Session

from qamqor.kit.settings import get_settings
from qamqor.privacy import identities
from qamqor.privacy.errors import NotConfiguredError, PrivacyError
from qamqor.privacy.models import Account, OidcRequest
from qamqor.registry import iin as iin_rules

TRANSPORT: httpx.BaseTransport | None = None  # tests put a fake provider here
REQUEST_TTL = dt.timedelta(minutes=10)
LEEWAY = 60  # seconds of clock skew tolerated on exp/iat
ALGORITHMS = ("RS256", "ES256")


class OidcError(PrivacyError):
    code = "oidc"
    status = 401


def configured() -> bool:
    s = get_settings()
    return bool(s.oidc_issuer and s.oidc_client_id and s.oidc_redirect_uri)


def _require_configured() -> None:
    if not configured():
        raise NotConfiguredError("oidc.not_configured")


def http_client() -> httpx.Client:
    return httpx.Client(transport=TRANSPORT, timeout=10.0, follow_redirects=False)


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


def discover(client: httpx.Client, issuer: str) -> dict[str, Any]:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = client.get(url)
        response.raise_for_status()
        config = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OidcError("oidc.failed", detail=f"discovery: {type(exc).__name__}") from exc
    if config.get("issuer") != issuer:
        raise OidcError("oidc.failed", detail="discovery issuer differs from the configured one")
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(config.get(name), str):
            raise OidcError("oidc.failed", detail=f"discovery lacks {name}")
    return dict(config)


def _verify_signature(alg: str, jwk: dict[str, Any], signing_input: bytes, sig: bytes) -> None:
    try:
        if alg == "RS256":
            if jwk.get("kty") != "RSA":
                raise OidcError("oidc.failed", detail="key type does not match RS256")
            rsa_key = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
            rsa_key.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
            return
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise OidcError("oidc.failed", detail="key type does not match ES256")
        if len(sig) != 64:  # JWS ECDSA signatures are r || s, 32 bytes each (RFC 7518 §3.4)
            raise OidcError("oidc.failed", detail="bad ES256 signature length")
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        ec_key = ec.EllipticCurvePublicNumbers(
            _int(jwk["x"]), _int(jwk["y"]), ec.SECP256R1()
        ).public_key()
        ec_key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise OidcError("oidc.failed", detail="ID token signature does not verify") from exc
    except (KeyError, ValueError) as exc:
        raise OidcError("oidc.failed", detail=f"unusable key: {exc}") from exc


def verify_id_token(
    token: str,
    jwks: dict[str, Any],
    *,
    issuer: str,
    audience: str,
    nonce: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The ID token's claims once its signature and claims check out, else ``OidcError``."""
    parts = token.split(".")
    if len(parts) != 3:
        raise OidcError("oidc.failed", detail="ID token is not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise OidcError("oidc.failed", detail="ID token is not valid base64url JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise OidcError("oidc.failed", detail="ID token header or claims are not objects")
    alg = header.get("alg")
    if alg not in ALGORITHMS:  # refuses "none" and HMAC: the key is never a shared secret
        raise OidcError("oidc.failed", detail=f"algorithm {alg!r} not accepted")
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict)]
    kid = header.get("kid")
    candidates = [k for k in keys if kid is None or k.get("kid") == kid]
    candidates = [k for k in candidates if k.get("use", "sig") == "sig"]
    if not candidates:
        raise OidcError("oidc.failed", detail=f"no signing key {kid!r} in the provider's JWKS")
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    errors = []
    for jwk in candidates:
        try:
            _verify_signature(alg, jwk, signing_input, sig)
            break
        except OidcError as exc:
            errors.append(exc)
    else:
        raise errors[-1]
    moment = (now or dt.datetime.now(dt.UTC)).timestamp()
    if claims.get("iss") != issuer:
        raise OidcError("oidc.failed", detail="ID token issuer differs")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise OidcError("oidc.failed", detail="ID token is not for this client")
    if len(audiences) > 1 and claims.get("azp") != audience:
        raise OidcError("oidc.failed", detail="ID token azp is not this client")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or exp < moment - LEEWAY:
        raise OidcError("oidc.failed", detail="ID token expired")
    if not isinstance(iat, int | float) or iat > moment + LEEWAY:
        raise OidcError("oidc.failed", detail="ID token issued in the future")
    if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise OidcError("oidc.failed", detail="ID token nonce does not match")
    return dict(claims)


def begin(session: Session) -> str:
    """Start a sign-in: the provider URL to redirect the browser to."""
    _require_configured()
    settings = get_settings()
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    session.add(
        OidcRequest(
            state_sha256=identities.token_hash(state),
            nonce=nonce,
            code_verifier=verifier,
            created_at=dt.datetime.now(dt.UTC),
        )
    )
    session.flush()
    with http_client() as client:
        config = discover(client, settings.oidc_issuer)
    challenge = b64url_encode(hashlib.sha256(verifier.encode()).digest())
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": settings.oidc_client_id,
            "redirect_uri": settings.oidc_redirect_uri,
            "scope": "openid",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    endpoint = config["authorization_endpoint"]
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


def take_request(session: Session, state: str) -> OidcRequest:
    """The sign-in request ``state`` belongs to, deleted: commit this before redeeming the
    code, so a state is spent even when the rest fails."""
    _require_configured()
    state_hash = identities.token_hash(state)
    request = session.get(OidcRequest, state_hash)
    if request is None:
        raise OidcError("oidc.failed", detail="unknown or used state")
    session.delete(request)
    session.flush()
    return request


def complete(session: Session, request: OidcRequest, *, code: str) -> Account:
    """Finish a sign-in: the citizen's account (created at first sign-in)."""
    _require_configured()
    settings = get_settings()
    if request.created_at < dt.datetime.now(dt.UTC) - REQUEST_TTL:
        raise OidcError("oidc.failed", detail="sign-in took too long; start again")
    with http_client() as client:
        config = discover(client, settings.oidc_issuer)
        try:
            response = client.post(
                config["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": settings.oidc_redirect_uri,
                    "code_verifier": request.code_verifier,
                },
                auth=(settings.oidc_client_id, settings.oidc_client_secret),
            )
            response.raise_for_status()
            id_token = response.json()["id_token"]
            jwks_response = client.get(config["jwks_uri"])
            jwks_response.raise_for_status()
            jwks = jwks_response.json()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise OidcError("oidc.failed", detail=f"token exchange: {type(exc).__name__}") from exc
    claims = verify_id_token(
        str(id_token),
        jwks,
        issuer=settings.oidc_issuer,
        audience=settings.oidc_client_id,
        nonce=request.nonce,
    )
    iin = str(claims.get(settings.oidc_iin_claim, ""))
    if not iin_rules.is_valid(iin):
        raise OidcError("oidc.failed", detail=f"claim {settings.oidc_iin_claim!r} is not an IIN")
    account = identities.citizen_by_iin(session, iin)
    if account is None:
        name = str(claims.get("name") or claims.get("given_name") or iin)
        account = identities.create_citizen(session, iin=iin, display_name=name, password=None)
    if account.disabled_at is not None:
        raise OidcError("oidc.failed", detail="account disabled")
    account.last_login_at = dt.datetime.now(dt.UTC)
    session.flush()
    return account
