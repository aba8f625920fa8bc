"""One-time payment codes: hashed, five minutes, single use, redeemed with the payment."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.wallet import codes
from qamqor.wallet.models import PaymentCode
from qamqor.wallet.payments import PaymentRefusedError
from tests.wallet.builders import NOW

IIN = "850314300123"


def test_a_code_is_twelve_digits_stored_only_as_its_hash(engine: Engine) -> None:
    with session_scope() as session:
        code, row = codes.create_code(session, IIN, "H1", NOW)
        assert len(code) == 12 and code.isdigit()
        assert row.code_hash == hashlib.sha256(code.encode()).hexdigest()
        assert (row.household_id, row.payer_iin) == ("H1", IIN)
        assert row.expires_at == NOW + dt.timedelta(minutes=5) == NOW + codes.CODE_LIFETIME
        assert row.used_at is None and row.payment_id is None
    with session_scope() as session:
        stored = session.scalars(select(PaymentCode)).one()
        # nothing in the row gives the code back
        assert code not in {str(v) for v in vars(stored).values()}


def test_codes_differ(engine: Engine) -> None:
    with session_scope() as session:
        made = {codes.create_code(session, IIN, "H1", NOW)[0] for _ in range(20)}
        assert len(made) == 20
        assert session.scalar(select(func.count()).select_from(PaymentCode)) == 20


def test_redeem_marks_the_code_used_once(engine: Engine) -> None:
    with session_scope() as session:
        code, _ = codes.create_code(session, IIN, "H1", NOW)
    later = NOW + dt.timedelta(minutes=4, seconds=59)
    with session_scope() as session:
        row = codes.redeem(session, code, later)
        assert row.used_at == later and row.household_id == "H1"
    with session_scope() as session, pytest.raises(PaymentRefusedError) as used:
        codes.redeem(session, code, later)
    assert used.value.reason == "code_used"


def test_an_expired_or_unknown_code_is_refused(engine: Engine) -> None:
    with session_scope() as session:
        code, _ = codes.create_code(session, IIN, "H1", NOW)
    with session_scope() as session, pytest.raises(PaymentRefusedError) as expired:
        codes.redeem(session, code, NOW + codes.CODE_LIFETIME)
    assert expired.value.reason == "code_expired"
    other = "000000000000" if code != "000000000000" else "111111111111"
    for wrong in (other, "12345", "abcdefghijkl", ""):
        with session_scope() as session, pytest.raises(PaymentRefusedError) as invalid:
            codes.redeem(session, wrong, NOW)
        assert invalid.value.reason == "code_invalid"


def test_a_refused_payment_leaves_the_code_usable(engine: Engine) -> None:
    """Redeeming is part of the payment's transaction: a rollback un-uses the code."""
    with session_scope() as session:
        code, _ = codes.create_code(session, IIN, "H1", NOW)
    with pytest.raises(PaymentRefusedError), session_scope() as session:
        codes.redeem(session, code, NOW)
        raise PaymentRefusedError("insufficient_balance", "not enough")
    with session_scope() as session:
        assert codes.redeem(session, code, NOW).used_at == NOW


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("1234 5678 9012", "123456789012"),
        ("1234-5678-9012", "123456789012"),
        ("QAMQOR-PAY:123456789012", "123456789012"),
        ("qamqor-pay:123456789012", "123456789012"),
        ("12345678901", None),
        ("1234567890123", None),
        ("١٢٣٤٥٦٧٨٩٠١٢", None),  # Arabic-Indic digits are digits to str.isdigit, not to us
    ],
)
def test_codes_are_read_as_typed_or_scanned(typed: str, digits: str | None) -> None:
    assert codes.normalise(typed) == digits


def test_grouped_for_reading_aloud() -> None:
    assert codes.grouped("123456789012") == "1234 5678 9012"
