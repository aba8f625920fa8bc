"""The merchant registry: who may charge a wallet, for what, and where.

A merchant is a legal entity or sole trader by its БИН (BIN), validated with the same check
digit as the IIN (``qamqor.registry.iin``). Its category (an ISO 18245 code in
``categories.yaml``) decides which purposes it may draw on; its region is kept on every payment
for the misuse signals and the reports. A suspended merchant is refused at the next payment;
its ledger account and history stay.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from qamqor.kit.errors import QamqorError
from qamqor.registry.iin import is_valid
from qamqor.wallet import ledger
from qamqor.wallet.categories import categories
from qamqor.wallet.models import MERCHANT_STATUSES, Merchant


class MerchantError(QamqorError):
    code = "merchant_error"


def register(
    session: Session,
    *,
    bin_: str,
    name: str,
    category: str,
    region_code: str,
    now: dt.datetime,
) -> Merchant:
    """Add a merchant, or update the name, category and region of one already registered."""
    if not is_valid(bin_):
        raise MerchantError(f"{bin_!r} is not a valid BIN (12 digits with a matching check digit)")
    if category not in categories():
        known = ", ".join(sorted(categories()))
        raise MerchantError(f"unknown merchant category {category!r}; known: {known}")
    if not name.strip() or not region_code.strip():
        raise MerchantError("a merchant needs a name and a region")
    merchant = session.get(Merchant, bin_)
    if merchant is None:
        account = ledger.ensure_account(
            session, ledger.merchant_code(bin_), "merchant", now=now, merchant_bin=bin_
        )
        merchant = Merchant(
            bin=bin_,
            name=name.strip(),
            category=category,
            region_code=region_code.strip(),
            status="active",
            account_id=account,
            created_at=now,
            updated_at=now,
        )
        session.add(merchant)
    else:
        merchant.name, merchant.category = name.strip(), category
        merchant.region_code, merchant.updated_at = region_code.strip(), now
    session.flush()
    return merchant


def set_status(
    session: Session, bin_: str, status: str, *, reason: str | None, now: dt.datetime
) -> Merchant:
    """Suspend, reactivate or close a merchant; a reason is required for anything but active."""
    if status not in MERCHANT_STATUSES:
        raise MerchantError(f"status must be one of {', '.join(MERCHANT_STATUSES)}")
    if status != "active" and not (reason and reason.strip()):
        raise MerchantError("say why the merchant is suspended or closed")
    merchant = session.get(Merchant, bin_)
    if merchant is None:
        raise MerchantError(f"no merchant with BIN {bin_}")
    merchant.status, merchant.status_reason, merchant.updated_at = status, reason, now
    session.flush()
    return merchant


def list_merchants(
    session: Session, *, status: str | None = None, limit: int = 100, offset: int = 0
) -> list[Merchant]:
    query = select(Merchant).order_by(Merchant.bin).limit(limit).offset(offset)
    if status is not None:
        query = query.where(Merchant.status == status)
    return list(session.scalars(query))
