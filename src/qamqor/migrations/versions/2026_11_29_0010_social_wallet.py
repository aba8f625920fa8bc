"""social wallet

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 12:10:32.494053
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import qamqor.kit.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wallet_account",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=240), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("program_id", sa.String(length=64), nullable=True),
        sa.Column("household_id", sa.String(length=200), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=True),
        sa.Column("merchant_bin", sa.String(length=12), nullable=True),
        sa.Column("may_go_negative", sa.Boolean(), nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("created_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 "
            "AND credits_pending >= 0 AND credits_posted >= 0",
            name=op.f("ck_wallet_account_sums_not_negative"),
        ),
        sa.CheckConstraint(
            "may_go_negative OR debits_posted + debits_pending <= credits_posted",
            name=op.f("ck_wallet_account_balance_not_negative"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_account")),
        sa.UniqueConstraint("code", name=op.f("uq_wallet_account_code")),
    )
    with op.batch_alter_table("wallet_account", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wallet_account_household", ["household_id", "purpose"], unique=False
        )

    op.create_table(
        "wallet_payment_code",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("household_id", sa.String(length=200), nullable=False),
        sa.Column("payer_iin", sa.String(length=12), nullable=False),
        sa.Column("expires_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("payment_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_payment_code")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_wallet_payment_code_code_hash")),
    )
    with op.batch_alter_table("wallet_payment_code", schema=None) as batch_op:
        batch_op.create_index("ix_wallet_payment_code_household", ["household_id"], unique=False)

    op.create_table(
        "wallet_signal",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("merchant_bin", sa.String(length=12), nullable=True),
        sa.Column("household_id", sa.String(length=200), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", sa.String(length=100), nullable=True),
        sa.Column("reviewed_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_signal")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_wallet_signal_dedupe_key")),
    )
    with op.batch_alter_table("wallet_signal", schema=None) as batch_op:
        batch_op.create_index("ix_wallet_signal_status", ["status", "kind"], unique=False)

    op.create_table(
        "wallet_merchant",
        sa.Column("bin", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=4), nullable=False),
        sa.Column("region_code", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=300), nullable=True),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["wallet_account.id"],
            name=op.f("fk_wallet_merchant_account_id_wallet_account"),
        ),
        sa.PrimaryKeyConstraint("bin", name=op.f("pk_wallet_merchant")),
    )
    op.create_table(
        "wallet_tranche",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("household_id", sa.String(length=200), nullable=False),
        sa.Column("program_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("entitlement_id", sa.BigInteger(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("expires_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("activation_required", sa.Boolean(), nullable=False),
        sa.Column("activated_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("amount_tiyn", sa.BigInteger(), nullable=False),
        sa.Column("spent_tiyn", sa.BigInteger(), nullable=False),
        sa.Column("pending_tiyn", sa.BigInteger(), nullable=False),
        sa.Column("returned_tiyn", sa.BigInteger(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("close_reason", sa.String(length=16), nullable=True),
        sa.Column("credit_transfer_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_tiyn > 0", name=op.f("ck_wallet_tranche_amount_positive")),
        sa.CheckConstraint(
            "spent_tiyn >= 0 AND pending_tiyn >= 0 AND returned_tiyn >= 0 "
            "AND spent_tiyn + pending_tiyn + returned_tiyn <= amount_tiyn",
            name=op.f("ck_wallet_tranche_within_amount"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["wallet_account.id"],
            name=op.f("fk_wallet_tranche_account_id_wallet_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_tranche")),
        sa.UniqueConstraint("entitlement_id", "period_start", name="uq_wallet_tranche_entitlement"),
    )
    with op.batch_alter_table("wallet_tranche", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wallet_tranche_account_expiry", ["account_id", "expires_at"], unique=False
        )
        batch_op.create_index(
            "ix_wallet_tranche_open_expiry", ["closed", "expires_at"], unique=False
        )
        batch_op.create_index("ix_wallet_tranche_program", ["program_id"], unique=False)

    op.create_table(
        "wallet_payment",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("merchant_bin", sa.String(length=12), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("household_id", sa.String(length=200), nullable=False),
        sa.Column("payer_iin", sa.String(length=12), nullable=True),
        sa.Column("amount_tiyn", sa.BigInteger(), nullable=False),
        sa.Column("refunded_tiyn", sa.BigInteger(), nullable=False),
        sa.Column("category", sa.String(length=4), nullable=False),
        sa.Column("region_code", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("timeout_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_tiyn > 0", name=op.f("ck_wallet_payment_amount_positive")),
        sa.CheckConstraint(
            "refunded_tiyn >= 0 AND refunded_tiyn <= amount_tiyn",
            name=op.f("ck_wallet_payment_refund_within_amount"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_bin"],
            ["wallet_merchant.bin"],
            name=op.f("fk_wallet_payment_merchant_bin_wallet_merchant"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_payment")),
        sa.UniqueConstraint("merchant_bin", "idempotency_key", name="uq_wallet_payment_key"),
    )
    with op.batch_alter_table("wallet_payment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wallet_payment_household", ["household_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_wallet_payment_merchant", ["merchant_bin", "created_at"], unique=False
        )

    op.create_table(
        "wallet_refund",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("amount_tiyn", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("created_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_tiyn > 0", name=op.f("ck_wallet_refund_amount_positive")),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["wallet_payment.id"],
            name=op.f("fk_wallet_refund_payment_id_wallet_payment"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_refund")),
        sa.UniqueConstraint("payment_id", "idempotency_key", name="uq_wallet_refund_key"),
    )
    op.create_table(
        "wallet_transfer",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=240), nullable=False),
        sa.Column(
            "debit_account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "credit_account_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("amount_tiyn", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("flags", sa.String(length=16), nullable=False),
        sa.Column(
            "pending_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("timeout_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "tranche_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", qamqor.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_tiyn > 0", name=op.f("ck_wallet_transfer_amount_positive")),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name=op.f("ck_wallet_transfer_two_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id"],
            ["wallet_account.id"],
            name=op.f("fk_wallet_transfer_credit_account_id_wallet_account"),
        ),
        sa.ForeignKeyConstraint(
            ["debit_account_id"],
            ["wallet_account.id"],
            name=op.f("fk_wallet_transfer_debit_account_id_wallet_account"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["wallet_payment.id"],
            name=op.f("fk_wallet_transfer_payment_id_wallet_payment"),
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"],
            ["wallet_transfer.id"],
            name=op.f("fk_wallet_transfer_pending_id_wallet_transfer"),
        ),
        sa.ForeignKeyConstraint(
            ["tranche_id"],
            ["wallet_tranche.id"],
            name=op.f("fk_wallet_transfer_tranche_id_wallet_tranche"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_transfer")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_wallet_transfer_idempotency_key")),
    )
    with op.batch_alter_table("wallet_transfer", schema=None) as batch_op:
        batch_op.create_index("ix_wallet_transfer_credit", ["credit_account_id"], unique=False)
        batch_op.create_index("ix_wallet_transfer_debit", ["debit_account_id"], unique=False)
        batch_op.create_index("ix_wallet_transfer_payment", ["payment_id"], unique=False)
        # partial: only pending transfers time out, only a post or void names a pending one
        batch_op.create_index(
            "ix_wallet_transfer_pending_timeout",
            ["timeout_at"],
            unique=False,
            postgresql_where=sa.text("flags = 'pending'"),
            sqlite_where=sa.text("flags = 'pending'"),
        )
        batch_op.create_index(
            "uq_wallet_transfer_pending_id",
            ["pending_id"],
            unique=True,
            postgresql_where=sa.text("pending_id IS NOT NULL"),
            sqlite_where=sa.text("pending_id IS NOT NULL"),
        )
        batch_op.create_index("ix_wallet_transfer_tranche", ["tranche_id"], unique=False)
    # Transfers are append-only: no UPDATE, no DELETE, not even by the database's owner
    # through SQL (a superuser can drop the trigger; the audit log is what catches that).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION wallet_transfer_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'wallet_transfer is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER wallet_transfer_append_only BEFORE UPDATE OR DELETE ON wallet_transfer "
            "FOR EACH ROW EXECUTE FUNCTION wallet_transfer_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER wallet_transfer_append_only_{action.lower()} "
                f"BEFORE {action} ON wallet_transfer "
                "BEGIN SELECT RAISE(ABORT, 'wallet_transfer is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER wallet_transfer_append_only ON wallet_transfer")
        op.execute("DROP FUNCTION wallet_transfer_append_only()")
    else:
        op.execute("DROP TRIGGER wallet_transfer_append_only_update")
        op.execute("DROP TRIGGER wallet_transfer_append_only_delete")
    with op.batch_alter_table("wallet_transfer", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_transfer_tranche")
        batch_op.drop_index("uq_wallet_transfer_pending_id")
        batch_op.drop_index("ix_wallet_transfer_pending_timeout")
        batch_op.drop_index("ix_wallet_transfer_payment")
        batch_op.drop_index("ix_wallet_transfer_debit")
        batch_op.drop_index("ix_wallet_transfer_credit")

    op.drop_table("wallet_transfer")
    op.drop_table("wallet_refund")
    with op.batch_alter_table("wallet_payment", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_payment_merchant")
        batch_op.drop_index("ix_wallet_payment_household")

    op.drop_table("wallet_payment")
    with op.batch_alter_table("wallet_tranche", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_tranche_program")
        batch_op.drop_index("ix_wallet_tranche_open_expiry")
        batch_op.drop_index("ix_wallet_tranche_account_expiry")

    op.drop_table("wallet_tranche")
    op.drop_table("wallet_merchant")
    with op.batch_alter_table("wallet_signal", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_signal_status")

    op.drop_table("wallet_signal")
    with op.batch_alter_table("wallet_payment_code", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_payment_code_household")

    op.drop_table("wallet_payment_code")
    with op.batch_alter_table("wallet_account", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_account_household")

    op.drop_table("wallet_account")
