"""Tables of the privacy feature: accounts, credentials, access events, consents, alerts, and
how each citizen wants to be contacted.

Secrets are never stored: passwords as Argon2id hashes, session ids and bearer tokens as the
SHA-256 of a 256-bit random value (a table leak gives nothing to replay; SHA-256 suffices
because the values are random, not guessable like passwords).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from qamqor.kit.db import Base, UTCDateTime


class Account(Base):
    """Anyone or anything that signs in: a citizen, an officer, a registry or a merchant.

    ``kind`` is citizen | officer | registry_client | merchant_client | gateway_client. An
    officer has a role, an institution and a region scope (``all`` or space-separated KATO
    region codes); a registry client is bound to one source registry, a merchant client to one
    BIN; the SMS gateway's client to nothing. ``kind`` has no CHECK constraint: the kinds are
    checked by ``qamqor.privacy.identities``.
    """

    __tablename__ = "privacy_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    login: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    iin: Mapped[str | None] = mapped_column(String(12), unique=True)
    role: Mapped[str | None] = mapped_column(String(32))
    institution: Mapped[str | None] = mapped_column(String(200))
    institution_code: Mapped[str | None] = mapped_column(String(32))  # e.g. the BIN
    regions: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(32))
    bin: Mapped[str | None] = mapped_column(String(12))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Credential(Base):
    """A session (cookie), a bearer token or a machine client's token; only its hash is kept."""

    __tablename__ = "privacy_credential"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("privacy_account.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # session | bearer | client
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AccessEvent(Base):
    """One attempt to open a household's personal data, allowed or denied, and why.

    Who (account, role, institution), when, which household and categories, the stated
    purpose and the legal basis the policy gives. ``audit_index`` is the audit-log leaf that
    commits to it; denied attempts are recorded too (they feed the anomaly checks).
    """

    __tablename__ = "privacy_access_event"
    __table_args__ = (
        Index("ix_privacy_access_event_household", "household_id", "occurred_at"),
        Index("ix_privacy_access_event_account", "account_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("privacy_account.id", ondelete="SET NULL")
    )
    principal_kind: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(32))
    institution: Mapped[str | None] = mapped_column(String(200))
    institution_code: Mapped[str | None] = mapped_column(String(32))
    household_id: Mapped[str] = mapped_column(String(200))
    household_region: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    categories: Mapped[list[str]] = mapped_column(JSON)
    purpose_kind: Mapped[str | None] = mapped_column(String(16))
    purpose_reference: Mapped[str | None] = mapped_column(String(64))
    legal_basis: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))  # allowed | denied
    reason: Mapped[str | None] = mapped_column(String(64))
    audit_index: Mapped[int | None] = mapped_column(BigInteger)


class Consent(Base):
    """One consent of one data subject for one purpose, after ISO/IEC TS 27560 with DPV terms.

    A withdrawal closes the record (``withdrawn_at``); a new grant opens a new record, so the
    history of every purpose stays readable.
    """

    __tablename__ = "privacy_consent"
    __table_args__ = (Index("ix_privacy_consent_subject", "subject_iin", "purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[str] = mapped_column(String(36), unique=True)
    subject_iin: Mapped[str] = mapped_column(String(12))
    household_id: Mapped[str | None] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(32))
    notice_version: Mapped[str] = mapped_column(String(32))
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    grant_audit_index: Mapped[int | None] = mapped_column(BigInteger)
    withdraw_audit_index: Mapped[int | None] = mapped_column(BigInteger)


class Alert(Base):
    """An access anomaly for auditors: one row per officer, kind and local day.

    ``kind`` is volume | out_of_region | off_hours; ``events`` counts the access events that
    matched on that day, ``last_event_id`` points at the latest.
    """

    __tablename__ = "privacy_alert"
    __table_args__ = (
        UniqueConstraint("account_id", "kind", "day", name="uq_privacy_alert_account_kind_day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("privacy_account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    day: Mapped[dt.date] = mapped_column(Date)
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    events: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text)
    first_event_id: Mapped[int] = mapped_column(BigInteger)
    last_event_id: Mapped[int] = mapped_column(BigInteger)


class OidcRequest(Base):
    """An OpenID Connect authorization request in flight: state, nonce and PKCE verifier.

    Single use: the callback deletes it; rows older than ten minutes are refused.
    """

    __tablename__ = "privacy_oidc_request"

    state_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    code_verifier: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


PREFERENCE_LANGUAGES = ("ru", "kk", "en")
PREFERENCE_CHANNELS = ("portal", "api", "sms", "registry", "support")


class CitizenPreference(Base):
    """How a citizen wants to be written to, keyed by IIN: most recipients of an SMS have no
    account, so the preference cannot live on ``privacy_account``.

    ``language`` is ru | kk | en; no row means Russian. ``set_via`` is where the latest
    choice came from: ``portal`` or ``api`` (the citizen, signed in), ``sms`` (a language
    keyword texted back), ``registry`` (a registry's record of the language of
    correspondence) or ``support`` (an operator, on the citizen's call, with the CLI).
    """

    __tablename__ = "privacy_citizen_preference"
    __table_args__ = (
        CheckConstraint(
            "language IN ('ru', 'kk', 'en')",
            name="language",
        ),
        CheckConstraint(
            "set_via IN ('portal', 'api', 'sms', 'registry', 'support')",
            name="set_via",
        ),
    )

    iin: Mapped[str] = mapped_column(String(12), primary_key=True)
    language: Mapped[str] = mapped_column(String(2))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    set_via: Mapped[str] = mapped_column(String(16))
