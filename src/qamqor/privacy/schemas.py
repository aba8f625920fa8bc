"""API shapes of the privacy feature."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field


class LoginIn(BaseModel):
    login: str = Field(description="An IIN for citizens, the login for officers", max_length=64)
    password: str = Field(max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the token expires")


class MeOut(BaseModel):
    kind: str
    role: str
    login: str | None
    display_name: str | None
    institution: str | None
    regions: list[str]
    iin: str | None
    source: str | None
    bin: str | None
    households: list[str] = Field(default_factory=list)
    actions: list[str] = Field(description="What the policy lets this principal do")


class PurposeOut(BaseModel):
    kind: str
    reference: str


class AccessLogItem(BaseModel):
    id: int
    occurred_at: dt.datetime
    household_id: str
    who: str = Field(description="officer | you | household_member | registry_client | ...")
    institution: str | None
    role: str
    officer: str | None = Field(description="Named only where the policy shows identities")
    action: str
    action_text: str
    categories: list[str]
    purpose: PurposeOut | None
    legal_basis: str | None
    outcome: str
    audit_index: int | None = Field(description="Leaf index in the audit log")
    audit_leaf_data: str | None = Field(description="The exact bytes the audit leaf hashes")
    inclusion_proof: str | None = Field(description="Where to fetch the inclusion proof")


class AccessLogPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[AccessLogItem]


class UsageOut(BaseModel):
    usageId: str
    logtime: str
    action: str
    receiverCode: str
    receiverName: str
    receiverSystem: str


class FindUsageOut(BaseModel):
    totalUsages: int
    usages: list[UsageOut]


class ConsentIn(BaseModel):
    purpose: str = Field(description="proactive_offers, bank_sharing or research")
    valid_days: int | None = Field(default=None, ge=1, le=3650)


class ConsentOut(BaseModel):
    record_id: str
    purpose: str
    title: str
    status: str
    active: bool
    granted_at: dt.datetime
    expires_at: dt.datetime | None
    withdrawn_at: dt.datetime | None
    grant_audit_index: int | None
    withdraw_audit_index: int | None
    record: dict[str, Any] = Field(description="ISO/IEC TS 27560 record, DPV JSON-LD")


class ConsentPurposeOut(BaseModel):
    purpose: str
    title: str
    active: bool


class ConsentsOut(BaseModel):
    purposes: list[ConsentPurposeOut]
    history: list[ConsentOut]


class AlertOut(BaseModel):
    id: int
    kind: str
    day: dt.date
    account_id: int
    login: str | None
    display_name: str | None
    institution: str | None
    role: str | None
    events: int
    detail: str
    raised_at: dt.datetime
    updated_at: dt.datetime
    last_event_id: int


class AlertPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[AlertOut]


class HouseholdAccessOut(BaseModel):
    id: int
    occurred_at: dt.datetime
    account_id: int | None
    role: str
    institution: str | None
    action: str
    categories: list[str]
    purpose: PurposeOut | None
    outcome: str
    reason: str | None
    audit_index: int | None


class AccountOut(BaseModel):
    id: int
    kind: str
    login: str
    display_name: str
    role: str | None
    institution: str | None
    regions: str | None
    source: str | None
    bin: str | None
    locked: bool
    created_at: dt.datetime
    last_login_at: dt.datetime | None


class PreferencesIn(BaseModel):
    language: str = Field(
        pattern="^(ru|kk|en)$", description="ru, kk or en: the language of SMS and notices"
    )


class PreferencesOut(BaseModel):
    iin: str
    language: str = Field(description="ru, kk or en; ru until the citizen chooses")
    chosen: bool = Field(description="false: nothing chosen yet, the default applies")
    set_via: str | None = Field(description="portal, api, sms, registry or support")
    updated_at: dt.datetime | None
