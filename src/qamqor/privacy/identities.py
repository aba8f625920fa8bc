"""Accounts, passwords, sessions and tokens: who is calling.

Sign-in never tells an unknown login from a wrong password: both get the same error, and an
unknown login still costs one Argon2 verification (against a dummy hash made with the same
parameters), so the answer takes about as long either way. Repeated failures lock the
account for ``QAMQOR_LOGIN_LOCKOUT_MINUTES``; while locked even the right password gets the
same error. Session ids and tokens are 256-bit random values shown once; only their SHA-256
is stored, and logout revokes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from qamqor.kit.errors import QamqorError
from qamqor.kit.settings import get_settings
from qamqor.privacy.errors import PrivacyError
from qamqor.privacy.models import Account, Credential
from qamqor.registry import iin as iin_rules

OFFICER_ROLES = ("social_worker", "program_officer", "analyst", "dq_steward", "auditor", "admin")
KINDS = ("citizen", "officer", "registry_client", "merchant_client", "gateway_client")
MACHINE_KINDS = ("registry_client", "merchant_client", "gateway_client")
ALL_REGIONS = "all"
TOKEN_PREFIX = {"session": "qs_", "bearer": "qt_", "client": "qc_"}


class AuthenticationError(PrivacyError):
    """Sign-in refused. One message for every cause, so nobody learns which logins exist."""

    code = "authentication_failed"
    status = 401


class AccountError(QamqorError):
    code = "account"


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the policy sees it. ``role`` is the officer role, or the kind for
    everyone else (citizen, registry_client, merchant_client, gateway_client, anonymous)."""

    role: str
    account_id: int | None = None
    kind: str = "anonymous"
    login: str | None = None
    display_name: str | None = None
    institution: str | None = None
    institution_code: str | None = None
    regions: tuple[str, ...] = ()  # empty = none; ("all",) = national
    iin: str | None = None
    source: str | None = None
    bin: str | None = None
    credential_id: int | None = None

    @property
    def authenticated(self) -> bool:
        return self.account_id is not None

    @property
    def national(self) -> bool:
        return ALL_REGIONS in self.regions


ANONYMOUS = Principal(role="anonymous")


def principal_of(account: Account, credential_id: int | None = None) -> Principal:
    regions: tuple[str, ...] = ()
    if account.regions:
        regions = tuple(account.regions.split())
    return Principal(
        role=account.role if account.kind == "officer" and account.role else account.kind,
        account_id=account.id,
        kind=account.kind,
        login=account.login,
        display_name=account.display_name,
        institution=account.institution,
        institution_code=account.institution_code,
        regions=regions,
        iin=account.iin,
        source=account.source,
        bin=account.bin,
        credential_id=credential_id,
    )


# --- passwords -------------------------------------------------------------------------------


@cache
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    # Argon2id, parallelism 4: RFC 9106's second recommended profile at the defaults.
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=4)


def hasher() -> PasswordHasher:
    settings = get_settings()
    return _hasher(settings.argon2_time_cost, settings.argon2_memory_kib)


@cache
def _dummy_hash(time_cost: int, memory_kib: int) -> str:
    return _hasher(time_cost, memory_kib).hash(secrets.token_urlsafe(16))


def dummy_hash() -> str:
    settings = get_settings()
    return _dummy_hash(settings.argon2_time_cost, settings.argon2_memory_kib)


MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    return hasher().hash(password)


def _verify(stored: str, password: str) -> bool:
    try:
        return hasher().verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# --- tokens ----------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def issue_credential(
    session: Session, account: Account, kind: str, ttl: dt.timedelta | None
) -> str:
    """A new session id, bearer token or client token for ``account``; returns the token."""
    token = TOKEN_PREFIX[kind] + secrets.token_urlsafe(32)
    now = _now()
    session.add(
        Credential(
            account_id=account.id,
            kind=kind,
            token_sha256=token_hash(token),
            created_at=now,
            expires_at=now + ttl if ttl else None,
        )
    )
    session.flush()
    return token


def resolve_token(session: Session, token: str, kinds: Sequence[str]) -> Principal | None:
    """The principal a live (unexpired, unrevoked) token of one of ``kinds`` belongs to."""
    if not token or len(token) > 200:
        return None
    row = session.execute(
        select(Credential, Account)
        .join(Account, Account.id == Credential.account_id)
        .where(Credential.token_sha256 == token_hash(token), Credential.kind.in_(kinds))
    ).first()
    if row is None:
        return None
    credential, account = row
    now = _now()
    if credential.revoked_at is not None or account.disabled_at is not None:
        return None
    if credential.expires_at is not None and credential.expires_at <= now:
        return None
    return principal_of(account, credential.id)


def revoke(session: Session, credential_id: int) -> None:
    session.execute(
        update(Credential)
        .where(Credential.id == credential_id, Credential.revoked_at.is_(None))
        .values(revoked_at=_now())
    )


def revoke_all(session: Session, account_id: int) -> int:
    result = session.execute(
        update(Credential)
        .where(Credential.account_id == account_id, Credential.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- sign-in ---------------------------------------------------------------------------------


def authenticate(session: Session, login: str, password: str) -> Account:
    """The account whose login (an IIN for citizens) and password match, or
    ``AuthenticationError``. Counts failures and locks the account after too many."""
    settings = get_settings()
    login = login.strip()
    account = session.scalars(
        select(Account).where(Account.login == login, Account.kind.in_(("citizen", "officer")))
    ).first()
    if account is None or account.password_hash is None:
        _verify(dummy_hash(), password)  # the same work as a real check
        raise AuthenticationError("auth.failed")
    ok = _verify(account.password_hash, password)
    now = _now()
    locked = account.locked_until is not None and account.locked_until > now
    if ok and not locked and account.disabled_at is None:
        if hasher().check_needs_rehash(account.password_hash):
            account.password_hash = hasher().hash(password)
        account.failed_logins = 0
        account.locked_until = None
        account.last_login_at = now
        session.flush()
        return account
    if not ok and not locked:
        account.failed_logins = (account.failed_logins or 0) + 1
        if account.failed_logins >= settings.login_max_attempts:
            account.locked_until = now + dt.timedelta(minutes=settings.login_lockout_minutes)
            account.failed_logins = 0
        session.flush()
    raise AuthenticationError("auth.failed")


def start_session(session: Session, account: Account) -> str:
    ttl = dt.timedelta(minutes=get_settings().session_ttl_minutes)
    return issue_credential(session, account, "session", ttl)


def issue_bearer(session: Session, account: Account) -> tuple[str, int]:
    minutes = get_settings().token_ttl_minutes
    return issue_credential(session, account, "bearer", dt.timedelta(minutes=minutes)), minutes


# --- accounts --------------------------------------------------------------------------------


def _check_regions(regions: Sequence[str]) -> str:
    from qamqor.registry.catalogue import regions as known_regions

    if not regions:
        raise AccountError("an officer needs a region scope: KATO region codes or 'all'")
    if ALL_REGIONS in regions:
        return ALL_REGIONS
    known = {r.code for r in known_regions()}
    unknown = sorted(set(regions) - known)
    if unknown:
        raise AccountError(f"unknown KATO region codes {unknown}; known: {sorted(known)}")
    return " ".join(sorted(set(regions)))


def _taken(session: Session, login: str) -> None:
    if session.scalar(select(func.count()).where(Account.login == login)):
        raise AccountError(f"login {login!r} is taken")


def create_officer(
    session: Session,
    *,
    login: str,
    password: str,
    display_name: str,
    role: str,
    institution: str,
    regions: Sequence[str],
    institution_code: str | None = None,
) -> Account:
    if role not in OFFICER_ROLES:
        raise AccountError(f"unknown role {role!r}; roles: {', '.join(OFFICER_ROLES)}")
    if not login or len(login) > 64 or not login.replace(".", "").replace("_", "").isalnum():
        raise AccountError("an officer login is 1-64 letters, digits, '.' or '_'")
    if login.isdigit():
        raise AccountError("an officer login must not be all digits (digits are IINs)")
    _taken(session, login)
    account = Account(
        kind="officer",
        login=login,
        display_name=display_name,
        role=role,
        institution=institution,
        institution_code=institution_code,
        regions=_check_regions(regions),
        password_hash=hash_password(password),
        failed_logins=0,
        created_at=_now(),
    )
    session.add(account)
    session.flush()
    return account


def create_citizen(
    session: Session, *, iin: str, display_name: str, password: str | None
) -> Account:
    """A citizen signs in with their IIN; ``password`` None means OIDC-only."""
    if not iin_rules.is_valid(iin):
        raise AccountError(f"{iin!r} is not a valid IIN (12 digits with a check digit)")
    _taken(session, iin)
    account = Account(
        kind="citizen",
        login=iin,
        iin=iin,
        display_name=display_name,
        password_hash=hash_password(password) if password is not None else None,
        failed_logins=0,
        created_at=_now(),
    )
    session.add(account)
    session.flush()
    return account


def create_client(
    session: Session,
    *,
    name: str,
    display_name: str,
    source: str | None = None,
    bin: str | None = None,
    gateway: bool = False,
) -> tuple[Account, str]:
    """A machine client and its token (shown once: only its hash is stored): a registry
    client bound to one source registry, a merchant client bound to one BIN, or the SMS
    gateway (``gateway``), bound to nothing, whose only right is to relay citizens' replies."""
    from qamqor.registry.catalogue import sources

    if sum((source is not None, bin is not None, gateway)) != 1:
        raise AccountError(
            "a client is exactly one of: a registry client (a source registry), a merchant "
            "client (a BIN), the SMS gateway"
        )
    if source is not None and source not in sources():
        raise AccountError(f"unknown source registry {source!r}; known: {sorted(sources())}")
    if bin is not None and not iin_rules.is_valid(bin):
        raise AccountError(f"{bin!r} is not a valid BIN (12 digits with a check digit)")
    _taken(session, name)
    kind = "registry_client" if source else "merchant_client" if bin else "gateway_client"
    account = Account(
        kind=kind,
        login=name,
        display_name=display_name,
        source=source,
        bin=bin,
        failed_logins=0,
        created_at=_now(),
    )
    session.add(account)
    session.flush()
    return account, issue_credential(session, account, "client", None)


def citizen_by_iin(session: Session, iin: str) -> Account | None:
    return session.scalars(
        select(Account).where(Account.kind == "citizen", Account.iin == iin)
    ).first()


def list_accounts(session: Session, kind: str | None = None) -> list[Account]:
    query = select(Account).order_by(Account.kind, Account.login)
    if kind:
        query = query.where(Account.kind == kind)
    return list(session.scalars(query))


def unlock(session: Session, login: str) -> Account:
    account = session.scalars(select(Account).where(Account.login == login)).first()
    if account is None:
        raise AccountError(f"no account {login!r}")
    account.locked_until = None
    account.failed_logins = 0
    session.flush()
    return account
