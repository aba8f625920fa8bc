"""Small builders for wallet tests: merchants, credits and a fixed clock."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from qamqor.registry.iin import check_digit
from qamqor.wallet import merchants, tranches
from qamqor.wallet.models import Merchant, Tranche

NOW = dt.datetime(2026, 12, 10, 9, 0, tzinfo=dt.UTC)
MONTH_END = dt.datetime(2026, 12, 31, 19, 0, tzinfo=dt.UTC)  # 1 January 00:00 in Astana


def make_bin(serial: int) -> str:
    """A valid BIN: 11 digits and their check digit (serials giving none are skipped)."""
    while True:
        first = f"9912{serial:07d}"
        digit = check_digit(first)
        if digit is not None:
            return first + str(digit)
        serial += 1


def make_merchant(
    session: Session, serial: int = 1, category: str = "5411", region: str = "ALA"
) -> Merchant:
    return merchants.register(
        session,
        bin_=make_bin(serial),
        name=f"Shop {serial}",
        category=category,
        region_code=region,
        now=NOW,
    )


def credit(
    session: Session,
    household: str = "H1",
    amount: int = 100_000,
    purpose: str = "food",
    program: str = "food_voucher",
    expires_at: dt.datetime = MONTH_END,
    key: str | None = None,
    activation_required: bool = False,
) -> Tranche:
    return tranches.open_tranche(
        session,
        household_id=household,
        program_id=program,
        purpose=purpose,
        amount_tiyn=amount,
        period_start=dt.date(2026, 12, 1),
        period_end=dt.date(2026, 12, 31),
        expires_at=expires_at,
        now=NOW,
        activation_required=activation_required,
        key=key or f"test-credit:{household}:{purpose}:{amount}:{expires_at.isoformat()}",
    )
