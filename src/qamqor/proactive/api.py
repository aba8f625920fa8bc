"""Offers over HTTP: the citizen's own (``/me/offers``) and the SMS gateway's replies.

Mounted under ``/api/v1``. A signed-in citizen lists the offers to their current households
and accepts or declines one (channel ``api`` with a bearer token, ``portal`` with the page
session); an offer of another household answers 404, as one that does not exist. The SMS
gateway posts what a citizen answered (``{"iin": "...", "text": "ДА 123"}``) and gets back
what happened and the text to send back, in the language of the answer; a language keyword
(``KK``, ``RU``, ``EN``) stores the citizen's language instead.

The gateway signs in as a machine client of its own kind, ``gateway_client`` (policy
``offers.sms_reply``; ``qamqor accounts create-client sms-gateway --gateway``): no merchant or
registry client can answer offers.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import BaseModel, Field

from qamqor.kit.db import session_scope
from qamqor.kit.i18n import normalise_language
from qamqor.privacy.errors import AccessDeniedError
from qamqor.proactive import offers
from qamqor.proactive.models import Entitlement, Notice
from qamqor.proactive.notify import LINK_BASE, notice_message, program_name
from qamqor.rules.explain import format_tenge
from qamqor.web.auth import Caller, authorize

router = APIRouter(tags=["proactive"])

Lang = Annotated[str | None, Query(description="ru, kk or en; default from Accept-Language")]
AcceptLanguage = Annotated[str | None, Header()]


class EntitlementOut(BaseModel):
    id: int
    amount_tiyn: int
    amount: str = Field(description="The amount in words of the language: 35 596 ₸")
    period_start: dt.date
    period_end: dt.date | None = Field(description="Last day included; null: open-ended")
    channel: str = Field(description="bank or wallet")
    purpose: str = Field(description="The wallet label: cash, food, medicine, ...")
    status: str


class NoticeOut(BaseModel):
    id: int
    kind: str = Field(description="eligibility_lost or amount_changed")
    amount_before_tiyn: int | None
    amount_after_tiyn: int | None
    effective_on: dt.date
    appeal_until: dt.date
    text: str = Field(description="The notice as the SMS said it, in the requested language")
    link: str


class OfferOut(BaseModel):
    id: int
    household_id: str
    program_id: str
    program_name: str
    amount_tiyn: int | None
    amount: str | None
    status: str = Field(description="created, notified, accepted, declined or expired")
    created_at: dt.datetime
    expires_at: dt.datetime
    responded_at: dt.datetime | None
    response_channel: str | None
    link: str
    entitlement: EntitlementOut | None
    notices: list[NoticeOut]


class OffersOut(BaseModel):
    lang: str
    offers: list[OfferOut]


class SmsReplyIn(BaseModel):
    iin: str = Field(min_length=12, max_length=12, pattern=r"^\d{12}$")
    text: str = Field(max_length=1000, examples=["ДА 123"])


class SmsReplyOut(BaseModel):
    outcome: str = Field(description="accepted, declined, refused, language_set or not_understood")
    offer_id: int | None
    entitlement_id: int | None
    key: str | None = Field(description="The message id of a refusal (offers.expired, ...)")
    lang: str
    reply: str = Field(description="The text to send back to the citizen: one SMS")


def _language(lang: str | None, accept_language: str | None) -> str:
    return normalise_language(lang or accept_language)


def _entitlement_out(entitlement: Entitlement, lang: str) -> EntitlementOut:
    return EntitlementOut(
        id=entitlement.id,
        amount_tiyn=entitlement.amount_tiyn,
        amount=format_tenge(entitlement.amount_tiyn, lang),
        period_start=entitlement.period_start,
        period_end=entitlement.period_end,
        channel=entitlement.channel,
        purpose=entitlement.purpose,
        status=entitlement.status,
    )


def _notice_out(notice: Notice, lang: str) -> NoticeOut:
    text, link = notice_message(notice, lang)
    return NoticeOut(
        id=notice.id,
        kind=notice.kind,
        amount_before_tiyn=notice.amount_before_tiyn,
        amount_after_tiyn=notice.amount_after_tiyn,
        effective_on=notice.effective_on,
        appeal_until=notice.appeal_until,
        text=text,
        link=link,
    )


def offer_out(found: offers.OfferView, lang: str, now: dt.datetime) -> OfferOut:
    lang = normalise_language(lang)
    offer = found.offer
    return OfferOut(
        id=offer.id,
        household_id=offer.household_id,
        program_id=offer.program_id,
        program_name=program_name(offer.program_id, lang),
        amount_tiyn=offer.amount_tiyn,
        amount=format_tenge(offer.amount_tiyn, lang) if offer.amount_tiyn is not None else None,
        status=offers.effective_status(offer, now),
        created_at=offer.created_at,
        expires_at=offer.expires_at,
        responded_at=offer.responded_at,
        response_channel=offer.response_channel,
        link=f"{LINK_BASE}/o/{offer.id}",
        entitlement=_entitlement_out(found.entitlement, lang) if found.entitlement else None,
        notices=[_notice_out(n, lang) for n in found.notices],
    )


def _citizen_iin(caller: Caller) -> str:
    if not caller.principal.iin:  # every citizen account has one; the policy admits only them
        raise AccessDeniedError("not_member")
    return caller.principal.iin


@router.get("/me/offers", response_model=OffersOut, summary="My household's offers, newest first")
def list_my_offers(
    caller: Annotated[Caller, Depends(authorize("offers.read"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> OffersOut:
    language = _language(lang, accept_language)
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        found = offers.list_for_citizen(session, _citizen_iin(caller), now)
        return OffersOut(lang=language, offers=[offer_out(v, language, now) for v in found])


def _answer(caller: Caller, offer_id: int, answer: str, language: str) -> OfferOut:
    iin = _citizen_iin(caller)
    channel = "portal" if caller.via_cookie else "api"
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        try:
            if answer == "accept":
                offers.accept(session, offer_id, iin, channel, now)
            else:
                offers.decline(session, offer_id, iin, channel, now)
        except offers.OfferError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.message(language)) from None
        return offer_out(offers.view(session, offers.get_offer(session, offer_id)), language, now)


@router.post(
    "/me/offers/{offer_id}/accept",
    response_model=OfferOut,
    summary="Accept an offer: consent recorded, entitlement created (idempotent)",
)
def accept_offer(
    offer_id: int,
    caller: Annotated[Caller, Depends(authorize("offers.respond"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> OfferOut:
    return _answer(caller, offer_id, "accept", _language(lang, accept_language))


@router.post(
    "/me/offers/{offer_id}/decline",
    response_model=OfferOut,
    summary="Decline an offer (idempotent)",
)
def decline_offer(
    offer_id: int,
    caller: Annotated[Caller, Depends(authorize("offers.respond"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> OfferOut:
    return _answer(caller, offer_id, "decline", _language(lang, accept_language))


@router.post(
    "/notifications/sms-replies",
    response_model=SmsReplyOut,
    summary="A citizen's SMS answer, from the SMS gateway: accept or decline, and what to reply",
)
def post_sms_reply(
    body: SmsReplyIn,
    caller: Annotated[Caller, Depends(authorize("offers.sms_reply"))],
) -> SmsReplyOut:
    """Always 200 for what the citizen wrote: an unreadable text or a closed offer is an
    outcome (``not_understood``, ``refused``) with the reply to send, not an error. An IIN
    without a valid check digit is 422 when the text would store a preference."""
    with session_scope() as session:
        result = offers.handle_sms_reply(session, body.iin, body.text, dt.datetime.now(dt.UTC))
    return SmsReplyOut(
        outcome=result.outcome,
        offer_id=result.offer_id,
        entitlement_id=result.entitlement_id,
        key=result.key,
        lang=result.lang,
        reply=result.text,
    )
