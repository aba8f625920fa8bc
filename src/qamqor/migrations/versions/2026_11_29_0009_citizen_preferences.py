"""citizen preferences

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 12:30:00

How each citizen wants to be written to, keyed by IIN (``privacy_citizen_preference``; see
src/qamqor/privacy/models.py and preferences.py). The new machine kind ``gateway_client``
needs no change: ``privacy_account.kind`` is a VARCHAR(16) without a CHECK constraint.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "privacy_citizen_preference",
        sa.Column("iin", sa.String(length=12), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_via", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "language IN ('ru', 'kk', 'en')",
            name=op.f("ck_privacy_citizen_preference_language"),
        ),
        sa.CheckConstraint(
            "set_via IN ('portal', 'api', 'sms', 'registry', 'support')",
            name=op.f("ck_privacy_citizen_preference_set_via"),
        ),
        sa.PrimaryKeyConstraint("iin", name=op.f("pk_privacy_citizen_preference")),
    )


def downgrade() -> None:
    op.drop_table("privacy_citizen_preference")
