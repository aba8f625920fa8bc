"""audit log

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_audit_entry")),
    )
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_entry_subject"), ["subject"], unique=False)

    op.create_table(
        "audit_node",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("node_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "node_index", name=op.f("pk_audit_node")),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoint")),
    )
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_checkpoint_tree_size"), ["tree_size"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_checkpoint_tree_size"))
    op.drop_table("audit_checkpoint")
    op.drop_table("audit_head")
    op.drop_table("audit_node")
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_entry_subject"))
    op.drop_table("audit_entry")
