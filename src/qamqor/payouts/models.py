"""The bank account a citizen's benefits are paid into: one per IIN, IBAN encrypted."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from qamqor.kit.db import Base, UTCDateTime
from qamqor.privacy.fields import EncryptedString


class CitizenBankAccount(Base):
    """The IBAN is AES-GCM ciphertext bound to the row's IIN, so it cannot be moved to
    someone else's row; the BIC names a bank, not a person, and stays readable."""

    __tablename__ = "citizen_bank_account"

    iin: Mapped[str] = mapped_column(String(12), primary_key=True)
    iban: Mapped[str] = mapped_column(EncryptedString(row=("iin",)))
    bic: Mapped[str] = mapped_column(String(11))
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
