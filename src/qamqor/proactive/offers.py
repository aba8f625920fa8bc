"""The life of an offer: created → notified → accepted | declined | expired.

A citizen who is a current member of the offer's household answers it, through the API, the
portal or an SMS reply (``ДА 123``), within its 72 hours. Accepting records the citizen's
consent to proactive offers (ISO/IEC TS 27560, ``qamqor.privacy.consents``) and creates the
entitlement; both answers are idempotent, so a repeated SMS or a retried request changes
nothing: accepting twice returns the same entitlement, declining twice the same offer.

Someone who is not a member gets the same "not found" as for an offer that does not exist:
offer ids are sequential, and the answer must not tell whose offers exist.

The entitlement's period starts on the first day of the local month of acceptance, as the
Social Code assigns АСП from the month one applies in, and accepting an offer is the
application; it lasts the program's ``duration_months`` (the last day included) or is
open-ended without one. Amount, channel (bank | wallet) and wallet purpose come from the
offer and the program's ``payment`` block.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from qamqor.kit.errors import NotFoundError, QamqorError
from qamqor.kit.i18n import normalise_language, translate
from qamqor.privacy import consents, households, preferences
from qamqor.proactive.models import Entitlement, Notice, Offer
from qamqor.proactive.notify import (
    day_month,
    insert_once,
    local_day,
    preferred_language,
    program_payment,
    short_name,
    sms_amount,
)

OPEN = ("created", "notified")
RESPONSE_CHANNELS = ("api", "portal", "sms")
CONSENT_PURPOSE = "proactive_offers"


class OfferError(QamqorError):
    """An answer to an offer that cannot be taken; ``key`` is a message id (ru/kk/en)."""

    code = "offer"
    status = 409

    def __init__(self, key: str, **values: Any) -> None:
        self.key = key
        self.values = values
        super().__init__(translate(key, "en", **values))

    def message(self, lang: str | None) -> str:
        return translate(self.key, lang, **self.values)


class OfferNotFoundError(OfferError, NotFoundError):
    """No such offer, or not one of the caller's households (the same answer on purpose)."""

    code = "offer_not_found"
    status = 404


class OfferClosedError(OfferError):
    """The offer was declined, expired, or (to a decline) already accepted."""

    code = "offer_closed"


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferView:
    offer: Offer
    entitlement: Entitlement | None
    notices: list[Notice] = field(default_factory=list)


def effective_status(offer: Offer, now: dt.datetime) -> str:
    """The status as the citizen sees it: an open offer past its time is expired even before
    ``expire_due`` has run."""
    if offer.status in OPEN and now >= offer.expires_at:
        return "expired"
    return offer.status


def get_offer(session: Session, offer_id: int) -> Offer:
    offer = session.get(Offer, offer_id)
    if offer is None:
        raise OfferNotFoundError("offers.not_found", offer_id=offer_id)
    return offer


def entitlement_of(session: Session, offer_id: int) -> Entitlement | None:
    return session.scalars(select(Entitlement).where(Entitlement.offer_id == offer_id)).first()


def _views(session: Session, offers: list[Offer]) -> list[OfferView]:
    ids = [o.id for o in offers]
    entitlements = {
        e.offer_id: e
        for e in session.scalars(select(Entitlement).where(Entitlement.offer_id.in_(ids)))
    }
    notices: dict[int, list[Notice]] = {}
    entitlement_ids = [e.id for e in entitlements.values()]
    for notice in session.scalars(
        select(Notice)
        .where(Notice.entitlement_id.in_(entitlement_ids))
        .order_by(Notice.created_at, Notice.id)
    ):
        notices.setdefault(notice.entitlement_id, []).append(notice)
    views = []
    for offer in offers:
        entitlement = entitlements.get(offer.id)
        views.append(
            OfferView(offer, entitlement, notices.get(entitlement.id, []) if entitlement else [])
        )
    return views


def view(session: Session, offer: Offer) -> OfferView:
    return _views(session, [offer])[0]


def list_for_citizen(session: Session, iin: str, now: dt.datetime | None = None) -> list[OfferView]:
    """Offers to the citizen's current households, newest first, with the entitlement and the
    notices about it."""
    day = local_day(now or dt.datetime.now(dt.UTC))
    current = households.households_of(session, iin, day)
    if not current:
        return []
    offers = list(
        session.scalars(
            select(Offer)
            .where(Offer.household_id.in_(current))
            .order_by(Offer.created_at.desc(), Offer.id.desc())
        )
    )
    return _views(session, offers)


def list_offers(
    session: Session,
    *,
    household_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[OfferView]:
    """Offers for operators (the CLI), newest first."""
    query = select(Offer).order_by(Offer.created_at.desc(), Offer.id.desc()).limit(limit)
    if household_id:
        query = query.where(Offer.household_id == household_id)
    if status:
        query = query.where(Offer.status == status)
    return _views(session, list(session.scalars(query)))


# --- answering -----------------------------------------------------------------------------


def entitlement_period(accepted_on: dt.date, months: int | None) -> tuple[dt.date, dt.date | None]:
    """(first day, last day included) of the months paid: from the month of acceptance, for
    ``months`` months; no last day when the program sets no duration."""
    start = accepted_on.replace(day=1)
    if months is None:
        return start, None
    index = start.year * 12 + start.month - 1 + months
    after = dt.date(index // 12, index % 12 + 1, 1)
    return start, after - dt.timedelta(days=1)


def _responding_to(
    session: Session, offer_id: int, iin: str, channel: str, now: dt.datetime
) -> Offer:
    """The offer, locked for the answer, when ``iin`` may answer it."""
    if channel not in RESPONSE_CHANNELS:
        raise ValueError(f"unknown response channel {channel!r}; known: {RESPONSE_CHANNELS}")
    # FOR UPDATE: an SMS and a portal click racing on one offer answer one after the other
    # (SQLite serialises writers anyway and ignores it).
    offer = session.scalars(
        select(Offer)
        .where(Offer.id == offer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if offer is None or not households.is_member(session, offer.household_id, iin, local_day(now)):
        raise OfferNotFoundError("offers.not_found", offer_id=offer_id)
    return offer


def _require_open(offer: Offer, now: dt.datetime) -> None:
    if offer.status == "declined":
        raise OfferClosedError("offers.declined", offer_id=offer.id)
    if effective_status(offer, now) == "expired":
        raise OfferClosedError("offers.expired", offer_id=offer.id)


def _payment(program_id: str) -> dict[str, Any]:
    payment = program_payment(program_id)
    if payment is None:
        raise OfferClosedError("offers.program_unknown", program=program_id)
    return payment


def accept(
    session: Session, offer_id: int, iin: str, channel: str, now: dt.datetime
) -> Entitlement:
    """Accept the offer for the household: consent recorded, entitlement created.

    Accepting an accepted offer returns its entitlement, whoever of the household accepted
    and however late; a declined or expired offer is ``OfferClosedError``.
    """
    offer = _responding_to(session, offer_id, iin, channel, now)
    if offer.status != "accepted":
        _require_open(offer, now)
        payment = _payment(offer.program_id)
        if offer.amount_tiyn is None:
            raise OfferClosedError("offers.no_amount", offer_id=offer.id)
        consent = consents.grant(session, iin, CONSENT_PURPOSE)
        start, end = entitlement_period(local_day(now), payment.get("duration_months"))
        entitlement = insert_once(
            session,
            Entitlement,
            {
                "offer_id": offer.id,
                "household_id": offer.household_id,
                "program_id": offer.program_id,
                "amount_tiyn": offer.amount_tiyn,
                "period_start": start,
                "period_end": end,
                "channel": payment["channel"],
                "purpose": payment["purpose"],
                "status": "active",
                "created_at": now,
            },
            "offer_id",
        )
        offer.status = "accepted"
        offer.responded_at = now
        offer.response_channel = channel
        offer.consent_id = consent.id
        session.flush()
        return entitlement
    found = entitlement_of(session, offer.id)
    if found is None:  # an accepted offer always has one; the data were edited by hand
        raise RuntimeError(f"offer {offer.id} is accepted but has no entitlement")
    return found


def decline(session: Session, offer_id: int, iin: str, channel: str, now: dt.datetime) -> Offer:
    """Decline the offer; declining again returns it unchanged. No consent is recorded and
    nothing is paid; an accepted offer cannot be declined (the entitlement is ended through
    the social protection office, not by an SMS)."""
    offer = _responding_to(session, offer_id, iin, channel, now)
    if offer.status == "declined":
        return offer
    if offer.status == "accepted":
        raise OfferClosedError("offers.already_accepted", offer_id=offer.id)
    _require_open(offer, now)
    offer.status = "declined"
    offer.responded_at = now
    offer.response_channel = channel
    session.flush()
    return offer


def expire_due(session: Session, now: dt.datetime) -> int:
    """Mark every open offer whose time is up as expired, in one UPDATE; returns how many."""
    result = session.execute(
        update(Offer)
        .where(Offer.status.in_(OPEN), Offer.expires_at <= now)
        .values(status="expired")
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- SMS replies ---------------------------------------------------------------------------

# Latin letters that look like Cyrillic ones, and the Latin spellings of Ә: "HET", "ДA" (a
# Latin A) or "ИƏ" typed on a phone are read as НЕТ, ДА and ИӘ; "YES" and "NO" typed with a
# Cyrillic У, Е or О likewise, since both sides are mapped the same way.
_LOOKALIKES = str.maketrans(
    {
        "A": "А",
        "B": "В",
        "C": "С",
        "E": "Е",
        "H": "Н",
        "K": "К",
        "M": "М",
        "O": "О",
        "P": "Р",
        "T": "Т",
        "X": "Х",
        "Y": "У",
        "Ə": "Ә",
        "Ä": "Ә",
    }
)


def _skeleton(text: str) -> str:
    return unicodedata.normalize("NFKC", text).upper().translate(_LOOKALIKES)


# keyword -> (answer, language of the reply); ЖОК is ЖОҚ typed without a Kazakh keyboard
_KEYWORDS = {
    _skeleton(word): answer
    for word, answer in {
        "ДА": ("yes", "ru"),
        "ИӘ": ("yes", "kk"),
        "YES": ("yes", "en"),
        "НЕТ": ("no", "ru"),
        "ЖОҚ": ("no", "kk"),
        "ЖОК": ("no", "kk"),
        "NO": ("no", "en"),
    }.items()
}
# a word and the offer number in either order, with spaces or punctuation around them
_REPLY = (
    re.compile(r"\W*(?P<word>[^\W\d_]+)\W*(?P<code>\d{1,18})\W*"),
    re.compile(r"\W*(?P<code>\d{1,18})\W*(?P<word>[^\W\d_]+)\W*"),
)
_KAZAKH_LETTERS = frozenset("ӘҒҚҢӨҰҮҺІ")

# A language keyword alone switches the language we write in: the ISO 639-1 code, its
# three-letter form and the language's own name, with КАЗ / ҚАЗАҚША typed without a Kazakh
# keyboard too. Look-alike letters are read as above, so "KK" in Latin and "КК" in Cyrillic
# are one keyword.
_LANGUAGE_KEYWORDS = {
    _skeleton(word): lang
    for lang, words in {
        "kk": ("KK", "KZ", "KAZ", "ҚАЗ", "КАЗ", "ҚАЗАҚША", "КАЗАКША"),
        "ru": ("RU", "RUS", "РУС", "РУССКИЙ", "ОРЫСША"),
        "en": ("EN", "ENG", "ENGLISH", "АНГЛ", "АҒЫЛШЫНША"),
    }.items()
    for word in words
}
_LANGUAGE_REPLY = re.compile(r"\W*(?P<word>[^\W\d_]+)\W*")


@dataclass(frozen=True)
class ParsedReply:
    answer: str  # yes | no
    offer_id: int
    lang: str


def parse_reply(text: str) -> ParsedReply | None:
    """``ДА 123`` / ``ИӘ 123`` / ``YES 123`` and ``НЕТ`` / ``ЖОҚ`` / ``NO``, any case, extra
    spaces or punctuation, look-alike letters; None for anything else."""
    skeleton = _skeleton(text)
    for pattern in _REPLY:
        match = pattern.fullmatch(skeleton)
        if match is not None and match["word"] in _KEYWORDS:
            answer, lang = _KEYWORDS[match["word"]]
            return ParsedReply(answer, int(match["code"]), lang)
    return None


def parse_language(text: str) -> str | None:
    """``KK`` / ``ҚАЗ`` / ``RU`` / ``РУС`` / ``EN`` ... alone, any case, punctuation around:
    the language it asks for; None for anything else (an answer to an offer among it)."""
    match = _LANGUAGE_REPLY.fullmatch(_skeleton(text))
    if match is None:
        return None
    return _LANGUAGE_KEYWORDS.get(match["word"])


def _guess_language(text: str) -> str | None:
    upper = text.upper()
    if any(ch in _KAZAKH_LETTERS for ch in upper):
        return "kk"
    if any("А" <= ch <= "Я" or ch == "Ё" for ch in upper):
        return "ru"
    if any("A" <= ch <= "Z" for ch in upper):
        return "en"
    return None


@dataclass(frozen=True)
class SmsReply:
    """What an SMS reply did, and the text to answer the citizen with (one SMS)."""

    outcome: str  # accepted | declined | refused | language_set | not_understood
    lang: str
    text: str
    offer_id: int | None = None
    entitlement_id: int | None = None
    key: str | None = None  # the message id of a refusal


def handle_sms_reply(session: Session, iin: str, text: str, now: dt.datetime) -> SmsReply:
    """Read a citizen's SMS answer and accept or decline through channel ``sms``, or store
    the language a keyword asks for (``language_set``, answered in that language). Never
    raises for what the citizen wrote: an unreadable reply or a closed offer comes back as
    ``not_understood`` or ``refused`` with a text the gateway sends back."""
    parsed = parse_reply(text)
    if parsed is None:
        chosen = parse_language(text)
        if chosen is not None:
            preferences.set_language(session, iin, chosen, "sms", now)
            key = "proactive.reply.language_set"
            return SmsReply("language_set", chosen, translate(key, chosen))
        lang = _guess_language(text) or preferred_language(session, iin)
        key = "proactive.reply.not_understood"
        return SmsReply("not_understood", lang, translate(key, lang), key=key)
    lang = normalise_language(parsed.lang)
    try:
        if parsed.answer == "yes":
            entitlement = accept(session, parsed.offer_id, iin, "sms", now)
            reply = translate(
                "proactive.reply.accepted",
                lang,
                program=short_name(entitlement.program_id, lang),
                amount=sms_amount(entitlement.amount_tiyn, lang),
                start=day_month(entitlement.period_start),
                code=parsed.offer_id,
            )
            return SmsReply("accepted", lang, reply, parsed.offer_id, entitlement.id)
        decline(session, parsed.offer_id, iin, "sms", now)
        reply = translate("proactive.reply.declined", lang, code=parsed.offer_id)
        return SmsReply("declined", lang, reply, parsed.offer_id)
    except OfferError as exc:
        return SmsReply("refused", lang, exc.message(lang), parsed.offer_id, key=exc.key)
