"""Tables of proactive support: offers, entitlements, notices and the notifications outbox.

Every row is keyed by what caused it, so that doing the same work twice writes nothing twice:
an offer by the decision that made the household eligible, a notice by the decision that
changed or ended the eligibility, an entitlement by the offer accepted, a notification by
(kind, the row it is about). A worker killed anywhere and run again finds its work already done
up to the last commit and does the rest.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from qamqor.kit.db import Base, UTCDateTime

BigId = BigInteger().with_variant(Integer, "sqlite")
OFFER_STATUSES = ("created", "notified", "accepted", "declined", "expired")


class Offer(Base):
    """Support offered before anyone applied: the citizen has 72 hours to accept."""

    __tablename__ = "proactive_offer"
    __table_args__ = (
        Index("ix_proactive_offer_household", "household_id", "program_id"),
        Index("ix_proactive_offer_status_expires", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    household_id: Mapped[str] = mapped_column(String(200))
    program_id: Mapped[str] = mapped_column(String(64))
    decision_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    amount_tiyn: Mapped[int | None] = mapped_column(BigInteger)
    recipient_iin: Mapped[str | None] = mapped_column(String(12))  # the head of household
    status: Mapped[str] = mapped_column(String(16))
    # the first event that led here, for the event -> offer latency
    event_received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    responded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    response_channel: Mapped[str | None] = mapped_column(String(16))  # api | sms | portal
    consent_id: Mapped[int | None] = mapped_column(BigInteger)


class Entitlement(Base):
    """What an accepted offer pays: program, amount, period, channel and wallet purpose."""

    __tablename__ = "proactive_entitlement"
    __table_args__ = (Index("ix_proactive_entitlement_household", "household_id", "program_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("proactive_offer.id"), unique=True)
    household_id: Mapped[str] = mapped_column(String(200))
    program_id: Mapped[str] = mapped_column(String(64))
    amount_tiyn: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date | None] = mapped_column(Date)
    channel: Mapped[str] = mapped_column(String(16))  # bank | wallet
    purpose: Mapped[str] = mapped_column(String(32))  # cash | food | medicine | ...
    status: Mapped[str] = mapped_column(String(16))  # active | ending | ended
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Notice(Base):
    """A change the household must be told about: eligibility lost, or the amount changed."""

    __tablename__ = "proactive_notice"
    __table_args__ = (Index("ix_proactive_notice_household", "household_id", "program_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    household_id: Mapped[str] = mapped_column(String(200))
    program_id: Mapped[str] = mapped_column(String(64))
    decision_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    entitlement_id: Mapped[int] = mapped_column(ForeignKey("proactive_entitlement.id"))
    kind: Mapped[str] = mapped_column(String(32))  # eligibility_lost | amount_changed
    amount_before_tiyn: Mapped[int | None] = mapped_column(BigInteger)
    amount_after_tiyn: Mapped[int | None] = mapped_column(BigInteger)
    effective_on: Mapped[dt.date] = mapped_column(Date)  # payment continues until then
    appeal_until: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Notification(Base):
    """The outbox: one message to send, in the citizen's language, short enough for one SMS."""

    __tablename__ = "proactive_notification"
    __table_args__ = (Index("ix_proactive_notification_status", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(100), unique=True)  # offer:12, notice:7 ...
    household_id: Mapped[str] = mapped_column(String(200))
    recipient_iin: Mapped[str | None] = mapped_column(String(12))
    channel: Mapped[str] = mapped_column(String(16))  # sms
    lang: Mapped[str] = mapped_column(String(2))
    text: Mapped[str] = mapped_column(Text)
    link: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
