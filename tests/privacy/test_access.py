"""Households, the choke point ``open_personal_data`` and the citizen's access log."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from qamqor.audit import merkle
from qamqor.audit import service as audit
from qamqor.audit.models import AuditEntry
from qamqor.kit.db import session_scope
from qamqor.privacy import access, households
from qamqor.privacy.errors import AccessDeniedError, AuthenticationRequiredError
from qamqor.privacy.identities import ANONYMOUS, principal_of
from qamqor.privacy.models import AccessEvent
from qamqor.privacy.policy import Purpose
from qamqor.web.app import create_app
from tests.privacy.builders import (
    add_member,
    add_person,
    bearer,
    fast_hashing,
    make_citizen,
    make_household,
    make_officer,
)
from tests.registry.builders import valid_iin

pytestmark = pytest.mark.usefixtures("fast_hashing")
__all__ = ["fast_hashing"]
CASE = Purpose("case", "2026-123")


# --- households ------------------------------------------------------------------------------


def test_latest_version_of_each_record_decides_membership(engine: Engine) -> None:
    head, child = valid_iin(10), valid_iin(11)
    with session_scope() as session:
        add_person(session, head, "75")
        add_member(session, "H1", head, "head")
        add_member(session, "H1", child, "child", record_id="R-child")
        # the registry later closes the child's membership under the same record id
        add_member(
            session,
            "H1",
            child,
            "child",
            record_id="R-child",
            member_to=dt.date(2026, 3, 1),
            updated_on=dt.date(2026, 3, 2),
        )
        # a membership ending in the future still counts
        add_member(session, "H1", valid_iin(12), "spouse", member_to=dt.date(2099, 1, 1))
    with session_scope() as session:
        assert {m.iin for m in households.members(session, "H1")} == {head, valid_iin(12)}
        assert households.households_of(session, child) == []
        assert households.is_member(session, "H1", head)
        assert households.household_region(session, "H1") == "75"
        # before the closing version's end date the child was a member
        assert households.is_member(session, "H1", child, on=dt.date(2026, 2, 1))


def test_household_region_is_the_heads_latest_population_fact(engine: Engine) -> None:
    with session_scope() as session:
        head, _ = make_household(session, "H2", "19", 20)
        add_person(session, head, "71", updated_on=dt.date(2026, 6, 1))  # moved to Astana
        add_member(session, "H3", valid_iin(30), "child")  # no head: no region
    with session_scope() as session:
        assert households.household_region(session, "H2") == "71"
        assert households.household_region(session, "H3") is None


# --- the choke point -------------------------------------------------------------------------


def test_an_allowed_read_is_recorded_with_its_audit_leaf_in_the_same_transaction(
    engine: Engine,
) -> None:
    with session_scope() as session:
        make_household(session, "H10", "75", 100)
        officer, _ = make_officer(session, "social_worker", ("75",))
        principal = principal_of(officer)
    with session_scope() as session:
        access.open_personal_data(
            session,
            principal,
            household_id="H10",
            categories=["profile", "income"],
            purpose=CASE,
            action="household.read_profile",
        )
    with session_scope() as session:
        event = session.scalars(select(AccessEvent)).one()
        assert (event.outcome, event.role, event.household_region) == (
            "allowed",
            "social_worker",
            "75",
        )
        assert event.categories == ["profile", "income"]
        assert (event.purpose_kind, event.purpose_reference) == ("case", "2026-123")
        assert event.legal_basis and "No. 224-VII" in event.legal_basis
        entry = session.get(AuditEntry, event.audit_index)
        assert entry is not None and entry.kind == "access" and entry.subject == "H10"
        payload = json.loads(entry.payload or "{}")
        assert payload["event"] == event.id and payload["purpose"] == "case:2026-123"
        # no personal values in the audit log: no IINs, no names
        assert valid_iin(100) not in (entry.payload or "") and "Ахметов" not in (
            entry.payload or ""
        )


def test_a_read_that_rolls_back_leaves_no_access_record(engine: Engine) -> None:
    with session_scope() as session:
        make_household(session, "H11", "75", 110)
        officer, _ = make_officer(session, "program_officer", ("75",))
        principal = principal_of(officer)
    with pytest.raises(RuntimeError), session_scope() as session:
        access.open_personal_data(
            session,
            principal,
            household_id="H11",
            categories=["profile"],
            purpose=CASE,
            action="household.read_profile",
        )
        raise RuntimeError("the read failed after the check")
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(AccessEvent)) == 0
        assert audit.tree_size(session) == 0


@pytest.mark.parametrize(
    ("role", "regions", "purpose", "reason"),
    [
        ("social_worker", ("19",), CASE, "outside_region"),
        ("social_worker", ("75",), None, "purpose_required"),
        ("analyst", ("all",), CASE, "role_not_allowed"),
        ("auditor", ("all",), CASE, "role_not_allowed"),
        ("admin", ("all",), None, "purpose_required"),
    ],
)
def test_officers_are_refused_outside_their_scope_and_the_attempt_is_recorded(
    engine: Engine, role: str, regions: tuple[str, ...], purpose: Purpose | None, reason: str
) -> None:
    with session_scope() as session:
        make_household(session, "H12", "75", 120)
        officer, _ = make_officer(session, role, regions)
        principal = principal_of(officer)
    with pytest.raises(AccessDeniedError) as refused, session_scope() as session:
        access.open_personal_data(
            session,
            principal,
            household_id="H12",
            categories=["profile"],
            purpose=purpose,
            action="household.read_profile",
        )
    assert refused.value.reason == reason
    attempt = refused.value.attempt  # type: ignore[attr-defined]
    access.record_denied(attempt)
    with session_scope() as session:
        event = session.scalars(select(AccessEvent)).one()
        assert (event.outcome, event.reason) == ("denied", reason)
        assert event.audit_index is not None


def test_national_scope_and_citizens(engine: Engine) -> None:
    with session_scope() as session:
        _, spouse = make_household(session, "H13", "75", 130)
        other, _ = make_household(session, "H14", "19", 140)
        admin, _ = make_officer(session, "admin", ("all",))
        citizen, _ = make_citizen(session, spouse)
        outsider, _ = make_citizen(session, other)
        admin_p, citizen_p, outsider_p = (principal_of(a) for a in (admin, citizen, outsider))
    with session_scope() as session:
        access.open_personal_data(
            session,
            admin_p,
            household_id="H13",
            categories=["profile"],
            purpose=Purpose("review", "R-1"),
            action="household.read_profile",
        )
        access.open_personal_data(
            session,
            citizen_p,
            household_id="H13",
            categories=["profile"],
            purpose=None,
            action="household.read_profile",
        )
    with pytest.raises(AccessDeniedError) as refused, session_scope() as session:
        access.open_personal_data(
            session,
            outsider_p,
            household_id="H13",
            categories=["profile"],
            purpose=None,
            action="household.read_profile",
        )
    assert refused.value.reason == "not_member"
    with pytest.raises(AuthenticationRequiredError), session_scope() as session:
        access.open_personal_data(
            session,
            ANONYMOUS,
            household_id="H13",
            categories=["profile"],
            purpose=None,
            action="household.read_profile",
        )


def test_unknown_actions_and_categories_are_programming_errors(engine: Engine) -> None:
    with session_scope() as session, pytest.raises(ValueError, match="categories"):
        access.open_personal_data(
            session,
            ANONYMOUS,
            household_id="H",
            categories=["shoe_size"],
            purpose=None,
            action="household.read_profile",
        )
    with session_scope() as session, pytest.raises(ValueError, match="not an action"):
        access.open_personal_data(
            session,
            ANONYMOUS,
            household_id="H",
            categories=["profile"],
            purpose=None,
            action="registry.read_batches",
        )


# --- the citizen's access log ----------------------------------------------------------------


@pytest.fixture
def scene(engine: Engine) -> dict[str, str]:
    """A household in Almaty, a citizen of it, a social worker who opens it, an auditor who
    checks its access log, and an officer from Astana who tries."""
    with session_scope() as session:
        _, spouse = make_household(session, "H20", "75", 200)
        _, citizen = make_citizen(session, spouse)
        _, worker = make_officer(session, "social_worker", ("75",))
        _, stranger = make_officer(session, "social_worker", ("71",))
        _, auditor = make_officer(session, "auditor", ("all",))
    return {"citizen": citizen, "worker": worker, "stranger": stranger, "auditor": auditor}


def test_who_looked_at_my_data(scene: dict[str, str]) -> None:
    client = TestClient(create_app())
    opened = client.get(
        "/api/v1/audit/households/H20/access-log",
        headers={**bearer(scene["auditor"]), "X-Purpose": "review:AUD-7"},
    )
    assert opened.status_code == 200
    # the social worker opens the household: the choke point in a request-like transaction
    with session_scope() as session:
        from qamqor.privacy.identities import resolve_token

        worker = resolve_token(session, scene["worker"], ("bearer",))
        assert worker is not None
        access.open_personal_data(
            session,
            worker,
            household_id="H20",
            categories=["profile", "income"],
            purpose=CASE,
            action="household.read_profile",
        )
    # an officer from another region is refused, and that shows too
    refused = client.get(
        "/api/v1/audit/households/H20/access-log",
        headers={**bearer(scene["stranger"]), "X-Purpose": "case:1"},
    )
    assert refused.status_code == 403

    log = client.get("/api/v1/me/access-log", headers=bearer(scene["citizen"])).json()
    assert log["total"] == 3
    denied_item, worker_item, auditor_item = log["items"]
    assert denied_item["outcome"] == "denied" and denied_item["audit_index"] is not None
    assert worker_item["role"] == "social_worker"
    assert worker_item["officer"] == "Officer social_worker"  # the officer is named
    assert worker_item["purpose"] == {"kind": "case", "reference": "2026-123"}
    assert worker_item["institution"] == "Institution of social_worker"
    assert auditor_item["role"] == "auditor" and auditor_item["officer"] is None
    assert auditor_item["categories"] == ["access_log"]

    # each item proves itself: its leaf data hashes to a leaf in the signed tree
    leaf = worker_item["audit_leaf_data"].encode()
    proof = client.get(worker_item["inclusion_proof"], headers=bearer(scene["citizen"])).json()
    assert base64.b64decode(proof["leaf_hash"]) == merkle.leaf_hash(leaf)
    root = merkle.root_from_inclusion_proof(
        proof["index"],
        proof["tree_size"],
        merkle.leaf_hash(leaf),
        [base64.b64decode(h) for h in proof["hashes"]],
    )
    assert root == base64.b64decode(proof["root_hash"])


def test_access_log_as_csv_and_in_data_tracker_shape(scene: dict[str, str]) -> None:
    client = TestClient(create_app())
    for n in range(3):
        ok = client.get(
            "/api/v1/audit/households/H20/access-log",
            headers={**bearer(scene["auditor"]), "X-Purpose": f"review:A-{n}"},
        )
        assert ok.status_code == 200
    headers = {**bearer(scene["citizen"]), "Accept-Language": "ru"}
    exported = client.get("/api/v1/me/access-log", params={"format": "csv"}, headers=headers)
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 3 and rows[0]["role"] == "auditor" and rows[0]["officer"] == ""
    assert rows[0]["action_text"].startswith("Проверка журнала доступа")
    assert rows[0]["purpose"] == "review:A-2"

    usage = client.get(
        "/api/v1/me/access-log/find-usage", params={"limit": 2}, headers=headers
    ).json()
    assert usage["totalUsages"] == 3 and len(usage["usages"]) == 2
    first = usage["usages"][0]
    assert set(first) == {
        "usageId",
        "logtime",
        "action",
        "receiverCode",
        "receiverName",
        "receiverSystem",
    }
    assert first["receiverName"] == "Institution of auditor"
    assert first["receiverCode"] == "990440000014" or first["receiverCode"].isdigit()
    assert first["receiverSystem"] == "Qamqor"
    # newest first, as the Data Tracker protocol asks
    assert first["logtime"] >= usage["usages"][1]["logtime"]
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    empty = client.get(
        "/api/v1/me/access-log/find-usage", params={"periodStart": later}, headers=headers
    ).json()
    assert empty == {"totalUsages": 0, "usages": []}


def test_only_citizens_have_an_access_log(scene: dict[str, str]) -> None:
    client = TestClient(create_app())
    assert client.get("/api/v1/me/access-log").status_code == 401
    refused = client.get(
        "/api/v1/me/access-log", headers={**bearer(scene["worker"]), "Accept-Language": "kk"}
    )
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("Қолжетімділік жоқ")
