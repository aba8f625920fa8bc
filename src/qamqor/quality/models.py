"""Tables of the quality feature: check runs, data-quality issues and whom they affect.

An issue is identified by its check and key (the IIN, the household, the source registry ...):
the same defect seen again is the same issue, and an issue not seen by a later run that looked
at its households closes by itself.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from qamqor.kit.db import Base, UTCDateTime


class QualityRun(Base):
    __tablename__ = "dq_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    as_of: Mapped[dt.date] = mapped_column()
    scope: Mapped[str] = mapped_column(String(16))  # all | households
    households: Mapped[int] = mapped_column(BigInteger)
    findings: Mapped[int] = mapped_column(BigInteger)
    opened: Mapped[int] = mapped_column(BigInteger)
    closed: Mapped[int] = mapped_column(BigInteger)
    # denominators of the scorecard: persons and households per region, facts per source
    totals: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class QualityIssue(Base):
    __tablename__ = "dq_issue"
    __table_args__ = (
        UniqueConstraint("check_id", "key"),
        Index("ix_dq_issue_status_owner", "status", "owner"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    check_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    dimension: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(32))  # the source registry that must fix it
    status: Mapped[str] = mapped_column(String(8))  # open | closed
    detail: Mapped[str] = mapped_column(Text)
    region_code: Mapped[str | None] = mapped_column(String(32))
    persons: Mapped[int] = mapped_column(Integer)
    households: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    opened_run_id: Mapped[int] = mapped_column(ForeignKey("dq_run.id"))
    last_run_id: Mapped[int] = mapped_column(ForeignKey("dq_run.id"))


class QualityIssueSubject(Base):
    """A person or household an issue affects (either may be unknown)."""

    __tablename__ = "dq_issue_subject"
    __table_args__ = (
        Index("ix_dq_issue_subject_household_id", "household_id"),
        Index("ix_dq_issue_subject_iin", "iin"),
        Index("ix_dq_issue_subject_issue_id", "issue_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("dq_issue.id", ondelete="CASCADE"))
    household_id: Mapped[str | None] = mapped_column(String(200))
    iin: Mapped[str | None] = mapped_column(String(12))
