"""One-time payment codes: how a household member lets one merchant charge their wallet once.

The citizen makes a code in the portal or the app (``POST /api/v1/me/wallet/payment-codes``)
and shows it at the till as a QR code or as 12 digits; the merchant sends it with the payment.
A code names the household and the member who made it, is good for :data:`CODE_LIFETIME` and
for one payment. Only its SHA-256 is stored, as for session tokens: a copy of the database
lets nobody pay.

Why 12 digits and not a 256-bit token: a cashier may have to type it. Guessing is still
hopeless — a few thousand codes are live at a time among 10^12, and each guess is a logged
request by a signed-in merchant — and a guess that hits pays a shop the household chose to
pay anyway only for what the shop sells.

A code is redeemed in the payment's own transaction (:func:`redeem` locks its row), so it is
used exactly when the payment commits: a refused payment (not enough money for this shop)
leaves the code usable for another try within its five minutes, and two tills presenting the
same code queue on the row lock and the second is told ``code_used``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from qamqor.wallet.models import PaymentCode
from qamqor.wallet.payments import PaymentRefusedError

CODE_DIGITS = 12
CODE_LIFETIME = dt.timedelta(minutes=5)
QR_PREFIX = "QAMQOR-PAY:"  # what the QR code holds before the digits
_ATTEMPTS = 5  # fresh codes tried when one collides with a stored hash (odds 1 in 10^6 or less)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def normalise(text: str) -> str | None:
    """The 12 digits of a code as typed (spaces, dashes) or scanned (``QAMQOR-PAY:...``);
    None when it cannot be a code."""
    value = text.strip()
    if value.upper().startswith(QR_PREFIX):
        value = value[len(QR_PREFIX) :]
    digits = value.replace(" ", "").replace("-", "")
    if len(digits) != CODE_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return digits


def grouped(code: str) -> str:
    """``123456789012`` -> ``1234 5678 9012``: what the screen shows the cashier."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def create_code(
    session: Session, iin: str, household_id: str, now: dt.datetime
) -> tuple[str, PaymentCode]:
    """A new code for ``household_id``'s wallet, made by the member ``iin``; returns the code
    (shown once) and its row. The caller has checked the membership."""
    for _ in range(_ATTEMPTS):
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        digest = code_hash(code)
        if session.scalar(select(PaymentCode.id).where(PaymentCode.code_hash == digest)) is None:
            break
    else:  # pragma: no cover - five collisions in a row would mean a broken random source
        raise RuntimeError("could not draw an unused payment code")
    row = PaymentCode(
        code_hash=digest,
        household_id=household_id,
        payer_iin=iin,
        expires_at=now + CODE_LIFETIME,
        used_at=None,
        payment_id=None,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return code, row


def find(session: Session, code: str, *, lock: bool = False) -> PaymentCode | None:
    digits = normalise(code)
    if digits is None:
        return None
    query = select(PaymentCode).where(PaymentCode.code_hash == code_hash(digits))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalar(query)


def redeem(session: Session, code: str, now: dt.datetime) -> PaymentCode:
    """Lock the code and mark it used now, in the caller's (the payment's) transaction; the
    caller sets ``payment_id`` once the payment exists. Refusals: ``code_invalid`` (no such
    code), ``code_used``, ``code_expired``."""
    row = find(session, code, lock=True)
    if row is None:
        raise PaymentRefusedError("code_invalid", "no such payment code")
    if row.used_at is not None:
        raise PaymentRefusedError("code_used", "the payment code was already used")
    if row.expires_at <= now:
        raise PaymentRefusedError("code_expired", "the payment code has expired")
    row.used_at = now
    session.flush()
    return row
