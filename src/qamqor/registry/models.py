"""Tables of the registry feature: batches, rejections and one fact table per source registry.

A fact row keeps its provenance: the batch it came in (source, file, hash, received at), the
registry's own record id, its line in the file, and the period it is valid for. Column types
follow ``catalogue.yaml``: money is integer tiyn (``*_tiyn``), months are stored as their first
day, everything else keeps its catalogue name. ``tests/registry/test_models.py`` holds the
catalogue and these tables in step.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from qamqor.kit.db import Base, UTCDateTime
from qamqor.privacy.fields import EncryptedString

IIN = String(12)
CODE = String(32)
NAME = String(100)
TEXT = String(200)


class Batch(Base):
    """One ingested extract file. A file is ingested once: its SHA-256 is unique."""

    __tablename__ = "registry_batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32), index=True)
    file_name: Mapped[str] = mapped_column(String(500))
    file_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    file_bytes: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
    encoding: Mapped[str | None] = mapped_column(String(16))
    delimiter: Mapped[str | None] = mapped_column(String(4))
    rows_read: Mapped[int] = mapped_column(BigInteger)
    facts: Mapped[int] = mapped_column(BigInteger)
    rejections: Mapped[int] = mapped_column(BigInteger)
    duplicates: Mapped[int] = mapped_column(BigInteger)
    # reason code -> rejections citing it, counted at ingest so a report needs no scan
    rejection_reasons: Mapped[dict[str, int]] = mapped_column(JSON)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    loaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Rejection(Base):
    """A row that did not become a fact, with its raw text, where it was, and why."""

    __tablename__ = "registry_rejection"
    __table_args__ = (Index("ix_registry_rejection_batch_line", "batch_id", "line_no"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("registry_batch.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(BigInteger)
    source_record_id: Mapped[str | None] = mapped_column(String(64))
    reasons: Mapped[str] = mapped_column(
        Text
    )  # space-separated reason codes, e.g. "check_digit:iin"
    raw: Mapped[str] = mapped_column(Text)
    # A source with special-category columns (catalogue `special: true`) keeps the raw text
    # here, encrypted; `raw` then holds only RAW_SEALED (docs/encryption-and-retention.md).
    raw_sealed: Mapped[str | None] = mapped_column(EncryptedString(row=("batch_id", "line_no")))


RAW_SEALED = "[encrypted]"


def _pk() -> Mapped[int]:
    # SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL needs BIGINT at this scale.
    return mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)


class _Provenance:
    """Columns every fact carries: where it came from and when it holds."""

    batch_id: Mapped[int] = mapped_column(ForeignKey("registry_batch.id"))
    line_no: Mapped[int] = mapped_column(BigInteger)
    source_record_id: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[dt.date | None] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)
    updated_on: Mapped[dt.date] = mapped_column(Date)


# A person's birth date and whole name as one text key (immutable, so indexable: the date as
# days since 2000, not as text). PostgreSQL finds a micro-batch's namesakes by it with one
# ``= ANY(array)`` index scan (``profiles.facts._namesakes``).
FULL_NAME_KEY = (
    "((((((((birth_date - '2000-01-01'::date)::text) || '|'::text) || last_name::text) "
    "|| '|'::text) || first_name::text) || '|'::text) "
    "|| COALESCE(patronymic, ''::character varying)::text)"
)


class PopulationFact(_Provenance, Base):
    __tablename__ = "fact_population"
    __table_args__ = (
        Index("ix_fact_population_iin", "iin"),
        Index("ix_fact_population_source_record_id", "source_record_id"),
        Index("ix_fact_population_batch_id", "batch_id"),
        # a micro-batch profile looks up the namesakes born the same day (duplicate-person check)
        Index("ix_fact_population_birth_date_last_name", "birth_date", "last_name"),
        # ... on PostgreSQL by the whole name as one key (migration 0013, profiles.facts)
        Index("ix_fact_population_full_name", text(FULL_NAME_KEY)).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = _pk()
    iin: Mapped[str] = mapped_column(IIN)
    last_name: Mapped[str] = mapped_column(NAME)
    first_name: Mapped[str] = mapped_column(NAME)
    patronymic: Mapped[str | None] = mapped_column(NAME)
    birth_date: Mapped[dt.date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(CODE)
    region_code: Mapped[str] = mapped_column(CODE)
    settlement: Mapped[str] = mapped_column(CODE)
    death_date: Mapped[dt.date | None] = mapped_column(Date)


class HouseholdFact(_Provenance, Base):
    __tablename__ = "fact_household"
    __table_args__ = (
        Index("ix_fact_household_iin", "iin"),
        Index("ix_fact_household_source_record_id", "source_record_id"),
        Index("ix_fact_household_household_id", "household_id"),
        Index("ix_fact_household_batch_id", "batch_id"),
    )

    id: Mapped[int] = _pk()
    household_id: Mapped[str] = mapped_column(TEXT)
    iin: Mapped[str] = mapped_column(IIN)
    relation: Mapped[str] = mapped_column(CODE)
    member_from: Mapped[dt.date] = mapped_column(Date)
    member_to: Mapped[dt.date | None] = mapped_column(Date)


class IncomeFact(_Provenance, Base):
    __tablename__ = "fact_income"
    __table_args__ = (
        Index("ix_fact_income_iin", "iin"),
        Index("ix_fact_income_source_record_id", "source_record_id"),
        Index("ix_fact_income_batch_id", "batch_id"),
    )

    id: Mapped[int] = _pk()
    iin: Mapped[str] = mapped_column(IIN)
    period: Mapped[dt.date] = mapped_column(Date)  # first day of the month
    income_type: Mapped[str] = mapped_column(CODE)
    amount_tiyn: Mapped[int] = mapped_column(BigInteger)
    payer_bin: Mapped[str | None] = mapped_column(IIN)


class EmploymentFact(_Provenance, Base):
    __tablename__ = "fact_employment"
    __table_args__ = (
        Index("ix_fact_employment_iin", "iin"),
        Index("ix_fact_employment_source_record_id", "source_record_id"),
        Index("ix_fact_employment_batch_id", "batch_id"),
    )

    id: Mapped[int] = _pk()
    iin: Mapped[str] = mapped_column(IIN)
    status: Mapped[str] = mapped_column(CODE)
    employer_bin: Mapped[str | None] = mapped_column(IIN)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date)


class PropertyFact(_Provenance, Base):
    __tablename__ = "fact_property"
    __table_args__ = (
        Index("ix_fact_property_iin", "iin"),
        Index("ix_fact_property_source_record_id", "source_record_id"),
        Index("ix_fact_property_batch_id", "batch_id"),
    )

    id: Mapped[int] = _pk()
    iin: Mapped[str] = mapped_column(IIN)
    property_type: Mapped[str] = mapped_column(CODE)
    object_id: Mapped[str] = mapped_column(TEXT)
    area_m2: Mapped[float | None] = mapped_column(Numeric(12, 2, asdecimal=False))
    region_code: Mapped[str] = mapped_column(CODE)
    acquired_on: Mapped[dt.date] = mapped_column(Date)
    disposed_on: Mapped[dt.date | None] = mapped_column(Date)


class DisabilityFact(_Provenance, Base):
    __tablename__ = "fact_disability"
    __table_args__ = (
        Index("ix_fact_disability_iin", "iin"),
        Index("ix_fact_disability_source_record_id", "source_record_id"),
        Index("ix_fact_disability_batch_id", "batch_id"),
    )

    id: Mapped[int] = _pk()
    iin: Mapped[str] = mapped_column(IIN)
    disability_group: Mapped[str] = mapped_column(CODE)
    assigned_on: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date | None] = mapped_column(Date)
    # ICD-10 code, AES-GCM encrypted and bound to its batch and line (privacy/fields.py)
    diagnosis: Mapped[str | None] = mapped_column(EncryptedString(row=("batch_id", "line_no")))


class FinanceFact(_Provenance, Base):
    __tablename__ = "fact_finance"
    __table_args__ = (
        Index("ix_fact_finance_iin", "iin"),
        Index("ix_fact_finance_source_record_id", "source_record_id"),
        Index("ix_fact_finance_batch_id", "batch_id"),
    )

    id: Mapped[int] = _pk()
    iin: Mapped[str] = mapped_column(IIN)
    product: Mapped[str] = mapped_column(CODE)
    contract_id: Mapped[str] = mapped_column(TEXT)
    balance_tiyn: Mapped[int] = mapped_column(BigInteger)
    opened_on: Mapped[dt.date] = mapped_column(Date)
    closed_on: Mapped[dt.date | None] = mapped_column(Date)


FACT_MODELS: dict[str, type[Base]] = {
    "population": PopulationFact,
    "household": HouseholdFact,
    "income": IncomeFact,
    "employment": EmploymentFact,
    "property": PropertyFact,
    "disability": DisabilityFact,
    "finance": FinanceFact,
}
FACT_TABLES: dict[str, Table] = {code: model.__table__ for code, model in FACT_MODELS.items()}  # type: ignore[misc]


class RegistryEvent(Base):
    """A change event a registry pushed: stored here, durably, before the push is answered.

    The worker claims ``pending`` rows in id order, inserts each payload as a fact and marks it
    ``applied`` (or ``failed`` with the error, after ``attempts`` tries). ``payload`` is the
    canonical JSON of the payload as received; for a source with special-category columns it
    holds only RAW_SEALED and the JSON is in ``payload_sealed``, encrypted and bound to
    (source, event_id). See registry/events.py and docs/events.md.
    """

    __tablename__ = "registry_event"
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_registry_event_source_event_id"),
        Index("ix_registry_event_status_id", "status", "id"),
        Index("ix_registry_event_subject_iin", "subject_iin"),
    )

    id: Mapped[int] = _pk()
    source: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    subject_iin: Mapped[str] = mapped_column(IIN)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str] = mapped_column(Text)
    payload_sealed: Mapped[str | None] = mapped_column(EncryptedString(row=("source", "event_id")))
    # SHA-256 of the canonical event; HMAC-SHA-256 for a sealed payload (registry/events.py)
    content_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    # the worker (proactive/worker.py): the batch its fact went into, and until when a worker
    # holds it while recomputing the households (after that another worker may take it over)
    batch_id: Mapped[int | None] = mapped_column(Integer)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
