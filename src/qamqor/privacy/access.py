"""THE choke point for personal data: ``open_personal_data``, and the access log it writes.

Every read of a household's personal data calls ``open_personal_data`` in the reader's own
transaction, before reading. It checks the policy (role, purpose, household scope) and
records the access event — who, role, institution, when, household, categories, purpose,
legal basis — in that same transaction, then appends it to the audit log
(``qamqor.audit.service.append``): the data, its access record and the audit leaf commit
together or not at all.

A refusal raises ``AccessDeniedError`` carrying the attempt; the reader's transaction rolls
back, so the attempt is recorded afterwards in a transaction of its own
(``record_denied``; the web layer does it for every refused request). Denied attempts are
shown to the citizen and feed the anomaly checks.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qamqor.audit import service as audit
from qamqor.audit.models import AuditEntry
from qamqor.kit.db import session_scope
from qamqor.kit.i18n import translate
from qamqor.privacy import anomalies, households
from qamqor.privacy.errors import AccessDeniedError
from qamqor.privacy.identities import Principal
from qamqor.privacy.models import AccessEvent, Account
from qamqor.privacy.policy import HOUSEHOLD_ACTIONS, Purpose, Rule, check_purpose, require
from qamqor.registry.models import HouseholdFact

# Categories of a household's personal data a reader may open (stored on every event).
CATEGORIES = (
    "profile",  # the household's features and their values
    "provenance",  # the registry facts behind the values
    "quality",  # data-quality flags and issues of the household
    "identity",  # names, IINs, birth dates of members
    "household",  # who lives together, since when
    "income",
    "employment",
    "property",
    "disability",
    "finance",
    "decisions",
    "payments",  # wallet transactions: where a household's money was spent, and on what
    "access_log",
    "consents",
    "bank_account",  # the IBAN benefits are paid into
)


@dataclass(frozen=True)
class Attempt:
    """What was tried, kept on a refusal so it can be recorded after the rollback."""

    principal: Principal
    action: str
    household_id: str
    categories: tuple[str, ...]
    purpose: Purpose | None
    legal_basis: str | None
    region: str | None
    reason: str


def audit_subject(household_id: str) -> str:
    # The audit log's subject holds at most 128 characters; longer ids go in as a hash.
    if len(household_id) <= audit.SUBJECT_MAX:
        return household_id
    return "sha256:" + hashlib.sha256(household_id.encode()).hexdigest()


def _deny(attempt: Attempt, error: AccessDeniedError) -> AccessDeniedError:
    error.attempt = attempt  # type: ignore[attr-defined]
    return error


def check_household(
    session: Session,
    principal: Principal,
    *,
    household_id: str,
    action: str,
    purpose: Purpose | None,
    categories: Sequence[str] = (),
) -> tuple[Rule, str | None]:
    """The rule and the household's region when ``principal`` may do ``action`` on the
    household; ``AccessDeniedError`` (with ``.attempt``) when not. Records nothing."""
    if action not in HOUSEHOLD_ACTIONS:
        raise ValueError(f"{action!r} is not an action on a household's personal data")
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown categories {unknown}; known: {CATEGORIES}")
    region = households.household_region(session, household_id)

    def attempt(reason: str, rule: Rule | None) -> Attempt:
        return Attempt(
            principal,
            action,
            household_id,
            tuple(categories),
            purpose,
            rule.legal_basis if rule else None,
            region,
            reason,
        )

    try:
        rule = require(principal, action)
    except AccessDeniedError as exc:
        raise _deny(attempt(exc.reason, None), exc) from None
    try:
        check_purpose(rule, purpose)
    except AccessDeniedError as exc:
        raise _deny(attempt(exc.reason, rule), exc) from None
    reason: str | None = None
    if rule.scope == "own":
        if not principal.iin or not households.is_member(session, household_id, principal.iin):
            reason = "not_member"
    elif rule.scope == "region" and not principal.national:
        if region is None:
            reason = "region_unknown"
        elif region not in principal.regions:
            reason = "outside_region"
    elif rule.scope not in ("region", "national"):
        reason = "role_not_allowed"
    if reason is not None:
        raise _deny(
            attempt(reason, rule),
            AccessDeniedError(reason, role=principal.role, action=action, region=region or "?"),
        )
    return rule, region


def record_access(
    session: Session,
    *,
    principal: Principal,
    action: str,
    household_id: str,
    categories: Sequence[str],
    purpose: Purpose | None,
    legal_basis: str | None,
    region: str | None,
    outcome: str,
    reason: str | None,
) -> AccessEvent:
    """Write one access event and its audit-log entry. ``open_personal_data`` calls it for
    household actions; a surface whose scope is not a household (a merchant reading the
    balance it just charged) calls it directly, after its own authorisation."""
    event = AccessEvent(
        occurred_at=dt.datetime.now(dt.UTC),
        account_id=principal.account_id,
        principal_kind=principal.kind,
        role=principal.role,
        institution=principal.institution,
        institution_code=principal.institution_code,
        household_id=household_id,
        household_region=region,
        action=action,
        categories=list(categories),
        purpose_kind=purpose.kind if purpose else None,
        purpose_reference=purpose.reference if purpose else None,
        legal_basis=legal_basis,
        outcome=outcome,
        reason=reason,
    )
    session.add(event)
    session.flush()
    # No names, IINs or values: who (account id, role, institution), what, why, and the basis.
    payload: dict[str, Any] = {
        "event": event.id,
        "action": action,
        "outcome": outcome,
        "reason": reason,
        "account": principal.account_id,
        "role": principal.role,
        "institution": principal.institution,
        "categories": sorted(categories),
        "purpose": str(purpose) if purpose else None,
        "legal_basis": legal_basis,
        "region": region,
    }
    event.audit_index = audit.append(session, "access", audit_subject(household_id), payload)
    anomalies.check(session, event)
    session.flush()
    return event


def open_personal_data(
    session: Session,
    principal: Principal,
    *,
    household_id: str,
    categories: Sequence[str],
    purpose: Purpose | None,
    action: str,
) -> None:
    """Allow and record one read of a household's personal data, or refuse it.

    Call it in the transaction that reads the data, before reading. Raises
    ``AccessDeniedError`` (403; ``AuthenticationRequiredError``, 401, for the anonymous);
    the refusal carries ``.attempt`` for ``record_denied``.
    """
    rule, region = check_household(
        session,
        principal,
        household_id=household_id,
        action=action,
        purpose=purpose,
        categories=categories,
    )
    record_access(
        session,
        principal=principal,
        action=action,
        household_id=household_id,
        categories=categories,
        purpose=purpose,
        legal_basis=rule.legal_basis,
        region=region,
        outcome="allowed",
        reason=None,
    )


def record_denied(attempt: Attempt, engine: Engine | None = None) -> AccessEvent:
    """Record a refused attempt in a transaction of its own (the reader's rolled back)."""
    with session_scope(engine) as session:
        return record_access(
            session,
            principal=attempt.principal,
            action=attempt.action,
            household_id=attempt.household_id,
            categories=attempt.categories,
            purpose=attempt.purpose,
            legal_basis=attempt.legal_basis,
            region=attempt.region,
            outcome="denied",
            reason=attempt.reason,
        )


# --- the citizen's view: who looked at my data -------------------------------------------------


def _households_ever(session: Session, iin: str) -> list[str]:
    return sorted(
        session.scalars(
            select(HouseholdFact.household_id).where(HouseholdFact.iin == iin).distinct()
        )
    )


def events_about(
    session: Session,
    iin: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    offset: int = 0,
    limit: int = 100,
) -> tuple[list[tuple[AccessEvent, Account | None]], int]:
    """Access events on every household the person belongs or belonged to, newest first."""
    ids = _households_ever(session, iin)
    if not ids:
        return [], 0
    query = select(AccessEvent).where(AccessEvent.household_id.in_(ids))
    if since is not None:
        query = query.where(AccessEvent.occurred_at >= since)
    if until is not None:
        query = query.where(AccessEvent.occurred_at < until)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(
        select(AccessEvent, Account)
        .outerjoin(Account, Account.id == AccessEvent.account_id)
        .where(AccessEvent.id.in_(select(query.subquery().c.id)))
        .order_by(AccessEvent.occurred_at.desc(), AccessEvent.id.desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return [(event, account) for event, account in rows], int(total)


def _identity_shown(event: AccessEvent) -> bool:
    from qamqor.privacy.policy import rule_for

    rule = rule_for(event.role, event.action)
    return event.principal_kind == "officer" and (rule is None or rule.identity_shown)


def _action_words(event: AccessEvent, lang: str) -> str:
    text = translate(f"access.action.{event.action}", lang)
    if event.purpose_kind:
        text += f" ({translate(f'purpose.{event.purpose_kind}', lang)} {event.purpose_reference})"
    if event.outcome == "denied":
        text += " — " + translate("access.outcome.denied", lang)
    return text


def log_item(
    session: Session, event: AccessEvent, account: Account | None, viewer_iin: str, lang: str
) -> dict[str, Any]:
    """One line of a citizen's access log. The officer is named only where the policy shows
    identities (never for auditors' checks); other household members are not named. A machine
    client — the shop that read the balance it charged — is an organisation, not a person: it
    is named as the institution (its client's name and BIN) where no institution was recorded."""
    officer = None
    if _identity_shown(event) and account is not None:
        officer = account.display_name
    institution = event.institution
    if institution is None and account is not None and event.principal_kind == "merchant_client":
        institution = f"{account.display_name} (BIN {account.bin})"
    if event.principal_kind == "citizen":
        who = "you" if account is not None and account.iin == viewer_iin else "household_member"
    else:
        who = event.principal_kind
    leaf_data = None
    if event.audit_index is not None:
        entry = session.get(AuditEntry, event.audit_index)
        if entry is not None and entry.payload is not None:
            leaf_data = audit.leaf_data(
                entry.leaf_index, entry.kind, entry.subject, entry.recorded_at, entry.payload
            ).decode()
    return {
        "id": event.id,
        "occurred_at": event.occurred_at,
        "household_id": event.household_id,
        "who": who,
        "institution": institution,
        "role": event.role,
        "officer": officer,
        "action": event.action,
        "action_text": _action_words(event, lang),
        "categories": list(event.categories),
        "purpose": (
            {"kind": event.purpose_kind, "reference": event.purpose_reference}
            if event.purpose_kind
            else None
        ),
        "legal_basis": event.legal_basis,
        "outcome": event.outcome,
        "audit_index": event.audit_index,
        "audit_leaf_data": leaf_data,
        "inclusion_proof": (
            f"/api/v1/audit/proofs/inclusion?index={event.audit_index}"
            if event.audit_index is not None
            else None
        ),
    }


CSV_COLUMNS = (
    "id",
    "occurred_at",
    "institution",
    "role",
    "officer",
    "action_text",
    "categories",
    "purpose",
    "legal_basis",
    "outcome",
    "audit_index",
)


def to_csv(items: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in items:
        purpose = item["purpose"]
        writer.writerow(
            [
                item["id"],
                item["occurred_at"].isoformat(),
                item["institution"] or "",
                item["role"],
                item["officer"] or "",
                item["action_text"],
                " ".join(item["categories"]),
                f"{purpose['kind']}:{purpose['reference']}" if purpose else "",
                item["legal_basis"] or "",
                item["outcome"],
                "" if item["audit_index"] is None else item["audit_index"],
            ]
        )
    return out.getvalue()


RECEIVER_SYSTEM = "Qamqor"


def find_usage_record(event: AccessEvent, lang: str) -> dict[str, Any]:
    """One ``usage`` of Estonia's Data Tracker (Andmejälgija) findUsage service, v2 shape
    (github.com/e-gov/AJ, doc/spetsifikatsioonid/dumonitor-openapi-v2.yaml): logtime,
    action (human-readable), receiverCode, receiverName, receiverSystem; plus ``usageId``."""
    return {
        "usageId": str(event.id),
        "logtime": event.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "action": _action_words(event, lang),
        "receiverCode": event.institution_code or event.institution or event.principal_kind,
        "receiverName": event.institution or translate(f"role.{event.role}", lang),
        "receiverSystem": RECEIVER_SYSTEM,
    }
