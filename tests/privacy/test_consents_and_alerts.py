"""Consents (ISO/IEC TS 27560 with DPV) and access-anomaly alerts."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine

from qamqor.audit.models import AuditEntry
from qamqor.kit.db import session_scope
from qamqor.kit.settings import get_settings
from qamqor.privacy import access, anomalies, consents
from qamqor.privacy.errors import AccessDeniedError, ConsentRequiredError
from qamqor.privacy.identities import principal_of
from qamqor.privacy.models import Alert
from qamqor.privacy.policy import Purpose
from qamqor.web.app import create_app
from tests.privacy.builders import (
    bearer,
    fast_hashing,
    make_citizen,
    make_household,
    make_officer,
)

pytestmark = pytest.mark.usefixtures("fast_hashing")
__all__ = ["fast_hashing"]


def test_consent_lifecycle_through_the_api(engine: Engine) -> None:
    with session_scope() as session:
        head, spouse = make_household(session, "H30", "75", 300)
        _, token = make_citizen(session, spouse)
    client = TestClient(create_app())
    headers = bearer(token)
    with session_scope() as session, pytest.raises(ConsentRequiredError):
        consents.require_consent(session, "H30", "proactive_offers")

    given = client.post(
        "/api/v1/me/consents", json={"purpose": "proactive_offers"}, headers=headers
    )
    assert given.status_code == 201
    record = given.json()["record"]
    assert record["@type"] == "dpv:ConsentRecord"
    assert record["dpv:hasConsentStatus"] == "dpv:ConsentGiven"
    assert record["dpv:hasLegalBasis"] == "dpv:Consent"
    assert record["dpv:hasDataSubject"]["dpv:hasIdentifier"] == spouse
    assert record["dpv:hasPurpose"]["dct:identifier"] == "proactive_offers"
    again = client.post(
        "/api/v1/me/consents", json={"purpose": "proactive_offers"}, headers=headers
    )
    assert again.json()["record_id"] == given.json()["record_id"]  # one active grant

    with session_scope() as session:
        assert consents.require_consent(session, "H30", "proactive_offers").subject_iin == spouse
        assert consents.require_consent(session, spouse, "proactive_offers")
        with pytest.raises(ConsentRequiredError):
            consents.require_consent(session, head, "proactive_offers")  # the head gave none
        with pytest.raises(ConsentRequiredError):
            consents.require_consent(session, "H30", "research")

    withdrawn = client.delete("/api/v1/me/consents/proactive_offers", headers=headers)
    assert withdrawn.status_code == 200
    assert withdrawn.json()["status"] == "ConsentWithdrawn"
    events = [e["@type"] for e in withdrawn.json()["record"]["dct:hasPart"]]
    assert events == [
        ["dpv:ConsentGiven", "dpv:ExplicitlyExpressedConsent"],
        "dpv:ConsentWithdrawn",
    ]
    with session_scope() as session, pytest.raises(ConsentRequiredError) as missing:
        consents.require_consent(session, "H30", "proactive_offers")
    assert "proactive_offers" in str(missing.value)
    assert client.delete("/api/v1/me/consents/proactive_offers", headers=headers).status_code == 422

    listing = client.get("/api/v1/me/consents", headers={**headers, "Accept-Language": "kk"})
    body = listing.json()
    assert [p["purpose"] for p in body["purposes"]] == list(consents.PURPOSES)
    assert not any(p["active"] for p in body["purposes"])
    assert body["purposes"][0]["title"] == "Әлеуметтік қолдаудың проактивті ұсыныстары"
    assert len(body["history"]) == 1

    with session_scope() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.kind == "consent").order_by(AuditEntry.leaf_index)
        ).all()
        assert [json.loads(e.payload or "{}")["event"] for e in entries] == [
            "dpv:ConsentGiven",
            "dpv:ConsentWithdrawn",
        ]
        assert spouse not in "".join(e.payload or "" for e in entries)

    unknown = client.post("/api/v1/me/consents", json={"purpose": "marketing"}, headers=headers)
    assert unknown.status_code == 422 and "marketing" in unknown.json()["detail"]


def test_consent_expires(engine: Engine) -> None:
    with session_scope() as session:
        _, spouse = make_household(session, "H31", "75", 310)
        consent = consents.grant(session, spouse, "research", valid_days=1)
        consent.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with session_scope() as session:
        with pytest.raises(ConsentRequiredError):
            consents.require_consent(session, spouse, "research")
        assert consents.status(consents.history(session, spouse)[0]) == "dpv:ConsentExpired"


# --- anomalies -------------------------------------------------------------------------------


def _open(principal: object, household_id: str, purpose: str = "case:1") -> None:
    with session_scope() as session:
        access.open_personal_data(
            session,
            principal,  # type: ignore[arg-type]
            household_id=household_id,
            categories=["profile"],
            purpose=Purpose.parse(purpose),
            action="household.read_profile",
        )


def _all_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAMQOR_ANOMALY_WORK_HOURS", "00:00-23:59")
    get_settings.cache_clear()


def test_opening_many_households_in_a_day_raises_one_volume_alert(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _all_day(monkeypatch)
    monkeypatch.setattr(anomalies, "off_hours", lambda moment: False)
    monkeypatch.setenv("QAMQOR_ANOMALY_DAILY_HOUSEHOLDS", "2")
    get_settings.cache_clear()
    with session_scope() as session:
        for n in range(4):
            make_household(session, f"V{n}", "75", 400 + 2 * n)
        officer, _ = make_officer(session, "social_worker", ("75",))
        principal = principal_of(officer)
    _open(principal, "V0")
    _open(principal, "V0")  # the same household again is not more households
    _open(principal, "V1")
    with session_scope() as session:
        assert session.scalars(select(Alert)).all() == []
    _open(principal, "V2")
    _open(principal, "V3")
    with session_scope() as session:
        alert = session.scalars(select(Alert)).one()
        assert (alert.kind, alert.events, alert.account_id) == ("volume", 2, officer.id)
        assert "4 households" in alert.detail


def test_attempts_outside_the_region_raise_an_alert_though_refused(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(anomalies, "off_hours", lambda moment: False)
    with session_scope() as session:
        make_household(session, "R1", "71", 500)
        officer, token = make_officer(session, "program_officer", ("75",))
        _, auditor = make_officer(session, "auditor", ("all",))
    client = TestClient(create_app())
    refused = client.get(
        "/api/v1/audit/households/R1/access-log",  # not even the right role: no region alert
        headers={**bearer(token), "X-Purpose": "case:9"},
    )
    assert refused.status_code == 403
    with pytest.raises(AccessDeniedError):
        _open(principal_of(officer), "R1")
    alerts = client.get("/api/v1/audit/alerts", headers=bearer(auditor)).json()
    assert alerts["total"] == 0  # the direct call above was not recorded: nobody caught it
    with pytest.raises(AccessDeniedError) as refusal:
        _open(principal_of(officer), "R1")
    access.record_denied(refusal.value.attempt)  # type: ignore[attr-defined]  # as the API does
    alerts = client.get("/api/v1/audit/alerts", headers=bearer(auditor)).json()
    assert alerts["total"] == 1
    item = alerts["items"][0]
    assert item["kind"] == "out_of_region" and item["login"] == officer.login
    assert "region 71" in item["detail"]
    assert client.get("/api/v1/audit/alerts", headers=bearer(token)).status_code == 403


def test_access_outside_working_hours_raises_an_alert(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = dt.datetime.now(ZoneInfo("Asia/Almaty"))
    # a one-minute working window far from now: whatever the time, this access is off hours
    start = (now + dt.timedelta(hours=12)).replace(second=0, microsecond=0)
    end = start + dt.timedelta(minutes=1)
    monkeypatch.setenv("QAMQOR_ANOMALY_WORK_HOURS", f"{start:%H:%M}-{end:%H:%M}")
    get_settings.cache_clear()
    with session_scope() as session:
        make_household(session, "T1", "75", 600)
        officer, _ = make_officer(session, "social_worker", ("75",))
        citizen, _ = make_citizen(session, make_household(session, "T2", "75", 610)[0])
    _open(principal_of(officer), "T1")
    _open(principal_of(citizen), "T2", purpose="")  # citizens raise no alerts
    with session_scope() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.kind == "off_hours" and alert.account_id == officer.id
        assert "local time" in alert.detail


def test_off_hours_uses_almaty_time_and_weekends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAMQOR_ANOMALY_WORK_HOURS", "09:00-18:00")
    get_settings.cache_clear()
    # Monday 2026-11-30 04:30 UTC is 09:30 in Almaty (UTC+5): working time
    assert not anomalies.off_hours(dt.datetime(2026, 11, 30, 4, 30, tzinfo=dt.UTC))
    assert anomalies.off_hours(dt.datetime(2026, 11, 30, 3, 30, tzinfo=dt.UTC))  # 08:30
    assert anomalies.off_hours(dt.datetime(2026, 11, 30, 13, 0, tzinfo=dt.UTC))  # 18:00
    assert anomalies.off_hours(dt.datetime(2026, 11, 29, 6, 0, tzinfo=dt.UTC))  # Sunday
