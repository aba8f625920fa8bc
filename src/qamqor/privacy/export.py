"""The right of access: everything Qamqor holds about a citizen's household, with its sources.

One JSON document: the household and its members; every registry fact about each member, with
the batch, file, line and date it came from; every profile version, the current one with the
registry rows behind each value; the data-quality issues about the household; who accessed its
data; the citizen's consents; the bank account on file. Special categories (a diagnosis behind
a disability) are shown for the citizen's own records only: another member's stay withheld.

The export is itself a read of personal data, so it goes through ``open_personal_data`` and
appears in the access log it contains the rest of.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qamqor.kit.errors import NotFoundError
from qamqor.privacy import access, consents, households
from qamqor.privacy.identities import Principal
from qamqor.privacy.policy import BASIS_SUBJECT
from qamqor.registry.models import FACT_MODELS, Batch

CATEGORIES = [
    "identity",
    "household",
    "income",
    "employment",
    "property",
    "disability",
    "finance",
    "profile",
    "quality",
    "access_log",
    "consents",
    "bank_account",
]
WITHHELD = "[withheld: special category of another person]"
_PROVENANCE = {"id", "batch_id", "line_no", "source_record_id", "valid_from", "valid_to"}


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _facts(session: Session, iins: list[str], own_iin: str) -> dict[str, list[dict[str, Any]]]:
    from qamqor.privacy.fields import EncryptedString, reveal

    batches: dict[int, Batch] = {}
    out: dict[str, list[dict[str, Any]]] = {}
    for source, model in FACT_MODELS.items():
        table = model.__table__
        facts: Sequence[Any] = session.scalars(
            select(model).where(table.c.iin.in_(iins)).order_by(table.c.batch_id, table.c.line_no)
        ).all()
        rows = []
        for fact in facts:
            batch = batches.get(fact.batch_id) or session.get(Batch, fact.batch_id)
            assert batch is not None
            batches[batch.id] = batch
            values: dict[str, Any] = {}
            for column in table.columns:
                if column.name in _PROVENANCE:
                    continue
                if isinstance(column.type, EncryptedString):
                    if fact.iin != own_iin:
                        values[column.name] = WITHHELD
                    else:
                        secret = reveal(fact, column.name)
                        values[column.name] = None if secret is None else secret.reveal()
                    continue
                values[column.name] = _plain(getattr(fact, column.name))
            rows.append(
                {
                    "values": values,
                    "source": {
                        "registry": source,
                        "record_id": fact.source_record_id,
                        "batch_id": fact.batch_id,
                        "file_name": batch.file_name,
                        "file_sha256": batch.file_sha256,
                        "line_no": fact.line_no,
                        "received_at": _plain(batch.received_at),
                        "valid_from": _plain(fact.valid_from),
                        "valid_to": _plain(fact.valid_to),
                    },
                }
            )
        out[source] = rows
    return out


def _profiles(engine: Engine, session: Session, household_id: str) -> dict[str, Any]:
    from qamqor.profiles.schemas import profile_document
    from qamqor.profiles.service import history

    try:
        versions = history(session, household_id)
    except NotFoundError:
        return {"current": None, "versions": []}
    return {
        "current": profile_document(engine, session, household_id, with_sources=True),
        "versions": [
            {
                "version": v.version,
                "as_of": _plain(v.as_of),
                "build_id": v.build_id,
                "features": v.features,
                "quality": v.quality,
            }
            for v in versions
        ],
    }


def _issues(session: Session, household_id: str, iins: list[str]) -> list[dict[str, Any]]:
    from qamqor.quality.models import QualityIssue, QualityIssueSubject

    ids = select(QualityIssueSubject.issue_id).where(
        or_(QualityIssueSubject.household_id == household_id, QualityIssueSubject.iin.in_(iins))
    )
    issues = session.scalars(
        select(QualityIssue).where(QualityIssue.id.in_(ids)).order_by(QualityIssue.id)
    ).all()
    return [
        {
            "id": i.id,
            "check": i.check_id,
            "severity": i.severity,
            "owner": i.owner,
            "status": i.status,
            "detail": i.detail,
            "opened_at": _plain(i.opened_at),
            "closed_at": _plain(i.closed_at),
        }
        for i in issues
    ]


def export_household(
    engine: Engine, session: Session, principal: Principal, lang: str = "en"
) -> dict[str, Any]:
    """The citizen's household, everything about it, in the caller's transaction."""
    from qamqor.payouts.service import get_bank_account

    iin = principal.iin
    if not iin:
        raise NotFoundError("only a citizen can export their household's data")
    found = households.households_of(session, iin)
    if not found:
        raise NotFoundError("no household lists you as a current member")
    household_id = found[0]
    access.open_personal_data(
        session,
        principal,
        household_id=household_id,
        categories=CATEGORIES,
        purpose=None,
        action="household.export",
    )
    members = households.members(session, household_id)
    iins = sorted({m.iin for m in members} | {iin})
    events, _ = access.events_about(session, iin, limit=100_000)
    account = get_bank_account(session, iin)
    return {
        "generated_at": _plain(dt.datetime.now(dt.UTC)),
        "legal_basis": BASIS_SUBJECT,
        "subject_iin": iin,
        "household": {
            "household_id": household_id,
            "members": [{"iin": m.iin, "relation": m.relation} for m in members],
        },
        "facts": _facts(session, iins, iin),
        "profile": _profiles(engine, session, household_id),
        "quality_issues": _issues(session, household_id, iins),
        "access_log": [access.log_item(session, e, a, iin, lang) for e, a in events],
        "consents": [consents.item(c, lang) for c in consents.history(session, iin)],
        "bank_account": None
        if account is None
        else {
            "iban": account.iban.reveal(),
            "bic": account.bic,
            "added_at": _plain(account.added_at),
        },
    }
