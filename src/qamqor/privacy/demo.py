"""Demo accounts for ``make demo``: one citizen of a real ingested household, one officer per
role, a registry client, a merchant client and the SMS gateway's client. Running it again
resets their passwords and tokens (only hashes are stored, so new secrets are the only way to
print them)."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qamqor.privacy import households, identities
from qamqor.privacy.models import Account
from qamqor.registry import iin as iin_rules

INSTITUTION = "Demo district department of employment and social programmes"
# A BIN-shaped code for the demo institution and merchant: the check digit is computed.
FALLBACK_REGION = "75"  # Almaty


def valid_number(first11: str) -> str:
    """Twelve digits with a correct check digit, starting from ``first11`` (serial bumped
    until the number is issuable)."""
    base = int(first11)
    for step in range(100):
        digits = f"{base + step:011d}"
        check = iin_rules.check_digit(digits)
        if check is not None:
            return digits + str(check)
    raise ValueError("no issuable number near " + first11)


def _reset_password(session: Session, account: Account) -> str:
    password = secrets.token_urlsafe(12)
    account.password_hash = identities.hash_password(password)
    account.failed_logins = 0
    account.locked_until = None
    session.flush()
    return password


def _by_login(session: Session, login: str) -> Account | None:
    return session.scalars(select(Account).where(Account.login == login)).first()


def seed(session: Session) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    sample = households.sample_member(session)
    if sample is not None:
        household_id, citizen_iin = sample
        region = households.household_region(session, household_id) or FALLBACK_REGION
        note = f"member of household {household_id} (region {region})"
    else:
        household_id, citizen_iin, region = None, valid_number("90010130000"), FALLBACK_REGION
        note = "no household facts ingested yet: run `qamqor ingest` first, then seed again"

    citizen = identities.citizen_by_iin(session, citizen_iin)
    if citizen is None:
        citizen = identities.create_citizen(
            session, iin=citizen_iin, display_name="Demo citizen", password=None
        )
    out.append(
        {
            "role": "citizen",
            "login": citizen_iin,
            "secret": _reset_password(session, citizen),
            "scope": f"household {household_id}" if household_id else "-",
            "note": note,
        }
    )
    institution_code = valid_number("99044000001")
    for role in identities.OFFICER_ROLES:
        login = f"demo.{role}"
        regional = role in ("social_worker", "program_officer")
        regions = [region] if regional else [identities.ALL_REGIONS]
        account = _by_login(session, login)
        if account is None:
            account = identities.create_officer(
                session,
                login=login,
                password=secrets.token_urlsafe(12),
                display_name=f"Demo {role.replace('_', ' ')}",
                role=role,
                institution=INSTITUTION,
                institution_code=institution_code,
                regions=regions,
            )
        out.append(
            {
                "role": role,
                "login": login,
                "secret": _reset_password(session, account),
                "scope": "region " + " ".join(regions) if regional else "national",
                "note": "purpose required to open a household" if regional else "",
            }
        )
    for name, source, bin, gateway in (
        ("demo-household-registry", "household", None, False),
        ("demo-merchant", None, valid_number("99084000002"), False),
        ("demo-sms-gateway", None, None, True),
    ):
        account = _by_login(session, name)
        if account is not None:
            identities.revoke_all(session, account.id)
            token = identities.issue_credential(session, account, "client", None)
        else:
            account, token = identities.create_client(
                session, name=name, display_name=name, source=source, bin=bin, gateway=gateway
            )
        scope = f"source {source}" if source else f"BIN {bin}" if bin else "SMS replies"
        out.append(
            {
                "role": account.kind,
                "login": name,
                "secret": token,
                "scope": scope,
                "note": "bearer token: Authorization: Bearer <token>",
            }
        )
    return out
