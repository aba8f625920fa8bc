"""The citizen's language: stored by IIN, chosen on the API, by SMS keyword or by support
staff, and used for every outbox text. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from qamqor.cli import app
from qamqor.kit.db import session_scope
from qamqor.privacy import identities, preferences
from qamqor.privacy.models import CitizenPreference
from qamqor.proactive import notify, offers
from qamqor.proactive.models import Notice, Notification
from qamqor.web.app import create_app
from tests.privacy.builders import bearer, fast_hashing, make_citizen
from tests.proactive.test_offers import (
    HOME,
    NOW,
    World,
    add_notice,
    new_offer,
    world,
)

__all__ = ["fast_hashing", "world"]

LATER = NOW + dt.timedelta(minutes=5)


def language_row(iin: str) -> tuple[str, str, dt.datetime] | None:
    with session_scope() as session:
        found = preferences.get(session, iin)
        return None if found is None else (found.language, found.set_via, found.updated_at)


# --- the service ---------------------------------------------------------------------------


def test_russian_until_chosen_then_the_latest_choice(world: World) -> None:
    with session_scope() as session:
        assert preferences.language_of(session, world.head) == "ru"
        assert preferences.get(session, world.head) is None
        chosen = preferences.set_language(session, world.head, "KK ", "portal", NOW)
        assert (chosen.iin, chosen.language, chosen.set_via, chosen.updated_at) == (
            world.head,
            "kk",
            "portal",
            NOW,
        )
    with session_scope() as session:
        again = preferences.set_language(session, world.head, "en", "sms", LATER)
        assert (again.language, again.set_via, again.updated_at) == ("en", "sms", LATER)
        assert preferences.language_of(session, world.head) == "en"
        assert preferences.languages_of(session, [world.head, world.spouse, world.head]) == {
            world.head: "en",
            world.spouse: "ru",
        }
        rows = session.scalar(select(func.count()).select_from(CitizenPreference))
    assert rows == 1  # an upsert: one row per IIN, whatever the number of choices


def test_a_bad_language_or_iin_is_refused_with_a_message(world: World) -> None:
    with session_scope() as session:
        with pytest.raises(preferences.PreferenceError) as wrong:
            preferences.set_language(session, world.head, "de", "api", NOW)
        assert wrong.value.message("ru") == "Неизвестный язык de: выберите один из ru, kk, en."
        with pytest.raises(preferences.PreferenceError) as bad:
            preferences.set_language(session, "123456789012", "kk", "api", NOW)
        assert bad.value.message("kk") == "123456789012 — жарамсыз ЖСН."
        with pytest.raises(ValueError, match="unknown channel"):
            preferences.set_language(session, world.head, "kk", "pigeon", NOW)
    assert language_row(world.head) is None


def test_the_database_refuses_a_language_the_service_would(world: World) -> None:
    with pytest.raises(IntegrityError), session_scope() as session:
        session.add(CitizenPreference(iin=world.head, language="de", set_via="api", updated_at=NOW))
        session.flush()


# --- the outbox ----------------------------------------------------------------------------


def test_the_outbox_writes_in_the_recipients_language(world: World) -> None:
    russian = new_offer(world.spouse)
    with session_scope() as session:
        preferences.set_language(session, world.head, "kk", "sms", NOW)
    kazakh = new_offer(world.head, program="food_voucher")
    with session_scope() as session:
        ru = notify.notify_offer(session, offers.get_offer(session, russian), NOW)
        kk = notify.notify_offer(session, offers.get_offer(session, kazakh), NOW)
        assert ru is not None and kk is not None
        assert (ru.lang, ru.recipient_iin) == ("ru", world.spouse)
        assert ru.text == f"АСП: 35\u2009596 ₸/мес. Согласны? Ответьте ДА {russian} до 01.12"
        assert (kk.lang, kk.recipient_iin) == ("kk", world.head)
        assert kk.text == f"Азық-түлік ваучері: 35\u2009596 ₸/ай. ИӘ {kazakh} деп, 01.12 дейін"
        assert notify.sms_segments(kk.text) == 1

    # the head switches to English; the next message, a notice, is in English
    with session_scope() as session:
        preferences.set_language(session, world.head, "en", "api", LATER)
        offers.accept(session, kazakh, world.head, "api", NOW)
        notice_id = add_notice(session, kazakh, "eligibility_lost")
    with session_scope() as session:
        notice = session.get(Notice, notice_id)
        assert notice is not None
        en = notify.notify_notice(session, notice, NOW)
        assert en is not None
        assert (en.lang, en.recipient_iin, en.household_id) == ("en", world.head, HOME)
        assert en.text == (
            "Food voucher: your family is no longer eligible. Payments continue until 31.12. "
            "You may appeal until 28.01."
        )
        assert notify.is_gsm7(en.text) and notify.sms_segments(en.text) == 1
    # a message already queued keeps its language: a choice applies from then on
    with session_scope() as session:
        queued = session.scalars(select(Notification).order_by(Notification.id)).all()
        assert [(n.dedupe_key, n.lang) for n in queued] == [
            (f"offer:{russian}", "ru"),
            (f"offer:{kazakh}", "kk"),
            (f"notice:{notice_id}", "en"),
        ]


# --- SMS keywords --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("KK", "kk"),
        ("kk", "kk"),
        ("ҚАЗ", "kk"),
        ("Қазақша!", "kk"),
        ("КАЗ", "kk"),
        ("RU", "ru"),
        ("рус.", "ru"),
        ("Русский", "ru"),
        ("EN", "en"),
        (" eng ", "en"),
        ("English", "en"),
    ],
)
def test_a_language_keyword_is_read(text: str, lang: str) -> None:
    assert offers.parse_language(text) == lang
    assert offers.parse_reply(text) is None


@pytest.mark.parametrize("text", ["", "ДА 12", "KK 12", "DE", "french", "да", "12"])
def test_other_texts_are_no_language_keyword(text: str) -> None:
    assert offers.parse_language(text) is None


@pytest.mark.parametrize(
    ("keyword", "lang", "reply"),
    [
        ("ҚАЗ", "kk", "Енді сізге қазақша жазамыз. Тілді ауыстыру: RU немесе EN"),
        (
            "EN",
            "en",
            "From now on we write to you in English. For another language reply RU or KK.",
        ),
        ("РУС", "ru", "Теперь пишем вам по-русски. Сменить язык: KK или EN"),
    ],
)
def test_an_sms_keyword_switches_the_language_and_answers_in_it(
    world: World, keyword: str, lang: str, reply: str
) -> None:
    with session_scope() as session:
        result = offers.handle_sms_reply(session, world.spouse, keyword, NOW)
    assert (result.outcome, result.lang, result.text, result.offer_id) == (
        "language_set",
        lang,
        reply,
        None,
    )
    assert notify.sms_segments(result.text) == 1
    assert language_row(world.spouse) == (lang, "sms", NOW)
    # an unreadable reply from now on is answered in the chosen language (no letters to go by)
    with session_scope() as session:
        unread = offers.handle_sms_reply(session, world.spouse, "12345", NOW)
    assert (unread.outcome, unread.lang) == ("not_understood", lang)


# --- the API -------------------------------------------------------------------------------


@pytest.fixture
def tokens(world: World, fast_hashing: None) -> Iterator[dict[str, str]]:
    with session_scope() as session:
        _, head = make_citizen(session, world.head)
        _, gateway = identities.create_client(
            session, name="sms-gateway", display_name="SMS gateway", gateway=True
        )
        _, officer = identities.create_client(
            session, name="a-registry", display_name="registry", source="household"
        )
    yield {"head": head, "gateway": gateway, "registry": officer}


def test_a_citizen_reads_and_sets_their_language(world: World, tokens: dict[str, str]) -> None:
    client = TestClient(create_app())
    mine = bearer(tokens["head"])
    url = "/api/v1/me/preferences"

    unset = client.get(url, headers=mine)
    assert unset.status_code == 200, unset.text
    assert unset.json() == {
        "iin": world.head,
        "language": "ru",
        "chosen": False,
        "set_via": None,
        "updated_at": None,
    }
    chosen = client.put(url, json={"language": "kk"}, headers=mine)
    assert chosen.status_code == 200, chosen.text
    body = chosen.json()
    assert (body["language"], body["chosen"], body["set_via"]) == ("kk", True, "api")
    assert client.get(url, headers=mine).json()["language"] == "kk"
    assert language_row(world.head) is not None

    assert client.put(url, json={"language": "de"}, headers=mine).status_code == 422
    assert client.get(url).status_code == 401
    assert client.put(url, json={"language": "en"}).status_code == 401
    for machine in ("gateway", "registry"):
        denied = client.put(url, json={"language": "en"}, headers=bearer(tokens[machine]))
        assert denied.status_code == 403
    assert client.get(url, headers=mine).json()["language"] == "kk"

    # the next SMS to the head is in Kazakh
    offer_id = new_offer(world.head)
    with session_scope() as session:
        message = notify.notify_offer(session, offers.get_offer(session, offer_id), NOW)
        assert message is not None and message.lang == "kk"


def test_the_gateway_relays_a_language_keyword(world: World, tokens: dict[str, str]) -> None:
    client = TestClient(create_app())
    url = "/api/v1/notifications/sms-replies"
    gateway = bearer(tokens["gateway"])
    taken = client.post(url, json={"iin": world.head, "text": "EN"}, headers=gateway)
    assert taken.status_code == 200, taken.text
    assert (taken.json()["outcome"], taken.json()["lang"]) == ("language_set", "en")
    assert taken.json()["reply"].startswith("From now on we write to you in English")
    assert language_row(world.head) is not None
    assert language_row(world.head)[:2] == ("en", "sms")  # type: ignore[index]
    # an IIN with a wrong check digit cannot hold a preference
    bad_iin = world.head[:-1] + str((int(world.head[-1]) + 1) % 10)
    refused = client.post(url, json={"iin": bad_iin, "text": "KK"}, headers=gateway)
    assert refused.status_code == 422
    assert refused.json()["code"] == "preference"


# --- the CLI -------------------------------------------------------------------------------


def test_support_staff_set_a_language_with_the_cli(world: World) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["accounts", "language", world.head, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == {
        "iin": world.head,
        "language": "ru",
        "chosen": False,
        "set_via": None,
        "updated_at": None,
    }
    assert "nothing chosen" in runner.invoke(app, ["accounts", "language", world.head]).stdout

    set_kk = runner.invoke(app, ["accounts", "language", world.head, "--set", "kk", "--json"])
    assert set_kk.exit_code == 0, set_kk.output
    row = json.loads(set_kk.stdout)
    assert (row["language"], row["chosen"], row["set_via"]) == ("kk", True, "support")
    from_registry = runner.invoke(
        app, ["accounts", "language", world.head, "--set", "en", "--via", "registry"]
    )
    assert from_registry.exit_code == 0 and "set via registry" in from_registry.stdout
    assert language_row(world.head)[:2] == ("en", "registry")  # type: ignore[index]

    wrong = runner.invoke(app, ["accounts", "language", world.head, "--set", "de"])
    assert wrong.exit_code == 1 and "Unknown language de" in wrong.output
    channel = runner.invoke(app, ["accounts", "language", world.head, "--via", "fax"])
    assert channel.exit_code == 1 and "--via must be one of" in channel.output
