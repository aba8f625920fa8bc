"""Notification texts for offers and notices, and the outbox rows that carry them.

Every text must fit in ONE SMS: 160 characters when it is pure GSM-7 (the 3GPP TS 23.038
default alphabet; its extension characters such as ``€`` or ``[`` cost two), 70 UTF-16 units
as soon as any other character appears — Cyrillic, the Kazakh letters, ``₸`` — because the
message is then sent as UCS-2. Russian and Kazakh texts therefore have 70 characters, English
texts 160, and English amounts are written ``35,596 KZT`` so that they stay GSM-7.

Each message has a full wording and a short one in the catalogues (``proactive.sms.offer``
and ``proactive.sms.offer.short``): the full one is sent when it fits, the short one
otherwise. ``tests/proactive/test_offers.py`` checks that the short wording of every template
fits one SMS with the longest short program name, an amount of 1 234 567,89 ₸ and an offer
id of 9,999,999.

The link is sent alongside the text (the gateway appends it, or a push notification opens
it), so it is not counted in the 70: ``LINK_BASE/o/<offer id>`` and ``LINK_BASE/n/<notice
id>``. ``LINK_BASE`` is a constant, not a setting: the address is printed on paper notices
too and changes with a release, not with a deployment.

Each message is written in its recipient's language: the citizen's stored preference
(``preferred_language``), Russian when there is none.

Deadlines are written dd.mm in the local time zone (``QAMQOR_LOCAL_TIMEZONE``). An offer's
deadline is the last whole local day before it expires: an offer expiring on 02.12 at 14:30
says "до 01.12", so whoever answers on the day shown is in time whatever the hour.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from qamqor.kit.db import Base
from qamqor.kit.i18n import normalise_language, translate
from qamqor.kit.settings import get_settings
from qamqor.privacy import households, preferences
from qamqor.privacy.models import Consent
from qamqor.proactive.models import Entitlement, Notice, Notification, Offer
from qamqor.rules.explain import format_tenge
from qamqor.rules.spec import Program, load_programs

LINK_BASE = "https://e.qamqor.kz"
SMS_CHANNEL = "sms"
NOTIFIABLE = ("created", "notified")
ModelT = TypeVar("ModelT", bound=Base)

# 3GPP TS 23.038 default alphabet (the escape code 0x1B left out) and its extension table.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_SINGLE, GSM7_PART = 160, 153  # a concatenated part loses 7 septets to its header
UCS2_SINGLE, UCS2_PART = 70, 67


# --- SMS length ----------------------------------------------------------------------------


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def sms_units(text: str) -> int:
    """Septets when the text is GSM-7 (an extension character is two), else UTF-16 units."""
    if is_gsm7(text):
        return len(text) + sum(ch in GSM7_EXTENSION for ch in text)
    return len(text.encode("utf-16-le")) // 2


def sms_segments(text: str) -> int:
    """How many SMS the text takes: 1 up to 160 GSM-7 / 70 UCS-2 units, then 153 / 67 each."""
    units = sms_units(text)
    single, part = (GSM7_SINGLE, GSM7_PART) if is_gsm7(text) else (UCS2_SINGLE, UCS2_PART)
    return 1 if units <= single else math.ceil(units / part)


# --- values in texts -----------------------------------------------------------------------


def local_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(ZoneInfo(get_settings().local_timezone)).date()


def day_month(day: dt.date) -> str:
    return day.strftime("%d.%m")


def offer_deadline(offer: Offer) -> dt.date:
    """The last whole local day before the offer expires (what the SMS promises)."""
    return local_day(offer.expires_at) - dt.timedelta(days=1)


def sms_amount(tiyn: int, lang: str) -> str:
    """Tenge as the SMS writes them: ``35 596 ₸`` (ru, kk; thin spaces) or ``35,596 KZT`` (en,
    so that an English text stays GSM-7 and keeps its 160 characters)."""
    if normalise_language(lang) != "en":
        return format_tenge(tiyn, lang)
    whole, fraction = divmod(abs(tiyn), 100)
    text = f"{'-' if tiyn < 0 else ''}{whole:,}" + (f".{fraction:02d}" if fraction else "")
    return f"{text} KZT"


@cache
def published_programs() -> dict[str, Program]:
    """The published programs, parsed once per process (parsing checks every expression with
    sqlglot: milliseconds a program, too slow to repeat for every message)."""
    return load_programs()


def program_name(program_id: str, lang: str) -> str:
    """The program's published name in ``lang`` (English, then the id, when it has none)."""
    program = published_programs().get(program_id)
    if program is None:
        return program_id
    return program.names.get(lang) or program.names.get("en") or program_id


def program_payment(program_id: str) -> dict[str, Any] | None:
    """The program's ``payment`` block: channel, purpose, frequency, duration_months."""
    program = published_programs().get(program_id)
    return program.payment if program is not None else None


def short_name(program_id: str, lang: str) -> str:
    """The program's name as an SMS can hold it (``АСП``); the id when no short name exists."""
    key = f"proactive.program.{program_id}"
    text = translate(key, lang)
    return program_id if text == key else text


def _amount_values(tiyn: int | None, program_id: str, lang: str) -> dict[str, str]:
    if tiyn is None:
        amount = translate("proactive.sms.amount_in_link", lang)
        return {"amount": amount, "monthly": amount}
    amount = sms_amount(tiyn, lang)
    monthly = amount
    if (program_payment(program_id) or {}).get("frequency") == "monthly":
        monthly = translate("proactive.sms.monthly", lang, amount=amount)
    return {"amount": amount, "monthly": monthly}


def fitting_text(keys: Sequence[str], lang: str, values: Mapping[str, object]) -> str:
    """The first wording of ``keys`` that fits one SMS (the last one if none does)."""
    text = ""
    for key in keys:
        text = translate(key, lang, **values)
        if sms_segments(text) == 1:
            return text
    return text


# --- texts ---------------------------------------------------------------------------------


def offer_message(offer: Offer, lang: str) -> tuple[str, str]:
    """(text, link) of the SMS that offers support: program, monthly amount, how to answer
    (``ДА <offer id>``) and the deadline."""
    lang = normalise_language(lang)
    values = {
        "program": short_name(offer.program_id, lang),
        "code": offer.id,
        "deadline": day_month(offer_deadline(offer)),
        **_amount_values(offer.amount_tiyn, offer.program_id, lang),
    }
    text = fitting_text(("proactive.sms.offer", "proactive.sms.offer.short"), lang, values)
    return text, f"{LINK_BASE}/o/{offer.id}"


NOTICE_KINDS = ("eligibility_lost", "amount_changed")


def notice_message(notice: Notice, lang: str) -> tuple[str, str]:
    """(text, link) of a notice. ``eligibility_lost``: payment continues until
    ``effective_on``, appeal until ``appeal_until``. ``amount_changed``: the new amount
    (``amount_after_tiyn``) applies from ``effective_on``, appeal until ``appeal_until``."""
    if notice.kind not in NOTICE_KINDS:
        raise ValueError(f"unknown notice kind {notice.kind!r}; known: {NOTICE_KINDS}")
    lang = normalise_language(lang)
    values = {
        "program": short_name(notice.program_id, lang),
        "date": day_month(notice.effective_on),
        "appeal": day_month(notice.appeal_until),
        **_amount_values(notice.amount_after_tiyn, notice.program_id, lang),
    }
    key = f"proactive.sms.{notice.kind}"
    text = fitting_text((key, f"{key}.short"), lang, values)
    return text, f"{LINK_BASE}/n/{notice.id}"


# --- the outbox ----------------------------------------------------------------------------


def insert_once(session: Session, model: type[ModelT], values: dict[str, Any], key: str) -> ModelT:
    """INSERT ... ON CONFLICT (key) DO NOTHING on SQLite and PostgreSQL alike, and the row:
    the one inserted (RETURNING, no second query), or the one that was there already
    (another worker, a rerun, a second accept), left as it was."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(model).values(**values).on_conflict_do_nothing(index_elements=[key])
    inserted = session.scalars(statement.returning(model)).first()
    if inserted is not None:
        return inserted
    column = getattr(model, key)
    return session.scalars(select(model).where(column == values[key])).one()


def preferred_language(session: Session, iin: str) -> str:
    """The language to write to this person in: their stored choice
    (``qamqor.privacy.preferences``, keyed by IIN, since most recipients have no account),
    Russian when they made none. One primary-key lookup per message."""
    return preferences.language_of(session, iin)


def _queued(session: Session, dedupe_key: str) -> Notification | None:
    return session.scalars(
        select(Notification).where(Notification.dedupe_key == dedupe_key)
    ).one_or_none()


def notify_offer(session: Session, offer: Offer, now: dt.datetime) -> Notification | None:
    """Put the offer's SMS in the outbox (once: ``offer:<id>``) and mark the offer notified.

    Nothing is sent for an offer already answered or expired, nor for one without a
    recipient (a household without a head): the portal still shows it. Calling it again
    writes nothing and returns the first notification. :func:`notify_all` for one offer.
    """
    if offer.status not in NOTIFIABLE or now >= offer.expires_at or not offer.recipient_iin:
        return None
    notify_all(session, [offer], [], now)
    return _queued(session, f"offer:{offer.id}")


def notice_recipient(session: Session, notice: Notice) -> str | None:
    """Who hears of a notice: whoever accepted the offer (the consent's subject), else the
    offer's recipient, else the household's current head."""
    return notice_recipients(session, [notice])[notice.id]


def notify_notice(session: Session, notice: Notice, now: dt.datetime) -> Notification | None:
    """Put the notice's SMS in the outbox once (``notice:<id>``); None without a recipient.
    :func:`notify_all` for one notice."""
    notify_all(session, [], [notice], now)
    return _queued(session, f"notice:{notice.id}")


def notify_all(
    session: Session, offers: Sequence[Offer], notices: Sequence[Notice], now: dt.datetime
) -> int:
    """``notify_offer`` and ``notify_notice`` for many at once (the worker's cycle): the
    recipients and their languages read in a query or two, and the outbox rows written in
    one ``INSERT ... ON CONFLICT (dedupe_key) DO NOTHING`` per 500 rows. One at a time these
    were three statements a message and a head-of-household lookup per offer, 0.5 s per
    thousand events. Same rules, same rows; returns how many messages were queued anew."""
    due = [
        o
        for o in offers
        if o.status in NOTIFIABLE and now < o.expires_at and o.recipient_iin is not None
    ]
    recipients = notice_recipients(session, notices)
    languages = preferences.languages_of(
        session,
        [o.recipient_iin for o in due if o.recipient_iin]
        + [r for r in recipients.values() if r is not None],
    )
    rows: list[dict[str, Any]] = []

    def row(key: str, household_id: str, iin: str, message: tuple[str, str]) -> None:
        rows.append(
            {
                "dedupe_key": key,
                "household_id": household_id,
                "recipient_iin": iin,
                "channel": SMS_CHANNEL,
                "lang": languages[iin],
                "text": message[0],
                "link": message[1],
                "status": "pending",
                "attempts": 0,
                "created_at": now,
            }
        )

    for offer in due:
        assert offer.recipient_iin is not None
        lang = languages[offer.recipient_iin]
        row(
            f"offer:{offer.id}", offer.household_id, offer.recipient_iin, offer_message(offer, lang)
        )
        if offer.status == "created":
            offer.status = "notified"
            offer.notified_at = now
    for notice in notices:
        recipient = recipients.get(notice.id)
        if recipient is not None:
            message = notice_message(notice, languages[recipient])
            row(f"notice:{notice.id}", notice.household_id, recipient, message)
    queued = 0
    if rows:
        insert = (
            postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        )
        # One statement for all the rows, as an executemany that SQLAlchemy batches itself
        # ("insertmanyvalues", compiled once per process); a VALUES list per call was compiled
        # anew every time (300 offers: 3,000 parameters).
        outbox = cast(Table, Notification.__table__)
        statement = (
            insert(outbox)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(outbox.c.id)
        )
        queued = len(session.connection().execute(statement, rows).all())
    session.flush()
    return queued


def notice_recipients(session: Session, notices: Sequence[Notice]) -> dict[int, str | None]:
    """``notice_recipient`` of each notice (by notice id), in two queries for them all."""
    by_entitlement: dict[int, str] = {}
    entitlement_ids = sorted({n.entitlement_id for n in notices})
    for start in range(0, len(entitlement_ids), 500):
        for entitlement_id, recipient, subject in session.execute(
            select(Entitlement.id, Offer.recipient_iin, Consent.subject_iin)
            .join(Entitlement, Entitlement.offer_id == Offer.id)
            .outerjoin(Consent, Consent.id == Offer.consent_id)
            .where(Entitlement.id.in_(entitlement_ids[start : start + 500]))
        ):
            if subject or recipient:
                by_entitlement[entitlement_id] = str(subject or recipient)
    found: dict[int, str | None] = {n.id: by_entitlement.get(n.entitlement_id) for n in notices}
    heads = households.heads_of(session, [n.household_id for n in notices if found[n.id] is None])
    for notice in notices:
        if found[notice.id] is None:
            found[notice.id] = heads[notice.household_id]
    return found


def outbox(
    session: Session, *, status: str | None = "pending", limit: int = 50
) -> list[Notification]:
    """Notifications in the order a sender takes them (oldest first)."""
    query = select(Notification).order_by(Notification.id).limit(limit)
    if status:
        query = query.where(Notification.status == status)
    return list(session.scalars(query))
