"""Tables of the profiles feature: builds, profile versions, and the current version per household.

A profile version is written only when something in it changed (a value or a quality flag);
older versions stay, so a decision can always name the exact profile it stood on. A build
records the newest registry batch it read, so the facts behind any version can be listed later
exactly as they were.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from qamqor.kit.db import Base, UTCDateTime


class ProfileBuild(Base):
    __tablename__ = "profile_build"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    scope: Mapped[str] = mapped_column(String(16))  # all | households
    max_batch_id: Mapped[int] = mapped_column(Integer)
    catalogue_sha256: Mapped[str] = mapped_column(String(64))
    # the order of the values in each version's ``features`` array
    feature_names: Mapped[list[str]] = mapped_column(JSON)
    households: Mapped[int] = mapped_column(BigInteger)
    changed: Mapped[int] = mapped_column(BigInteger)
    phases: Mapped[dict[str, float]] = mapped_column(JSON)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ProfileVersion(Base):
    __tablename__ = "profile_version"
    __table_args__ = (UniqueConstraint("household_id", "version"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    household_id: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    build_id: Mapped[int] = mapped_column(ForeignKey("profile_build.id"))
    as_of: Mapped[dt.date] = mapped_column(Date)
    # the values, in the order of the build's ``feature_names`` (a JSON array: a quarter of the
    # size of an object naming every feature, 1.5 GB instead of 6 for a country), and
    # feature -> the data-quality checks that taint it
    features: Mapped[list[Any]] = mapped_column(JSON)
    quality: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    content_sha256: Mapped[str] = mapped_column(String(64))


class ProfileHead(Base):
    """The current version of every household's profile: what rules and the portal read."""

    __tablename__ = "profile_head"
    __table_args__ = (Index("ix_profile_head_region_code", "region_code"),)

    household_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    build_id: Mapped[int] = mapped_column(ForeignKey("profile_build.id"))
    region_code: Mapped[str | None] = mapped_column(String(32))
    content_sha256: Mapped[str] = mapped_column(String(64))
