"""Tables of the rules feature: program versions, decision runs, decisions and their heads,
population figures, and profile values a citizen contests.

A decision names everything that made it: the program version (the SHA-256 of the spec text
and of the parameter values in force, with the text itself kept here), the parameter values,
the profile version, and per criterion the result with the values and thresholds it compared.
``qamqor decisions replay ID`` recomputes it from exactly these and must get the same bytes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from qamqor.kit.db import Base, UTCDateTime

BigId = BigInteger().with_variant(Integer, "sqlite")


class ProgramVersion(Base):
    """A program spec as it decided: its text and the parameter values it used on a day."""

    __tablename__ = "program_version"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64))
    spec_text: Mapped[str] = mapped_column(Text)
    parameters: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class DecisionRun(Base):
    __tablename__ = "decision_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    scope: Mapped[str] = mapped_column(String(16))  # all | households
    programs: Mapped[list[str]] = mapped_column(JSON)
    households: Mapped[int] = mapped_column(BigInteger)
    written: Mapped[int] = mapped_column(BigInteger)
    totals: Mapped[dict[str, Any]] = mapped_column(JSON)
    phases: Mapped[dict[str, float]] = mapped_column(JSON)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Decision(Base):
    """One program's decision for one household, written when it differs from the current one."""

    __tablename__ = "decision"
    __table_args__ = (
        Index("ix_decision_household_program", "household_id", "program_id"),
        Index("ix_decision_run_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("decision_run.id"))
    household_id: Mapped[str] = mapped_column(String(200))
    program_id: Mapped[str] = mapped_column(String(64))
    program_version: Mapped[str] = mapped_column(ForeignKey("program_version.sha256"))
    profile_version_id: Mapped[int] = mapped_column(BigInteger)
    as_of: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))  # eligible | ineligible | needs_review
    amount_tiyn: Mapped[int | None] = mapped_column(BigInteger)
    # criteria results, the values and thresholds compared, held (unknown) values and why:
    # the JSON text exactly as the engine wrote it, so a replay can compare bytes
    detail: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class DecisionHead(Base):
    """The current decision per household and program: what the worker compares against."""

    __tablename__ = "decision_head"
    __table_args__ = (Index("ix_decision_head_program_status", "program_id", "status"),)

    household_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    program_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    decision_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    amount_tiyn: Mapped[int | None] = mapped_column(BigInteger)
    content_sha256: Mapped[str] = mapped_column(String(64))


class PopulationFigure(Base):
    """A figure of the whole population a rule uses (the median per-capita income), fixed per
    month when first computed, so that every decision of that month uses the same value."""

    __tablename__ = "population_figure"
    __table_args__ = (UniqueConstraint("name", "as_of"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[dt.date] = mapped_column(Date)
    value: Mapped[int] = mapped_column(BigInteger)
    households: Mapped[int] = mapped_column(BigInteger)
    persons: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ContestedValue(Base):
    """A profile value under appeal: rules treat it as unknown until the appeal is resolved."""

    __tablename__ = "contested_value"
    __table_args__ = (Index("ix_contested_value_household", "household_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_id: Mapped[str] = mapped_column(String(200))
    feature: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    opened_by: Mapped[str] = mapped_column(String(200))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
