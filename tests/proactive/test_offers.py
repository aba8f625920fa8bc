"""Offers answered by citizens (API, SMS), their entitlements and consents, the outbox texts.

Households come from the privacy builders (registry facts), offers are written directly; the
database tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from qamqor.kit.db import session_scope
from qamqor.kit.i18n import LANGUAGES, translate
from qamqor.privacy import identities
from qamqor.privacy.models import Consent
from qamqor.proactive import notify, offers
from qamqor.proactive.api import router
from qamqor.proactive.cli import offers_app
from qamqor.proactive.models import Entitlement, Notice, Notification, Offer
from qamqor.rules.spec import load_programs
from qamqor.web.app import create_app
from tests.privacy.builders import BIN, bearer, fast_hashing, make_citizen, make_household

__all__ = ["fast_hashing"]

NOW = dt.datetime(2026, 11, 29, 6, 0, tzinfo=dt.UTC)  # 11:00 in Almaty
HOME, OTHER = "HH-OFFER-1", "HH-OFFER-2"
_decisions = itertools.count(1)


@dataclass(frozen=True)
class World:
    head: str
    spouse: str
    outsider: str


@pytest.fixture
def world(engine: Engine) -> World:
    with session_scope() as session:
        head, spouse = make_household(session, HOME, "75", 900)
        outsider, _ = make_household(session, OTHER, "71", 910)
    return World(head, spouse, outsider)


def add_offer(
    session: Session,
    recipient: str | None,
    *,
    household: str = HOME,
    program: str = "asp",
    amount: int | None = 3_559_600,
    created: dt.datetime = NOW,
    status: str = "created",
) -> Offer:
    offer = Offer(
        household_id=household,
        program_id=program,
        decision_id=next(_decisions),
        amount_tiyn=amount,
        recipient_iin=recipient,
        status=status,
        created_at=created,
        expires_at=created + dt.timedelta(hours=72),
    )
    session.add(offer)
    session.flush()
    return offer


def new_offer(recipient: str | None, **options: object) -> int:
    with session_scope() as session:
        return add_offer(session, recipient, **options).id  # type: ignore[arg-type]


def count(model: type, *where: object) -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# --- accept and decline --------------------------------------------------------------------


def test_accept_records_the_consent_and_creates_the_entitlement_once(world: World) -> None:
    offer_id = new_offer(world.head)
    with session_scope() as session:
        entitlement = offers.accept(session, offer_id, world.head, "api", NOW)
        first_id = entitlement.id
        assert (entitlement.offer_id, entitlement.household_id) == (offer_id, HOME)
        assert (entitlement.program_id, entitlement.amount_tiyn) == ("asp", 3_559_600)
        # АСП: bank, cash, 3 months from the month of acceptance, the last day included
        assert (entitlement.channel, entitlement.purpose, entitlement.status) == (
            "bank",
            "cash",
            "active",
        )
        assert (entitlement.period_start, entitlement.period_end) == (
            dt.date(2026, 11, 1),
            dt.date(2027, 1, 31),
        )
        offer = offers.get_offer(session, offer_id)
        assert (offer.status, offer.response_channel, offer.responded_at) == (
            "accepted",
            "api",
            NOW,
        )
        consent = session.get(Consent, offer.consent_id)
        assert consent is not None
        assert (consent.subject_iin, consent.purpose, consent.withdrawn_at) == (
            world.head,
            "proactive_offers",
            None,
        )
    # again, later and by the spouse: the same entitlement, nothing new
    later = NOW + dt.timedelta(days=5)
    with session_scope() as session:
        again = offers.accept(session, offer_id, world.spouse, "sms", later)
        assert again.id == first_id
        assert offers.get_offer(session, offer_id).response_channel == "api"
    assert count(Entitlement) == 1
    assert count(Consent, Consent.subject_iin == world.head) == 1
    assert count(Consent, Consent.subject_iin == world.spouse) == 0


def test_an_active_consent_is_reused(world: World) -> None:
    from qamqor.privacy import consents

    with session_scope() as session:
        granted = consents.grant(session, world.head, "proactive_offers").id
    first, second = new_offer(world.head), new_offer(world.head, program="food_voucher")
    with session_scope() as session:
        offers.accept(session, first, world.head, "api", NOW)
        offers.accept(session, second, world.head, "api", NOW)
        consent_ids = {offers.get_offer(session, i).consent_id for i in (first, second)}
    assert consent_ids == {granted}
    assert count(Consent) == 1


@pytest.mark.parametrize(
    ("program", "channel", "purpose", "end"),
    [
        ("food_voucher", "wallet", "food", dt.date(2027, 1, 31)),
        ("large_family", "bank", "cash", None),  # no duration: open-ended
    ],
)
def test_the_entitlement_follows_the_programs_payment_block(
    world: World, program: str, channel: str, purpose: str, end: dt.date | None
) -> None:
    offer_id = new_offer(world.head, program=program)
    with session_scope() as session:
        entitlement = offers.accept(session, offer_id, world.spouse, "portal", NOW)
        assert (entitlement.channel, entitlement.purpose) == (channel, purpose)
        assert (entitlement.period_start, entitlement.period_end) == (dt.date(2026, 11, 1), end)


def test_the_period_starts_in_the_local_month_of_acceptance() -> None:
    assert offers.entitlement_period(dt.date(2026, 12, 15), 1) == (
        dt.date(2026, 12, 1),
        dt.date(2026, 12, 31),
    )
    assert offers.entitlement_period(dt.date(2026, 11, 30), 3) == (
        dt.date(2026, 11, 1),
        dt.date(2027, 1, 31),
    )
    assert offers.entitlement_period(dt.date(2027, 1, 31), 12) == (
        dt.date(2027, 1, 1),
        dt.date(2027, 12, 31),
    )
    assert offers.entitlement_period(dt.date(2026, 2, 3), None) == (dt.date(2026, 2, 1), None)
    # 30 November, 20:00 UTC is already 1 December in Almaty: the period starts in December
    assert notify.local_day(dt.datetime(2026, 11, 30, 20, 0, tzinfo=dt.UTC)) == dt.date(2026, 12, 1)


def test_decline_and_what_can_follow_it(world: World) -> None:
    offer_id = new_offer(world.head)
    with session_scope() as session:
        offer = offers.decline(session, offer_id, world.spouse, "api", NOW)
        assert (offer.status, offer.response_channel, offer.consent_id) == ("declined", "api", None)
    with session_scope() as session:
        assert offers.decline(session, offer_id, world.head, "sms", NOW).status == "declined"
    with session_scope() as session, pytest.raises(offers.OfferClosedError) as refused:
        offers.accept(session, offer_id, world.head, "api", NOW)
    assert refused.value.key == "offers.declined" and refused.value.status == 409
    assert refused.value.message("ru") == (
        f"Вы отказались от предложения {offer_id}: принять его уже нельзя."
    )
    assert count(Entitlement) == 0 and count(Consent) == 0

    accepted = new_offer(world.head)
    with session_scope() as session:
        offers.accept(session, accepted, world.head, "api", NOW)
    with session_scope() as session, pytest.raises(offers.OfferClosedError) as late:
        offers.decline(session, accepted, world.head, "api", NOW)
    assert late.value.key == "offers.already_accepted"


def test_an_expired_offer_cannot_be_accepted(world: World) -> None:
    offer_id = new_offer(world.head, created=NOW - dt.timedelta(hours=73))
    for answer in (offers.accept, offers.decline):
        with session_scope() as session, pytest.raises(offers.OfferClosedError) as refused:
            answer(session, offer_id, world.head, "api", NOW)  # type: ignore[operator]
        assert refused.value.key == "offers.expired"
    assert refused.value.message("kk") == f"{offer_id} ұсынысына жауап беру мерзімі өтті."
    # exactly at expires_at it is over
    at_edge = new_offer(world.head, created=NOW - dt.timedelta(hours=72))
    with session_scope() as session, pytest.raises(offers.OfferClosedError):
        offers.accept(session, at_edge, world.head, "api", NOW)
    assert count(Entitlement) == 0


def test_only_a_current_member_can_answer_and_others_learn_nothing(world: World) -> None:
    offer_id = new_offer(world.head)
    with session_scope() as session, pytest.raises(offers.OfferNotFoundError) as foreign:
        offers.accept(session, offer_id, world.outsider, "api", NOW)
    with session_scope() as session, pytest.raises(offers.OfferNotFoundError) as missing:
        offers.accept(session, 987_654, world.outsider, "api", NOW)
    assert foreign.value.status == missing.value.status == 404
    assert foreign.value.key == missing.value.key == "offers.not_found"
    with session_scope() as session:
        assert offers.get_offer(session, offer_id).status == "created"
    assert count(Entitlement) == 0


def test_concurrent_accepts_create_one_entitlement(world: World) -> None:
    offer_id = new_offer(world.head)
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def answer(iin: str) -> None:
        try:
            barrier.wait()
            with session_scope() as session:
                results.append(offers.accept(session, offer_id, iin, "api", NOW).id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=answer, args=(i,)) for i in (world.head, world.spouse)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(results) == 2 and len(set(results)) == 1
    assert count(Entitlement) == 1


def test_expire_due_closes_only_open_offers_past_their_time(world: World) -> None:
    past = NOW - dt.timedelta(hours=80)
    due_created = new_offer(world.head, created=past)
    due_notified = new_offer(world.head, created=past, status="notified")
    running = new_offer(world.head)
    answered = new_offer(world.head, created=past, status="declined")
    with session_scope() as session:
        assert offers.effective_status(offers.get_offer(session, due_created), NOW) == "expired"
        assert offers.expire_due(session, NOW) == 2
    with session_scope() as session:
        statuses = {i: offers.get_offer(session, i).status for i in (due_created, due_notified)}
        assert statuses == {due_created: "expired", due_notified: "expired"}
        assert offers.get_offer(session, running).status == "created"
        assert offers.get_offer(session, answered).status == "declined"
        assert offers.expire_due(session, NOW) == 0


def test_a_citizen_sees_the_offers_of_their_current_household(world: World) -> None:
    first = new_offer(world.head, created=NOW - dt.timedelta(hours=1))
    second = new_offer(world.head, program="food_voucher")
    new_offer(world.outsider, household=OTHER)
    with session_scope() as session:
        offers.accept(session, first, world.head, "api", NOW)
        notice = add_notice(session, first, "amount_changed")
    with session_scope() as session:
        found = offers.list_for_citizen(session, world.spouse, NOW)
        assert [v.offer.id for v in found] == [second, first]  # newest first
        assert found[0].entitlement is None and found[0].notices == []
        assert found[1].entitlement is not None
        assert [n.id for n in found[1].notices] == [notice]
        assert [v.offer.household_id for v in offers.list_for_citizen(session, world.outsider)] == [
            OTHER
        ]


# --- SMS replies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "answer", "lang"),
    [
        ("ДА 123", "yes", "ru"),
        ("  да   123 ", "yes", "ru"),
        ("Да, 123.", "yes", "ru"),
        ("ДA123", "yes", "ru"),  # a Latin A
        ("123 да", "yes", "ru"),
        ("ИӘ 123", "yes", "kk"),
        ("иә 123", "yes", "kk"),
        ("ИƏ 123", "yes", "kk"),  # the Latin schwa
        ("YES 123", "yes", "en"),
        ("Yes #123", "yes", "en"),
        ("НЕТ 123", "no", "ru"),
        ("HET 123", "no", "ru"),  # Latin H, E, T
        ("ЖОҚ 123", "no", "kk"),
        ("жок 123", "no", "kk"),
        ("no 123", "no", "en"),
        ("ДА １２３", "yes", "ru"),  # full-width digits
    ],
)
def test_sms_replies_are_read_generously(text: str, answer: str, lang: str) -> None:
    assert offers.parse_reply(text) == offers.ParsedReply(answer, 123, lang)


@pytest.mark.parametrize("text", ["", "ДА", "123", "да да 123", "ДА 12 34", "МОЖЕТ 123", "yes!!"])
def test_other_texts_are_not_replies(text: str) -> None:
    assert offers.parse_reply(text) is None


@pytest.mark.parametrize(
    ("word", "outcome", "lang", "status"),
    [
        ("ДА", "accepted", "ru", "accepted"),
        ("ИӘ", "accepted", "kk", "accepted"),
        ("yes", "accepted", "en", "accepted"),
        ("нет", "declined", "ru", "declined"),
        ("ЖОҚ", "declined", "kk", "declined"),
        ("NO", "declined", "en", "declined"),
    ],
)
def test_an_sms_reply_answers_the_offer(
    world: World, word: str, outcome: str, lang: str, status: str
) -> None:
    offer_id = new_offer(world.head)
    with session_scope() as session:
        result = offers.handle_sms_reply(session, world.spouse, f"{word} {offer_id}", NOW)
    assert (result.outcome, result.lang, result.offer_id) == (outcome, lang, offer_id)
    assert notify.sms_segments(result.text) == 1
    with session_scope() as session:
        offer = offers.get_offer(session, offer_id)
        assert (offer.status, offer.response_channel) == (status, "sms")
    if outcome == "accepted":
        assert result.entitlement_id is not None
        assert (
            result.text
            == {
                "ru": "Согласие принято: АСП, 35\u2009596 ₸ с 01.11",
                "kk": "Келісім алынды: АӘК, 01.11 бастап 35\u2009596 ₸",
                "en": "Accepted: ASP, 35,596 KZT from 01.11. Thank you.",
            }[lang]
        )
    # the same SMS again (a gateway retry) changes nothing and answers the same
    with session_scope() as session:
        again = offers.handle_sms_reply(session, world.spouse, f"{word} {offer_id}", NOW)
    assert (again.outcome, again.entitlement_id) == (outcome, result.entitlement_id)
    assert count(Entitlement) == (1 if outcome == "accepted" else 0)


def test_unreadable_and_refused_sms_replies_come_back_as_results(world: World) -> None:
    with session_scope() as session:
        unread = offers.handle_sms_reply(session, world.head, "привет", NOW)
        assert (unread.outcome, unread.lang, unread.offer_id) == ("not_understood", "ru", None)
        assert "ДА 123" in unread.text
        english = offers.handle_sms_reply(session, world.head, "what is this", NOW)
        assert (english.outcome, english.lang) == ("not_understood", "en")
        kazakh = offers.handle_sms_reply(session, world.head, "ИӘ", NOW)
        assert (kazakh.outcome, kazakh.lang) == ("not_understood", "kk")
        digits = offers.handle_sms_reply(session, world.head, "12345", NOW)
        assert (digits.outcome, digits.lang) == ("not_understood", "ru")  # nothing to go by
    expired = new_offer(world.head, created=NOW - dt.timedelta(days=4))
    foreign = new_offer(world.outsider, household=OTHER)
    with session_scope() as session:
        late = offers.handle_sms_reply(session, world.head, f"да {expired}", NOW)
        assert (late.outcome, late.key) == ("refused", "offers.expired")
        assert late.text == f"Срок ответа на предложение {expired} истёк."
        stranger = offers.handle_sms_reply(session, world.head, f"YES {foreign}", NOW)
        assert (stranger.outcome, stranger.key) == ("refused", "offers.not_found")
        assert stranger.text == f"Offer {foreign} was not found."
    assert count(Entitlement) == 0


# --- notifications -------------------------------------------------------------------------


def add_notice(session: Session, offer_id: int, kind: str) -> int:
    entitlement = offers.entitlement_of(session, offer_id)
    assert entitlement is not None
    notice = Notice(
        household_id=entitlement.household_id,
        program_id=entitlement.program_id,
        decision_id=next(_decisions),
        entitlement_id=entitlement.id,
        kind=kind,
        amount_before_tiyn=entitlement.amount_tiyn,
        amount_after_tiyn=4_000_000 if kind == "amount_changed" else None,
        effective_on=dt.date(2026, 12, 31),
        appeal_until=dt.date(2027, 1, 28),
        created_at=NOW,
    )
    session.add(notice)
    session.flush()
    return notice.id


def test_notifying_an_offer_twice_queues_one_message(world: World) -> None:
    offer_id = new_offer(world.head)
    with session_scope() as session:
        offer = offers.get_offer(session, offer_id)
        first = notify.notify_offer(session, offer, NOW)
        assert first is not None
        assert (offer.status, offer.notified_at) == ("notified", NOW)
        assert (first.dedupe_key, first.recipient_iin, first.household_id) == (
            f"offer:{offer_id}",
            world.head,
            HOME,
        )
        assert (first.channel, first.lang, first.status, first.attempts) == (
            "sms",
            "ru",
            "pending",
            0,
        )
        # expires 02.12 11:00 in Almaty: the SMS promises the last whole day, 01.12
        assert first.text == f"АСП: 35\u2009596 ₸/мес. Согласны? Ответьте ДА {offer_id} до 01.12"
        assert first.link == f"https://e.qamqor.kz/o/{offer_id}"
    later = NOW + dt.timedelta(hours=1)
    with session_scope() as session:
        offer = offers.get_offer(session, offer_id)
        again = notify.notify_offer(session, offer, later)
        assert again is not None and again.id == first.id
        assert offer.notified_at == NOW
    assert count(Notification) == 1


def test_no_message_for_an_answered_or_expired_offer_or_one_without_recipient(
    world: World,
) -> None:
    declined = new_offer(world.head, status="declined")
    expired = new_offer(world.head, created=NOW - dt.timedelta(days=3, minutes=1))
    nobody = new_offer(None)
    with session_scope() as session:
        for offer_id in (declined, expired, nobody):
            offer = offers.get_offer(session, offer_id)
            assert notify.notify_offer(session, offer, NOW) is None
        assert offers.get_offer(session, nobody).status == "created"
    assert count(Notification) == 0


def test_a_notice_goes_once_to_whoever_accepted(world: World) -> None:
    offer_id = new_offer(world.head)
    with session_scope() as session:
        offers.accept(session, offer_id, world.spouse, "sms", NOW)
        lost = add_notice(session, offer_id, "eligibility_lost")
        changed = add_notice(session, offer_id, "amount_changed")
    with session_scope() as session:
        for _ in range(2):
            for notice_id in (lost, changed):
                notice = session.get(Notice, notice_id)
                assert notice is not None
                notify.notify_notice(session, notice, NOW)
    with session_scope() as session:
        rows = session.scalars(select(Notification).order_by(Notification.id)).all()
        assert [r.dedupe_key for r in rows] == [f"notice:{lost}", f"notice:{changed}"]
        assert {r.recipient_iin for r in rows} == {world.spouse}
        assert rows[0].text == "АСП: право на выплату прекращено. Выплата до 31.12, жалоба до 28.01"
        assert rows[1].text == "АСП: с 31.12 выплата 40\u2009000 ₸/мес. Обжаловать до 28.01"
        assert rows[1].link == f"https://e.qamqor.kz/n/{changed}"


def test_a_cycles_messages_are_queued_in_one_go_as_one_at_a_time(world: World) -> None:
    """``notify_all`` (the worker) writes what ``notify_offer`` and ``notify_notice`` write."""
    from qamqor.privacy import preferences

    with session_scope() as session:
        preferences.set_language(session, world.outsider, "kk", "portal", NOW)
        home = add_offer(session, world.head)
        other = add_offer(session, world.outsider, household=OTHER)
        declined = add_offer(session, world.head, status="declined")
        nobody = add_offer(session, None)
        accepted = add_offer(session, world.head)
        offers.accept(session, accepted.id, world.spouse, "sms", NOW)
        lost = session.get(Notice, add_notice(session, accepted.id, "eligibility_lost"))
        changed = session.get(Notice, add_notice(session, accepted.id, "amount_changed"))
        assert lost is not None and changed is not None
        batch = [home, other, declined, nobody]
        assert notify.notify_all(session, batch, [lost, changed], NOW) == 4
        assert [o.status for o in batch] == ["notified", "notified", "declined", "created"]
        assert home.notified_at == NOW
        expected = {
            f"offer:{home.id}": (world.head, "ru", notify.offer_message(home, "ru")),
            f"offer:{other.id}": (world.outsider, "kk", notify.offer_message(other, "kk")),
            f"notice:{lost.id}": (world.spouse, "ru", notify.notice_message(lost, "ru")),
            f"notice:{changed.id}": (world.spouse, "ru", notify.notice_message(changed, "ru")),
        }
        rows = session.scalars(select(Notification)).all()
        assert {r.dedupe_key: (r.recipient_iin, r.lang, (r.text, r.link)) for r in rows} == expected
        assert {(r.status, r.attempts, r.created_at) for r in rows} == {("pending", 0, NOW)}
        assert notify.notice_recipients(session, [lost]) == {lost.id: world.spouse}
    # again, and one at a time after it: nothing new
    with session_scope() as session:
        again = [offers.get_offer(session, o.id) for o in (home, other)]
        assert notify.notify_all(session, again, [], NOW + dt.timedelta(hours=1)) == 0
        assert notify.notify_offer(session, again[0], NOW) is not None
        assert again[0].notified_at == NOW
    assert count(Notification) == 4


# --- every text fits one SMS ---------------------------------------------------------------

LONGEST_AMOUNT = 123_456_789  # 1 234 567,89 ₸
LONGEST_ID = 9_999_999


def _offer(program: str, amount: int | None) -> Offer:
    created = dt.datetime(2026, 12, 29, 19, 0, tzinfo=dt.UTC)
    return Offer(
        id=LONGEST_ID,
        household_id="H",
        program_id=program,
        decision_id=1,
        amount_tiyn=amount,
        status="created",
        created_at=created,
        expires_at=created + dt.timedelta(hours=72),
    )


def _notice(program: str, kind: str, amount: int | None) -> Notice:
    return Notice(
        id=LONGEST_ID,
        household_id="H",
        program_id=program,
        decision_id=1,
        entitlement_id=1,
        kind=kind,
        amount_before_tiyn=1,
        amount_after_tiyn=amount,
        effective_on=dt.date(2026, 12, 31),
        appeal_until=dt.date(2027, 1, 31),
        created_at=NOW,
    )


def test_sms_segments_counts_gsm7_and_ucs2() -> None:
    assert [notify.sms_segments("a" * n) for n in (1, 160, 161, 306, 307)] == [1, 1, 2, 2, 3]
    assert [notify.sms_segments("€" * n) for n in (80, 81)] == [1, 2]  # two septets each
    assert [notify.sms_segments("я" * n) for n in (70, 71, 134, 135)] == [1, 2, 2, 3]
    # one tenge sign or thin space turns a Latin text into UCS-2
    assert notify.sms_segments("a" * 69 + "₸") == 1 and notify.sms_segments("a" * 70 + "₸") == 2
    assert notify.sms_segments("a" * 69 + "\u2009") == 1 and notify.sms_units("ә") == 1
    assert notify.is_gsm7("Reply YES 123 by 01.12.") and not notify.is_gsm7("35 596 ₸")


def test_every_program_has_a_short_name_in_every_language() -> None:
    for program in load_programs():
        for lang in LANGUAGES:
            assert notify.short_name(program, lang) != program, (program, lang)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_template_fits_one_sms_with_the_longest_values(lang: str) -> None:
    texts = []
    for program in load_programs():
        for amount in (LONGEST_AMOUNT, 100_000_000, 3_559_600, None):
            texts.append(notify.offer_message(_offer(program, amount), lang)[0])
            for kind in notify.NOTICE_KINDS:
                texts.append(notify.notice_message(_notice(program, kind, amount), lang)[0])
            if amount is not None:
                texts.append(
                    translate(
                        "proactive.reply.accepted",
                        lang,
                        program=notify.short_name(program, lang),
                        amount=notify.sms_amount(amount, lang),
                        start="01.12",
                    )
                )
    texts.append(translate("proactive.reply.declined", lang, code=LONGEST_ID))
    texts.append(translate("proactive.reply.not_understood", lang))
    for key in ("not_found", "expired", "declined", "already_accepted", "no_amount"):
        texts.append(translate(f"offers.{key}", lang, offer_id=LONGEST_ID))
    too_long = [(notify.sms_units(t), t) for t in texts if notify.sms_segments(t) != 1]
    assert not too_long, too_long
    # English stays GSM-7: 160 characters, not 70
    assert lang != "en" or all(notify.is_gsm7(t) for t in texts)


def test_the_full_wording_is_sent_when_it_fits_and_the_short_one_otherwise() -> None:
    # created 30.12 at 00:00 in Almaty, expires 02.01 at 00:00: the last whole day is 01.01
    typical = notify.offer_message(_offer("asp", 3_559_600), "ru")[0]
    assert typical == f"АСП: 35\u2009596 ₸/мес. Согласны? Ответьте ДА {LONGEST_ID} до 01.01"
    longest = notify.offer_message(_offer("disabled_child", LONGEST_AMOUNT), "ru")[0]
    assert longest == (
        f"Детям с инвалидностью: 1\u2009234\u2009567,89 ₸/мес. Ответ: ДА {LONGEST_ID} до 01.01"
    )
    assert notify.sms_units(longest) == 69
    text, link = notify.offer_message(_offer("asp", LONGEST_AMOUNT), "en")
    assert text == (
        "ASP: 1,234,567.89 KZT a month for your family. To accept, reply YES 9999999 by "
        "01.01. To refuse, reply NO 9999999."
    )
    assert link == "https://e.qamqor.kz/o/9999999"


# --- the API -------------------------------------------------------------------------------


def _app() -> FastAPI:
    """The app with the offers router (until web/app.py mounts it)."""
    app = create_app()
    if "/api/v1/me/offers" not in {getattr(r, "path", "") for r in iter_route_contexts(app.routes)}:
        app.include_router(router, prefix="/api/v1")
    return app


@pytest.fixture
def api(world: World, fast_hashing: None) -> Iterator[dict[str, str]]:
    with session_scope() as session:
        _, head = make_citizen(session, world.head)
        _, outsider = make_citizen(session, world.outsider)
        _, gateway = identities.create_client(
            session, name="sms-gateway", display_name="SMS gateway", gateway=True
        )
        # a merchant client named like the gateway is still a merchant: the kind decides
        _, shop = identities.create_client(
            session, name="sms-gateway-shop", display_name="shop", bin=BIN
        )
        _, registry = identities.create_client(
            session, name="a-registry", display_name="registry", source="household"
        )
    yield {
        "head": head,
        "outsider": outsider,
        "gateway": gateway,
        "shop": shop,
        "registry": registry,
    }


def test_a_citizen_lists_and_answers_offers_over_the_api(world: World, api: dict[str, str]) -> None:
    client = TestClient(_app())
    now = dt.datetime.now(dt.UTC)
    offer_id = new_offer(world.head, created=now)
    mine = bearer(api["head"])

    listed = client.get("/api/v1/me/offers", params={"lang": "ru"}, headers=mine)
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["offers"]
    assert (item["id"], item["program_id"], item["status"]) == (offer_id, "asp", "created")
    assert item["program_name"] == "Адресная социальная помощь (АСП)"
    assert (item["amount_tiyn"], item["amount"]) == (3_559_600, "35\u2009596 ₸")
    assert item["entitlement"] is None and item["link"] == f"https://e.qamqor.kz/o/{offer_id}"

    accepted = client.post(f"/api/v1/me/offers/{offer_id}/accept", headers=mine)
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert (body["status"], body["response_channel"]) == ("accepted", "api")
    entitlement = body["entitlement"]
    assert (entitlement["amount_tiyn"], entitlement["channel"], entitlement["purpose"]) == (
        3_559_600,
        "bank",
        "cash",
    )
    again = client.post(f"/api/v1/me/offers/{offer_id}/accept", headers=mine)
    assert again.status_code == 200 and again.json()["entitlement"]["id"] == entitlement["id"]

    refused = client.post(
        f"/api/v1/me/offers/{offer_id}/decline", headers={**mine, "Accept-Language": "en"}
    )
    assert refused.status_code == 409
    assert refused.json()["detail"] == f"Offer {offer_id} has already been accepted."

    declined_id = new_offer(world.head, created=now, program="food_voucher")
    declined = client.post(f"/api/v1/me/offers/{declined_id}/decline", headers=mine)
    assert declined.status_code == 200 and declined.json()["status"] == "declined"

    expired_id = new_offer(world.head, created=now - dt.timedelta(hours=73))
    late = client.post(f"/api/v1/me/offers/{expired_id}/accept?lang=kk", headers=mine)
    assert late.status_code == 409
    assert late.json()["detail"] == f"{expired_id} ұсынысына жауап беру мерзімі өтті."
    statuses = {
        o["id"]: o["status"] for o in client.get("/api/v1/me/offers", headers=mine).json()["offers"]
    }
    assert statuses == {offer_id: "accepted", declined_id: "declined", expired_id: "expired"}


def test_another_citizen_cannot_see_or_answer_the_offer(world: World, api: dict[str, str]) -> None:
    client = TestClient(_app())
    offer_id = new_offer(world.head, created=dt.datetime.now(dt.UTC))
    theirs = bearer(api["outsider"])
    assert client.get("/api/v1/me/offers", headers=theirs).json()["offers"] == []
    for answer in ("accept", "decline"):
        response = client.post(f"/api/v1/me/offers/{offer_id}/{answer}", headers=theirs)
        assert response.status_code == 404
        assert response.json()["detail"] == f"Offer {offer_id} was not found."
    assert client.get("/api/v1/me/offers").status_code == 401
    assert client.post(f"/api/v1/me/offers/{offer_id}/accept").status_code == 401
    # a machine client is no citizen
    assert client.get("/api/v1/me/offers", headers=bearer(api["gateway"])).status_code == 403
    with session_scope() as session:
        assert offers.get_offer(session, offer_id).status == "created"


def test_only_the_sms_gateway_posts_sms_replies(world: World, api: dict[str, str]) -> None:
    client = TestClient(_app())
    offer_id = new_offer(world.head, created=dt.datetime.now(dt.UTC))
    url = "/api/v1/notifications/sms-replies"
    reply = {"iin": world.head, "text": f"иә {offer_id}"}
    for who, status in (("shop", 403), ("registry", 403), ("head", 403)):
        assert client.post(url, json=reply, headers=bearer(api[who])).status_code == status
    assert client.post(url, json=reply).status_code == 401
    taken = client.post(url, json=reply, headers=bearer(api["gateway"]))
    assert taken.status_code == 200, taken.text
    body = taken.json()
    assert (body["outcome"], body["lang"], body["offer_id"], body["key"]) == (
        "accepted",
        "kk",
        offer_id,
        None,
    )
    assert body["entitlement_id"] is not None and body["reply"].startswith("Келісім алынды: АӘК")
    unread = client.post(url, json={"iin": world.head, "text": "?"}, headers=bearer(api["gateway"]))
    assert unread.status_code == 200 and unread.json()["outcome"] == "not_understood"
    bad = client.post(url, json={"iin": "12", "text": "ДА 1"}, headers=bearer(api["gateway"]))
    assert bad.status_code == 422


# --- the CLI -------------------------------------------------------------------------------


def test_the_offers_commands(world: World) -> None:
    runner = CliRunner()
    now = dt.datetime.now(dt.UTC)
    open_id = new_offer(world.head, created=now)
    overdue = new_offer(world.head, created=now - dt.timedelta(days=4))
    with session_scope() as session:
        notify.notify_offer(session, offers.get_offer(session, open_id), now)

    outbox = runner.invoke(offers_app, ["outbox", "--json"])
    assert outbox.exit_code == 0, outbox.output
    (message,) = json.loads(outbox.stdout)
    assert (message["dedupe_key"], message["segments"]) == (f"offer:{open_id}", 1)
    assert f"ДА {open_id}" in message["text"]
    assert f"ДА {open_id}" in runner.invoke(offers_app, ["outbox"]).stdout

    expired = runner.invoke(offers_app, ["expire"])
    assert expired.exit_code == 0 and "1 offers expired" in expired.stdout

    reply = runner.invoke(offers_app, ["sms-reply", world.spouse, f"ДА {open_id}", "--json"])
    assert reply.exit_code == 0, reply.output
    assert json.loads(reply.stdout)["outcome"] == "accepted"
    refused = runner.invoke(offers_app, ["sms-reply", world.spouse, f"ДА {overdue}"])
    assert refused.exit_code == 1 and "refused" in refused.stdout

    listed = runner.invoke(offers_app, ["list", "--household", HOME, "--json"])
    statuses = {o["id"]: o["status"] for o in json.loads(listed.stdout)}
    assert statuses == {open_id: "accepted", overdue: "expired"}
    table = runner.invoke(offers_app, ["list", "--status", "accepted"])
    assert table.exit_code == 0 and HOME in table.stdout
