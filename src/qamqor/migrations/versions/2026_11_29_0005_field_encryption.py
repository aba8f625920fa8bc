"""field encryption and retention

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 07:00:00

Encrypted columns are plain TEXT to the database (``v1:<key id>:<base64>`` ciphertext); the
keys live in the key file, never here. Adding a nullable column needs no table copy on either
database, so upgrading a country-sized fact_disability is instant.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fact_disability", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("diagnosis", sa.Text(), nullable=True))
    with op.batch_alter_table("registry_rejection", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("raw_sealed", sa.Text(), nullable=True))
    op.create_table(
        "citizen_bank_account",
        sa.Column("iin", sa.String(length=12), nullable=False),
        sa.Column("iban", sa.Text(), nullable=False),
        sa.Column("bic", sa.String(length=11), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("iin", name=op.f("pk_citizen_bank_account")),
    )


def downgrade() -> None:
    op.drop_table("citizen_bank_account")
    with op.batch_alter_table("registry_rejection", schema=None) as batch_op:
        batch_op.drop_column("raw_sealed")
    with op.batch_alter_table("fact_disability", schema=None) as batch_op:
        batch_op.drop_column("diagnosis")
