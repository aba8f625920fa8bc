"""How each citizen wants to be written to: the language of their SMS and notices.

Keyed by IIN, not by account: most people Qamqor writes to (the head of a household an offer
goes to) have never signed in. No row means Russian, which every recipient can read
(``DEFAULT_LANGUAGE``); the citizen changes it on the portal or the API (``PUT
/api/v1/me/preferences``), by texting a language keyword back (``KK``, ``RU``, ``EN``: see
``qamqor.proactive.offers.parse_language``), or through support staff (``qamqor accounts
language``). The latest choice wins, whatever its channel; ``set_via`` and ``updated_at`` say
which and when.

Setting is an upsert (``INSERT ... ON CONFLICT (iin) DO UPDATE``) on SQLite and PostgreSQL
alike, so two first choices racing (an SMS and a portal click) leave one row, the later one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from qamqor.privacy.errors import PrivacyError
from qamqor.privacy.models import PREFERENCE_CHANNELS, PREFERENCE_LANGUAGES, CitizenPreference
from qamqor.registry import iin as iin_rules

LANGUAGES = PREFERENCE_LANGUAGES
CHANNELS = PREFERENCE_CHANNELS
DEFAULT_LANGUAGE = "ru"


class PreferenceError(PrivacyError):
    """A preference that cannot be stored; ``key`` is a message id (ru/kk/en)."""

    code = "preference"
    status = 422


def get(session: Session, iin: str) -> CitizenPreference | None:
    return session.get(CitizenPreference, iin)


def language_of(session: Session, iin: str) -> str:
    """The language to write to ``iin`` in: their choice, else Russian."""
    found = session.scalar(select(CitizenPreference.language).where(CitizenPreference.iin == iin))
    return found or DEFAULT_LANGUAGE


def languages_of(session: Session, iins: Iterable[str]) -> dict[str, str]:
    """The language of each IIN (every IIN present, Russian when unset), one query per 500:
    for a sender or worker that writes many messages at once."""
    wanted = sorted(set(iins))
    chosen: dict[str, str] = {}
    for start in range(0, len(wanted), 500):  # 500 per IN list, well under SQLite's limit
        chunk = wanted[start : start + 500]
        rows = session.execute(
            select(CitizenPreference.iin, CitizenPreference.language).where(
                CitizenPreference.iin.in_(chunk)
            )
        )
        chosen.update({iin: language for iin, language in rows})
    return {iin: chosen.get(iin, DEFAULT_LANGUAGE) for iin in wanted}


def set_language(
    session: Session, iin: str, language: str, via: str, now: dt.datetime | None = None
) -> CitizenPreference:
    """Store ``language`` as the citizen's choice, replacing any earlier one."""
    if not iin_rules.is_valid(iin):
        raise PreferenceError("preferences.bad_iin", iin=iin)
    language = language.strip().lower()
    if language not in LANGUAGES:
        raise PreferenceError(
            "preferences.unknown_language", language=language, known=", ".join(LANGUAGES)
        )
    if via not in CHANNELS:
        raise ValueError(f"unknown channel {via!r}; known: {CHANNELS}")
    values = {"iin": iin, "language": language, "set_via": via, "updated_at": now or _now()}
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(CitizenPreference).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["iin"],
        set_={k: statement.excluded[k] for k in ("language", "set_via", "updated_at")},
    )
    session.execute(statement)
    found = session.scalars(
        select(CitizenPreference)
        .where(CitizenPreference.iin == iin)
        .execution_options(populate_existing=True)
    ).one()
    return found


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
