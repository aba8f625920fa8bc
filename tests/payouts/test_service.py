"""A citizen's bank account on SQLite and PostgreSQL: checked, stored encrypted, read masked."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.payouts.iban import InvalidIbanError
from qamqor.payouts.models import CitizenBankAccount
from qamqor.payouts.service import InvalidIinError, get_bank_account, set_bank_account
from qamqor.privacy.fields import FieldEncryptionError
from tests.registry.builders import valid_iin

IBAN = "KZ86125KZT5004100100"


def test_an_account_is_stored_encrypted_and_read_back_masked(engine: Engine) -> None:
    iin = valid_iin(7)
    with session_scope(engine) as session:
        saved = set_bank_account(session, iin, "kz86 125k zt50 0410 0100", "hsbkkzkx")
    assert saved.iban.reveal() == IBAN and saved.bic == "HSBKKZKX"
    assert IBAN not in repr(saved) and "***" in repr(saved)

    with engine.connect() as conn:
        stored = conn.execute(select(CitizenBankAccount.__table__)).one()
    assert IBAN not in repr(tuple(stored))
    assert stored.iban.startswith("v1:")

    with session_scope(engine) as session:
        account = get_bank_account(session, iin)
        assert get_bank_account(session, valid_iin(8)) is None
    assert account is not None
    assert account.iban.reveal() == IBAN
    assert account.bic == "HSBKKZKX"
    assert account.added_at.tzinfo is not None


def test_setting_again_replaces_the_account(engine: Engine) -> None:
    iin = valid_iin(7)
    earlier = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with session_scope(engine) as session:
        set_bank_account(session, iin, IBAN, "KCJBKZKX", now=earlier)
    with session_scope(engine) as session:
        set_bank_account(session, iin, "GB82WEST12345698765432", "WESTGB22")
    with session_scope(engine) as session:
        account = get_bank_account(session, iin)
        count = len(session.scalars(select(CitizenBankAccount)).all())
    assert count == 1
    assert account is not None and account.iban.reveal() == "GB82WEST12345698765432"
    assert account.added_at > earlier


def test_invalid_input_is_refused_and_nothing_is_stored(engine: Engine) -> None:
    with session_scope(engine) as session:
        with pytest.raises(InvalidIbanError) as refused:
            set_bank_account(session, valid_iin(7), "KZ87125KZT5004100100", "HSBKKZKX")
        assert "KZ87" not in str(refused.value)
        with pytest.raises(InvalidIinError):
            set_bank_account(session, "123456789012", IBAN, "HSBKKZKX")
        assert session.scalars(select(CitizenBankAccount)).all() == []


def test_an_iban_copied_to_another_citizen_does_not_decrypt(engine: Engine) -> None:
    alice, bob = valid_iin(7), valid_iin(9)
    with session_scope(engine) as session:
        set_bank_account(session, alice, IBAN, "HSBKKZKX")
        set_bank_account(session, bob, "DE89370400440532013000", "COBADEFF")
    with engine.begin() as conn:
        alice_iban = conn.execute(
            select(CitizenBankAccount.iban).where(CitizenBankAccount.iin == alice)
        ).scalar_one()
        conn.execute(
            update(CitizenBankAccount).where(CitizenBankAccount.iin == bob).values(iban=alice_iban)
        )
    with session_scope(engine) as session, pytest.raises(FieldEncryptionError) as refused:
        get_bank_account(session, bob)
    assert IBAN not in str(refused.value)
