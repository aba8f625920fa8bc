"""profiles and data quality

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import qamqor.kit.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dq_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("households", sa.BigInteger(), nullable=False),
        sa.Column("findings", sa.BigInteger(), nullable=False),
        sa.Column("opened", sa.BigInteger(), nullable=False),
        sa.Column("closed", sa.BigInteger(), nullable=False),
        sa.Column("totals", sa.JSON(), nullable=False),
        sa.Column("started_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dq_run")),
    )
    op.create_table(
        "profile_build",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("max_batch_id", sa.Integer(), nullable=False),
        sa.Column("catalogue_sha256", sa.String(length=64), nullable=False),
        sa.Column("feature_names", sa.JSON(), nullable=False),
        sa.Column("households", sa.BigInteger(), nullable=False),
        sa.Column("changed", sa.BigInteger(), nullable=False),
        sa.Column("phases", sa.JSON(), nullable=False),
        sa.Column("started_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_build")),
    )
    op.create_table(
        "dq_issue",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("check_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("region_code", sa.String(length=32), nullable=True),
        sa.Column("persons", sa.Integer(), nullable=False),
        sa.Column("households", sa.Integer(), nullable=False),
        sa.Column("opened_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("opened_run_id", sa.Integer(), nullable=False),
        sa.Column("last_run_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["last_run_id"], ["dq_run.id"], name=op.f("fk_dq_issue_last_run_id_dq_run")
        ),
        sa.ForeignKeyConstraint(
            ["opened_run_id"], ["dq_run.id"], name=op.f("fk_dq_issue_opened_run_id_dq_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dq_issue")),
        sa.UniqueConstraint("check_id", "key", name=op.f("uq_dq_issue_check_id")),
    )
    with op.batch_alter_table("dq_issue", schema=None) as batch_op:
        batch_op.create_index("ix_dq_issue_status_owner", ["status", "owner"], unique=False)

    op.create_table(
        "profile_head",
        sa.Column("household_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("region_code", sa.String(length=32), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"], ["profile_build.id"], name=op.f("fk_profile_head_build_id_profile_build")
        ),
        sa.PrimaryKeyConstraint("household_id", name=op.f("pk_profile_head")),
    )
    with op.batch_alter_table("profile_head", schema=None) as batch_op:
        batch_op.create_index("ix_profile_head_region_code", ["region_code"], unique=False)

    op.create_table(
        "profile_version",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("household_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("build_id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["build_id"],
            ["profile_build.id"],
            name=op.f("fk_profile_version_build_id_profile_build"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_version")),
        sa.UniqueConstraint(
            "household_id", "version", name=op.f("uq_profile_version_household_id")
        ),
    )
    op.create_table(
        "dq_issue_subject",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("issue_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("household_id", sa.String(length=200), nullable=True),
        sa.Column("iin", sa.String(length=12), nullable=True),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["dq_issue.id"],
            name=op.f("fk_dq_issue_subject_issue_id_dq_issue"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dq_issue_subject")),
    )
    with op.batch_alter_table("dq_issue_subject", schema=None) as batch_op:
        batch_op.create_index("ix_dq_issue_subject_household_id", ["household_id"], unique=False)
        batch_op.create_index("ix_dq_issue_subject_iin", ["iin"], unique=False)
        batch_op.create_index("ix_dq_issue_subject_issue_id", ["issue_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dq_issue_subject", schema=None) as batch_op:
        batch_op.drop_index("ix_dq_issue_subject_issue_id")
        batch_op.drop_index("ix_dq_issue_subject_iin")
        batch_op.drop_index("ix_dq_issue_subject_household_id")

    op.drop_table("dq_issue_subject")
    op.drop_table("profile_version")
    with op.batch_alter_table("profile_head", schema=None) as batch_op:
        batch_op.drop_index("ix_profile_head_region_code")

    op.drop_table("profile_head")
    with op.batch_alter_table("dq_issue", schema=None) as batch_op:
        batch_op.drop_index("ix_dq_issue_status_owner")

    op.drop_table("dq_issue")
    op.drop_table("profile_build")
    op.drop_table("dq_run")
