"""Tables of the Social Wallet: a double-entry ledger on the system-of-record database.

The model is TigerBeetle's (docs.tigerbeetle.com, "Accounts" and "Transfers"), written in SQL:

- an **account** keeps four running sums — debits and credits, pending and posted — and never
  its balance as a separate number; a CHECK constraint is the balance constraint: an account
  that may not go negative (every one but a program budget) never has its posted and pending
  debits exceed its posted credits, so no code path, not even a buggy one, can overspend;
- a **transfer** moves an amount from one account to another: one debit and one equal credit,
  so every transfer balances by construction. Transfers are append-only (a trigger refuses
  UPDATE and DELETE on both databases) and carry a unique idempotency key;
- a **pending** transfer reserves the amount (the pending sums) until a second transfer posts
  or voids it, or its timeout passes; each pending transfer is resolved at most once (the
  resolving transfer's ``pending_id`` is unique).

What TigerBeetle leaves to the application, Qamqor adds: **tranches**. Every credit to a
household's wallet is a tranche labelled with its purpose, program, period and expiry; a
payment draws on the tranches whose purpose the merchant's category allows, earliest expiry
first, and each transfer names the tranche it draws on or returns to. So each tenge can be
followed from the program's budget, through the household, to the merchant — or back to the
program when it expires unspent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from qamqor.kit.db import Base, UTCDateTime

BigId = BigInteger().with_variant(Integer, "sqlite")

ACCOUNT_KINDS = ("budget", "wallet", "merchant", "settlement", "returns")
# What a transfer is for; the flags say how it moves money (TigerBeetle's flags).
TRANSFER_CODES = ("credit", "payment", "refund", "sweep", "settlement")
TRANSFER_FLAGS = ("posted", "pending", "post_pending", "void_pending")
PAYMENT_STATUSES = ("pending", "posted", "voided")
MERCHANT_STATUSES = ("active", "suspended", "closed")
SIGNAL_STATUSES = ("open", "confirmed", "dismissed")


class Account(Base):
    """One ledger account: a program budget, a household's wallet for one purpose, a merchant,
    the settlement account (money on its way to merchants' banks), or a program's returns."""

    __tablename__ = "wallet_account"
    __table_args__ = (
        CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 "
            "AND credits_pending >= 0 AND credits_posted >= 0",
            name="sums_not_negative",
        ),
        # TigerBeetle's debits_must_not_exceed_credits, for every account but a budget
        CheckConstraint(
            "may_go_negative OR debits_posted + debits_pending <= credits_posted",
            name="balance_not_negative",
        ),
        Index("ix_wallet_account_household", "household_id", "purpose"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(240), unique=True)  # budget:asp, wallet:H:food ...
    kind: Mapped[str] = mapped_column(String(16))
    program_id: Mapped[str | None] = mapped_column(String(64))  # budget, returns
    household_id: Mapped[str | None] = mapped_column(String(200))  # wallet
    purpose: Mapped[str | None] = mapped_column(String(32))  # wallet
    merchant_bin: Mapped[str | None] = mapped_column(String(12))  # merchant
    may_go_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    @property
    def balance_tiyn(self) -> int:
        """Posted credits less posted debits: what the account holds."""
        return self.credits_posted - self.debits_posted

    @property
    def available_tiyn(self) -> int:
        """What may still be spent: the balance less what pending transfers reserve."""
        return self.credits_posted - self.debits_posted - self.debits_pending


class Transfer(Base):
    """An immutable movement of money: debit one account, credit another, the same amount."""

    __tablename__ = "wallet_transfer"
    __table_args__ = (
        CheckConstraint("amount_tiyn > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="two_accounts"),
        Index("ix_wallet_transfer_debit", "debit_account_id"),
        Index("ix_wallet_transfer_credit", "credit_account_id"),
        Index("ix_wallet_transfer_tranche", "tranche_id"),
        Index("ix_wallet_transfer_payment", "payment_id"),
        # Partial indexes: only pending transfers have a timeout, only a post or void names a
        # pending transfer. Indexing every payment's NULLs cost each insert two index entries
        # for nothing: the database side of a payment ran some 20 % faster without them.
        Index(
            "ix_wallet_transfer_pending_timeout",
            "timeout_at",
            postgresql_where=text("flags = 'pending'"),
            sqlite_where=text("flags = 'pending'"),
        ),
        # a pending transfer is resolved (posted or voided) at most once
        Index(
            "uq_wallet_transfer_pending_id",
            "pending_id",
            unique=True,
            postgresql_where=text("pending_id IS NOT NULL"),
            sqlite_where=text("pending_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(240), unique=True)
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("wallet_account.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("wallet_account.id"))
    amount_tiyn: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[str] = mapped_column(String(16))  # TRANSFER_CODES
    flags: Mapped[str] = mapped_column(String(16))  # TRANSFER_FLAGS
    # the pending transfer a post or void resolves (unique: see the index above)
    pending_id: Mapped[int | None] = mapped_column(ForeignKey("wallet_transfer.id"))
    timeout_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # pending only
    tranche_id: Mapped[int | None] = mapped_column(ForeignKey("wallet_tranche.id"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("wallet_payment.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Tranche(Base):
    """One labelled credit to a household wallet: what it may buy, for how long, and what
    became of it. ``amount = spent + pending + returned + remaining`` at every moment."""

    __tablename__ = "wallet_tranche"
    __table_args__ = (
        CheckConstraint("amount_tiyn > 0", name="amount_positive"),
        CheckConstraint(
            "spent_tiyn >= 0 AND pending_tiyn >= 0 AND returned_tiyn >= 0 "
            "AND spent_tiyn + pending_tiyn + returned_tiyn <= amount_tiyn",
            name="within_amount",
        ),
        # one credit per entitlement and period: scheduling twice credits once
        UniqueConstraint("entitlement_id", "period_start", name="uq_wallet_tranche_entitlement"),
        Index("ix_wallet_tranche_account_expiry", "account_id", "expires_at"),
        Index("ix_wallet_tranche_open_expiry", "closed", "expires_at"),
        Index("ix_wallet_tranche_program", "program_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("wallet_account.id"))
    household_id: Mapped[str] = mapped_column(String(200))
    program_id: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(32))
    entitlement_id: Mapped[int | None] = mapped_column(BigInteger)
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    activation_required: Mapped[bool] = mapped_column(Boolean, default=False)
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    amount_tiyn: Mapped[int] = mapped_column(BigInteger)
    spent_tiyn: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_tiyn: Mapped[int] = mapped_column(BigInteger, default=0)
    returned_tiyn: Mapped[int] = mapped_column(BigInteger, default=0)
    # swept: expired and its remainder returned, or lapsed unactivated; nothing draws on it
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    close_reason: Mapped[str | None] = mapped_column(String(16))  # expired | lapsed
    credit_transfer_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    @property
    def remaining_tiyn(self) -> int:
        return self.amount_tiyn - self.spent_tiyn - self.pending_tiyn - self.returned_tiyn


class Merchant(Base):
    """A shop, pharmacy, school canteen or rehabilitation centre, by its БИН (BIN)."""

    __tablename__ = "wallet_merchant"

    bin: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(4))  # ISO 18245 merchant category code
    region_code: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # MERCHANT_STATUSES
    status_reason: Mapped[str | None] = mapped_column(String(300))
    account_id: Mapped[int] = mapped_column(ForeignKey("wallet_account.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Payment(Base):
    """A charge by a merchant on a household wallet: its transfers carry its id."""

    __tablename__ = "wallet_payment"
    __table_args__ = (
        UniqueConstraint("merchant_bin", "idempotency_key", name="uq_wallet_payment_key"),
        CheckConstraint("amount_tiyn > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_tiyn >= 0 AND refunded_tiyn <= amount_tiyn", name="refund_within_amount"
        ),
        Index("ix_wallet_payment_household", "household_id", "created_at"),
        Index("ix_wallet_payment_merchant", "merchant_bin", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    merchant_bin: Mapped[str] = mapped_column(ForeignKey("wallet_merchant.bin"))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    request_hash: Mapped[str] = mapped_column(String(64))  # a repeat must be the same request
    household_id: Mapped[str] = mapped_column(String(200))
    payer_iin: Mapped[str | None] = mapped_column(String(12))
    amount_tiyn: Mapped[int] = mapped_column(BigInteger)
    refunded_tiyn: Mapped[int] = mapped_column(BigInteger, default=0)
    category: Mapped[str] = mapped_column(String(4))  # the merchant's, when it charged
    region_code: Mapped[str] = mapped_column(String(16))  # the merchant's, when it charged
    status: Mapped[str] = mapped_column(String(16))  # PAYMENT_STATUSES
    timeout_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # authorisations
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Refund(Base):
    """Money a merchant gives back on a payment, to the tranches the payment drew on."""

    __tablename__ = "wallet_refund"
    __table_args__ = (
        UniqueConstraint("payment_id", "idempotency_key", name="uq_wallet_refund_key"),
        CheckConstraint("amount_tiyn > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("wallet_payment.id"))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    amount_tiyn: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class PaymentCode(Base):
    """A one-time code a household member shows the merchant (QR or digits): the merchant
    can charge only the wallet of whoever made it, once, for a few minutes. Stored hashed."""

    __tablename__ = "wallet_payment_code"
    __table_args__ = (Index("ix_wallet_payment_code_household", "household_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    household_id: Mapped[str] = mapped_column(String(200))
    payer_iin: Mapped[str] = mapped_column(String(12))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    payment_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Signal(Base):
    """A pattern of possible misuse for a person to review; it never blocks anything."""

    __tablename__ = "wallet_signal"
    __table_args__ = (Index("ix_wallet_signal_status", "status", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    merchant_bin: Mapped[str | None] = mapped_column(String(12))
    household_id: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # SIGNAL_STATUSES
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    reviewed_by: Mapped[str | None] = mapped_column(String(100))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    review_note: Mapped[str | None] = mapped_column(String(500))
