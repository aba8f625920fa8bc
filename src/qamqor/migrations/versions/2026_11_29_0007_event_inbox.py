"""event inbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 10:00:00

The inbox of registry change events (registry/events.py). UNIQUE(source, event_id) is what
makes a push idempotent: concurrent pushes of one event insert with ON CONFLICT DO NOTHING.
(status, id) serves the worker's claim of the oldest pending events.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import qamqor.kit.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("subject_iin", sa.String(length=12), nullable=False),
        sa.Column("occurred_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        # ciphertext (privacy.fields.EncryptedString) is plain TEXT to the database
        sa.Column("payload_sealed", sa.Text(), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("applied_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_event")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_registry_event_source_event_id")),
    )
    with op.batch_alter_table("registry_event", schema=None) as batch_op:
        batch_op.create_index("ix_registry_event_status_id", ["status", "id"], unique=False)
        batch_op.create_index("ix_registry_event_subject_iin", ["subject_iin"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("registry_event", schema=None) as batch_op:
        batch_op.drop_index("ix_registry_event_subject_iin")
        batch_op.drop_index("ix_registry_event_status_id")

    op.drop_table("registry_event")
