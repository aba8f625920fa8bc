"""privacy identities access log consents

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 07:00:00

Accounts and their hashed credentials, access events, consents (ISO/IEC TS 27560), access
alerts and OpenID Connect requests in flight (see src/qamqor/privacy/models.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "privacy_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("iin", sa.String(length=12), nullable=True),
        sa.Column("role", sa.String(length=32), nullable=True),
        sa.Column("institution", sa.String(length=200), nullable=True),
        sa.Column("institution_code", sa.String(length=32), nullable=True),
        sa.Column("regions", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=True),
        sa.Column("bin", sa.String(length=12), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_login_at", TIMESTAMP, nullable=True),
        sa.Column("disabled_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_account")),
        sa.UniqueConstraint("iin", name=op.f("uq_privacy_account_iin")),
        sa.UniqueConstraint("login", name=op.f("uq_privacy_account_login")),
    )
    op.create_table(
        "privacy_credential",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["privacy_account.id"],
            name=op.f("fk_privacy_credential_account_id_privacy_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_credential")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_privacy_credential_token_sha256")),
    )
    op.create_index(
        op.f("ix_privacy_credential_account_id"),
        "privacy_credential",
        ["account_id"],
        unique=False,
    )
    op.create_table(
        "privacy_access_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("principal_kind", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("institution", sa.String(length=200), nullable=True),
        sa.Column("institution_code", sa.String(length=32), nullable=True),
        sa.Column("household_id", sa.String(length=200), nullable=False),
        sa.Column("household_region", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("purpose_kind", sa.String(length=16), nullable=True),
        sa.Column("purpose_reference", sa.String(length=64), nullable=True),
        sa.Column("legal_basis", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("audit_index", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["privacy_account.id"],
            name=op.f("fk_privacy_access_event_account_id_privacy_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_access_event")),
    )
    op.create_index(
        "ix_privacy_access_event_account",
        "privacy_access_event",
        ["account_id", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_privacy_access_event_household",
        "privacy_access_event",
        ["household_id", "occurred_at"],
        unique=False,
    )
    op.create_table(
        "privacy_consent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(length=36), nullable=False),
        sa.Column("subject_iin", sa.String(length=12), nullable=False),
        sa.Column("household_id", sa.String(length=200), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("notice_version", sa.String(length=32), nullable=False),
        sa.Column("granted_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("withdrawn_at", TIMESTAMP, nullable=True),
        sa.Column("grant_audit_index", sa.BigInteger(), nullable=True),
        sa.Column("withdraw_audit_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_consent")),
        sa.UniqueConstraint("record_id", name=op.f("uq_privacy_consent_record_id")),
    )
    op.create_index(
        "ix_privacy_consent_subject",
        "privacy_consent",
        ["subject_iin", "purpose"],
        unique=False,
    )
    op.create_table(
        "privacy_alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("raised_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("first_event_id", sa.BigInteger(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["privacy_account.id"],
            name=op.f("fk_privacy_alert_account_id_privacy_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_alert")),
        sa.UniqueConstraint("account_id", "kind", "day", name="uq_privacy_alert_account_kind_day"),
    )
    op.create_table(
        "privacy_oidc_request",
        sa.Column("state_sha256", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("state_sha256", name=op.f("pk_privacy_oidc_request")),
    )


def downgrade() -> None:
    op.drop_table("privacy_oidc_request")
    op.drop_table("privacy_alert")
    op.drop_index("ix_privacy_consent_subject", table_name="privacy_consent")
    op.drop_table("privacy_consent")
    op.drop_index("ix_privacy_access_event_household", table_name="privacy_access_event")
    op.drop_index("ix_privacy_access_event_account", table_name="privacy_access_event")
    op.drop_table("privacy_access_event")
    op.drop_index(op.f("ix_privacy_credential_account_id"), table_name="privacy_credential")
    op.drop_table("privacy_credential")
    op.drop_table("privacy_account")
