"""API shapes of the wallet: merchants (admin), payments and receipts (POS), the citizen's
wallet. Money is integer tiyn (``*_tiyn``); ``amount`` fields are the same in words of the
language (``1 250,50 ₸``)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field


class RefusalOut(BaseModel):
    reason: str = Field(description="A stable code: insufficient_balance, code_used, ...")
    message: str = Field(description="The reason in the requested language (ru/kk/en)")


# --- merchants (admin) ------------------------------------------------------------------------


class MerchantIn(BaseModel):
    bin: str = Field(pattern=r"^\d{12}$", description="БИН: 12 digits with the IIN check digit")
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(pattern=r"^\d{4}$", description="ISO 18245 merchant category code")
    region_code: str = Field(min_length=1, max_length=16, description="KATO region code")


class MerchantStatusIn(BaseModel):
    status: Literal["active", "suspended", "closed"]
    reason: str | None = Field(
        default=None, max_length=300, description="Required unless the status is active"
    )


class MerchantOut(BaseModel):
    bin: str
    name: str
    category: str
    category_name: str
    purposes: list[str] = Field(description="Wallet purposes a payment here may draw on")
    region_code: str
    status: str
    status_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class MerchantsOut(BaseModel):
    limit: int
    offset: int
    merchants: list[MerchantOut]


# --- payments (POS) ---------------------------------------------------------------------------


class PaymentIn(BaseModel):
    idempotency_key: str = Field(min_length=1, max_length=100)
    payment_code: str = Field(
        min_length=1, max_length=40, description="The 12 digits the citizen shows, or the QR text"
    )
    amount_tiyn: int
    capture: bool = Field(
        default=True, description="false: authorise only; capture or void the payment later"
    )


class DrawOut(BaseModel):
    tranche_id: int
    purpose: str
    purpose_name: str
    program_id: str
    program_name: str
    amount_tiyn: int


class ReceiptOut(BaseModel):
    payment_id: int
    status: str = Field(description="posted, pending (authorised) or voided")
    status_text: str
    amount_tiyn: int
    amount: str
    refunded_tiyn: int
    merchant_bin: str
    merchant_name: str
    category: str
    category_name: str
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    authorised_until: dt.datetime | None = Field(description="An authorisation lapses then")
    draws: list[DrawOut] = Field(description="What the payment took from each tranche")
    balance_tiyn: int | None = Field(
        description="The household's earmarked money left for this merchant's purposes; shown "
        "only while the payment code is valid (five minutes), null after"
    )
    balance: str | None
    lang: str


class RefundIn(BaseModel):
    idempotency_key: str = Field(min_length=1, max_length=100)
    amount_tiyn: int
    reason: str | None = Field(default=None, max_length=300)


class RefundPartOut(BaseModel):
    tranche_id: int
    purpose: str
    purpose_name: str
    program_id: str
    program_name: str
    amount_tiyn: int
    returned_to_program: bool = Field(
        description="The tranche had expired: the money went on to the program's returns"
    )


class RefundOut(BaseModel):
    refund_id: int
    payment_id: int
    amount_tiyn: int
    amount: str
    reason: str | None
    created_at: dt.datetime
    payment_amount_tiyn: int
    payment_refunded_tiyn: int
    merchant_bin: str
    merchant_name: str
    parts: list[RefundPartOut]
    lang: str


class SettlementDayOut(BaseModel):
    day: dt.date = Field(description="The settlement day (local time) the amount closes")
    amount_tiyn: int
    amount: str
    transfer_id: int
    settled_at: dt.datetime


class SettlementsOut(BaseModel):
    merchant_bin: str
    total_tiyn: int = Field(description="The sum of the days listed")
    days: list[SettlementDayOut]


# --- the citizen's wallet ---------------------------------------------------------------------


class PaymentCodeIn(BaseModel):
    household_id: str | None = Field(
        default=None, description="Only when the citizen belongs to more than one household"
    )


class PaymentCodeOut(BaseModel):
    code: str = Field(description="12 digits, shown once; only their SHA-256 is stored")
    digits: str = Field(description="The code grouped for reading aloud: 1234 5678 9012")
    qr_payload: str = Field(description="What the QR code holds")
    household_id: str
    expires_at: dt.datetime


class PurposeBalanceOut(BaseModel):
    purpose: str
    purpose_name: str
    available_tiyn: int = Field(description="Spendable now")
    available: str
    awaiting_activation_tiyn: int = Field(description="In vouchers still to be activated")
    pending_tiyn: int = Field(description="Reserved by authorisations not yet captured")


class TrancheOut(BaseModel):
    id: int
    program_id: str
    program_name: str
    purpose: str
    purpose_name: str
    amount_tiyn: int
    spent_tiyn: int
    pending_tiyn: int
    remaining_tiyn: int
    remaining: str
    period_start: dt.date
    period_end: dt.date
    expires_at: dt.datetime
    activation_required: bool
    activated_at: dt.datetime | None
    status: str = Field(description="usable, needs_activation or expired (awaiting the sweep)")
    status_text: str


class WalletOut(BaseModel):
    household_id: str
    lang: str
    balances: list[PurposeBalanceOut]
    tranches: list[TrancheOut] = Field(description="Open tranches, earliest expiry first")


class TransactionOut(BaseModel):
    kind: str = Field(description="credit, payment, refund or return")
    id: int = Field(description="The tranche, payment, refund or transfer id")
    occurred_at: dt.datetime
    direction: str = Field(description="in: into the wallet; out: out of it")
    amount_tiyn: int
    amount: str
    description: str
    status: str | None = Field(description="A payment's: posted, pending or voided")
    purpose: str | None
    program_id: str | None
    merchant_bin: str | None
    merchant_name: str | None
    payment_id: int | None


class TransactionsOut(BaseModel):
    household_id: str
    lang: str
    total: int
    limit: int
    offset: int
    items: list[TransactionOut]
