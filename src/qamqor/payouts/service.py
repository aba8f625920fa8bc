"""Set and read a citizen's bank account. Works in the caller's transaction; never commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from qamqor.kit.errors import QamqorError
from qamqor.payouts.iban import normalise_bic, normalise_iban
from qamqor.payouts.models import CitizenBankAccount
from qamqor.privacy import fields
from qamqor.privacy.fields import Secret
from qamqor.registry.iin import is_valid


class InvalidIinError(QamqorError):
    code = "invalid_iin"


@dataclass(frozen=True)
class BankAccount:
    iin: str
    iban: Secret
    bic: str
    added_at: dt.datetime


def _checked_iin(iin: str) -> str:
    if not is_valid(iin):
        raise InvalidIinError("not a valid IIN (12 digits with a matching check digit)")
    return iin


def set_bank_account(
    session: Session, iin: str, iban: str | Secret, bic: str, *, now: dt.datetime | None = None
) -> BankAccount:
    """Record (or replace) the account benefits of ``iin`` are paid into.

    The IBAN is checked (ISO 13616), then encrypted before it reaches the session: the
    database, its logs and any error it raises only ever see ciphertext.
    """
    _checked_iin(iin)
    plain = iban.reveal() if isinstance(iban, Secret) else iban
    normal = normalise_iban(plain)
    bank = normalise_bic(bic, iban_country=normal[:2])
    sealed = fields.encrypt(
        normal, table=CitizenBankAccount.__tablename__, column="iban", row=[iin]
    )
    added_at = now or dt.datetime.now(dt.UTC)
    account = session.get(CitizenBankAccount, iin)
    if account is None:
        account = CitizenBankAccount(iin=iin, iban=sealed, bic=bank, added_at=added_at)
        session.add(account)
    else:
        account.iban, account.bic, account.added_at = sealed, bank, added_at
    session.flush()
    return BankAccount(iin=iin, iban=Secret(normal), bic=bank, added_at=added_at)


def get_bank_account(session: Session, iin: str) -> BankAccount | None:
    """The account on file for ``iin``, its IBAN as a :class:`Secret`; None when there is none."""
    account = session.get(CitizenBankAccount, _checked_iin(iin))
    if account is None:
        return None
    iban = fields.reveal(account, "iban")
    assert iban is not None  # the column is NOT NULL
    return BankAccount(iin=account.iin, iban=iban, bic=account.bic, added_at=account.added_at)
