"""Purpose-bound consents, recorded after ISO/IEC TS 27560 with W3C DPV terms.

A citizen grants or withdraws consent per purpose (``proactive_offers``, ``bank_sharing``,
``research``); each grant is a record with its own identifier, the notice version shown, the
time given and (once) the time withdrawn; grants and withdrawals are appended to the audit
log. Anything that processes under consent calls ``require_consent`` first.

The record shape follows the DPV guide to ISO/IEC TS 27560 consent records
(w3id.org/dpv, github.com/coolharsh55/dpv-consent-record): ``dpv:ConsentRecord`` with
``dpv:hasIdentifier``, ``dpv:hasDataSubject``, ``dpv:hasDataController``, ``dpv:hasNotice``,
``dpv:hasPurpose``, ``dpv:hasProcessing``, ``dpv:hasPersonalData``, ``dpv:hasRecipient``,
``dpv:hasLegalBasis`` (``dpv:Consent``), ``dpv:hasConsentStatus`` (``dpv:ConsentGiven``,
``dpv:ConsentWithdrawn``, ``dpv:ConsentExpired``) and the events of its life
(``dct:hasPart``: given, withdrawn) with their ``dct:date``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from qamqor.audit import service as audit
from qamqor.kit.i18n import translate
from qamqor.privacy import households
from qamqor.privacy.access import audit_subject
from qamqor.privacy.errors import ConsentRequiredError, PrivacyError
from qamqor.privacy.models import Consent
from qamqor.registry import iin as iin_rules

CONTROLLER = (
    "Ministry of Labour and Social Protection of the Population of the RK (Qamqor operator)"
)
NOTICE_VERSION = "2026-11"
CONTEXT = {
    "dpv": "https://w3id.org/dpv#",
    "pd": "https://w3id.org/dpv/pd#",
    "dct": "http://purl.org/dc/terms/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}


@dataclass(frozen=True)
class ConsentPurpose:
    code: str
    dpv_purpose: str
    processing: tuple[str, ...]
    personal_data: tuple[str, ...]
    recipients: tuple[str, ...]


PURPOSES: dict[str, ConsentPurpose] = {
    p.code: p
    for p in (
        ConsentPurpose(
            "proactive_offers",
            "dpv:ServiceProvision",
            ("dpv:Use", "dpv:Analyse", "dpv:Profiling"),
            ("pd:FamilyStructure", "pd:Income", "pd:Employment"),
            ("Qamqor operator",),
        ),
        ConsentPurpose(
            "bank_sharing",
            "dpv:ServiceProvision",
            ("dpv:Share", "dpv:Transfer"),
            ("pd:FinancialAccount", "pd:Income"),
            ("second-tier banks of the RK (the citizen's own bank)",),
        ),
        ConsentPurpose(
            "research",
            "dpv:ResearchAndDevelopment",
            ("dpv:Use", "dpv:Analyse", "dpv:Pseudonymise"),
            ("pd:FamilyStructure", "pd:Income", "pd:Employment", "pd:Age"),
            ("accredited research institutions",),
        ),
    )
}


class ConsentError(PrivacyError):
    code = "consent"
    status = 422


def _check_purpose(purpose: str) -> ConsentPurpose:
    found = PURPOSES.get(purpose)
    if found is None:
        raise ConsentError("consent.unknown_purpose", purpose=purpose, known=", ".join(PURPOSES))
    return found


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _active_clause(now: dt.datetime) -> Any:
    return (
        Consent.withdrawn_at.is_(None),
        or_(Consent.expires_at.is_(None), Consent.expires_at > now),
    )


def active_consent(session: Session, iin: str, purpose: str) -> Consent | None:
    _check_purpose(purpose)
    return session.scalars(
        select(Consent)
        .where(Consent.subject_iin == iin, Consent.purpose == purpose, *_active_clause(_now()))
        .order_by(Consent.granted_at.desc())
    ).first()


def grant(session: Session, iin: str, purpose: str, *, valid_days: int | None = None) -> Consent:
    """Record a consent (or return the active one unchanged: granting twice is one grant)."""
    _check_purpose(purpose)
    existing = active_consent(session, iin, purpose)
    if existing is not None:
        return existing
    if valid_days is not None and not 1 <= valid_days <= 3650:
        raise ConsentError("consent.bad_duration")
    now = _now()
    current = households.households_of(session, iin)
    consent = Consent(
        record_id=str(uuid.uuid4()),
        subject_iin=iin,
        household_id=current[0] if current else None,
        purpose=purpose,
        notice_version=NOTICE_VERSION,
        granted_at=now,
        expires_at=now + dt.timedelta(days=valid_days) if valid_days else None,
    )
    session.add(consent)
    session.flush()
    consent.grant_audit_index = audit.append(
        session,
        "consent",
        audit_subject(consent.household_id) if consent.household_id else None,
        {
            "record": consent.record_id,
            "event": "dpv:ConsentGiven",
            "purpose": purpose,
            "notice": NOTICE_VERSION,
            "expires_at": consent.expires_at.isoformat() if consent.expires_at else None,
        },
    )
    session.flush()
    return consent


def withdraw(session: Session, iin: str, purpose: str) -> Consent:
    consent = active_consent(session, iin, purpose)
    if consent is None:
        raise ConsentError("consent.not_active", purpose=purpose)
    consent.withdrawn_at = _now()
    consent.withdraw_audit_index = audit.append(
        session,
        "consent",
        audit_subject(consent.household_id) if consent.household_id else None,
        {"record": consent.record_id, "event": "dpv:ConsentWithdrawn", "purpose": purpose},
    )
    session.flush()
    return consent


def history(session: Session, iin: str) -> list[Consent]:
    return list(
        session.scalars(
            select(Consent)
            .where(Consent.subject_iin == iin)
            .order_by(Consent.granted_at.desc(), Consent.id.desc())
        )
    )


def require_consent(session: Session, iin_or_household: str, purpose: str) -> Consent:
    """The active consent that allows processing for ``purpose``, or ``ConsentRequiredError``.

    Given an IIN (12 digits with a valid check digit): that person's consent. Given a
    household id: the consent of any current member of the household.
    """
    _check_purpose(purpose)
    if iin_rules.is_valid(iin_or_household):
        subjects = [iin_or_household]
    else:
        subjects = [m.iin for m in households.members(session, iin_or_household)]
    for iin in subjects:
        consent = active_consent(session, iin, purpose)
        if consent is not None:
            return consent
    raise ConsentRequiredError("consent.required", purpose=purpose)


def status(consent: Consent, now: dt.datetime | None = None) -> str:
    now = now or _now()
    if consent.withdrawn_at is not None:
        return "dpv:ConsentWithdrawn"
    if consent.expires_at is not None and consent.expires_at <= now:
        return "dpv:ConsentExpired"
    return "dpv:ConsentGiven"


def _date(moment: dt.datetime) -> dict[str, str]:
    return {"@type": "xsd:dateTime", "@value": moment.astimezone(dt.UTC).isoformat()}


def record(consent: Consent, lang: str = "en") -> dict[str, Any]:
    """The consent as an ISO/IEC TS 27560 record in DPV JSON-LD."""
    purpose = PURPOSES[consent.purpose]
    events: list[dict[str, Any]] = [
        {
            "@type": ["dpv:ConsentGiven", "dpv:ExplicitlyExpressedConsent"],
            "dct:date": _date(consent.granted_at),
            "dpv:hasEntity": "dpv:DataSubject",
        }
    ]
    if consent.withdrawn_at is not None:
        events.append(
            {
                "@type": "dpv:ConsentWithdrawn",
                "dct:date": _date(consent.withdrawn_at),
                "dpv:hasEntity": "dpv:DataSubject",
            }
        )
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "dpv:ConsentRecord",
        "dpv:hasIdentifier": consent.record_id,
        "dct:conformsTo": "ISO/IEC TS 27560:2023",
        "dpv:hasDataSubject": {
            "@type": "dpv:DataSubject",
            "dpv:hasIdentifier": consent.subject_iin,
        },
        "dpv:hasDataController": {"@type": "dpv:DataController", "dpv:hasName": CONTROLLER},
        "dpv:hasNotice": f"qamqor:notice/{consent.purpose}/{consent.notice_version}",
        "dpv:hasPurpose": {
            "@type": purpose.dpv_purpose,
            "dct:identifier": purpose.code,
            "dct:title": translate(f"consent.purpose.{purpose.code}", lang),
        },
        "dpv:hasProcessing": list(purpose.processing),
        "dpv:hasPersonalData": list(purpose.personal_data),
        "dpv:hasRecipient": list(purpose.recipients),
        "dpv:hasLegalBasis": "dpv:Consent",
        "dpv:hasJurisdiction": "KZ",
        "dpv:hasConsentStatus": status(consent),
        "dct:hasPart": events,
        "dpv:hasWithdrawalMethod": "DELETE /api/v1/me/consents/" + consent.purpose,
    }
    if consent.expires_at is not None:
        doc["dpv:hasExpiryTime"] = _date(consent.expires_at)
    return doc


def item(consent: Consent, lang: str = "en") -> dict[str, Any]:
    return {
        "record_id": consent.record_id,
        "purpose": consent.purpose,
        "title": translate(f"consent.purpose.{consent.purpose}", lang),
        "status": status(consent).removeprefix("dpv:"),
        "active": status(consent) == "dpv:ConsentGiven",
        "granted_at": consent.granted_at,
        "expires_at": consent.expires_at,
        "withdrawn_at": consent.withdrawn_at,
        "grant_audit_index": consent.grant_audit_index,
        "withdraw_audit_index": consent.withdraw_audit_index,
        "record": record(consent, lang),
    }
