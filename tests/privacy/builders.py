"""Small builders for privacy tests: households in regions, accounts and their tokens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from qamqor.kit.settings import get_settings
from qamqor.privacy import identities
from qamqor.privacy.demo import valid_number
from qamqor.privacy.models import Account
from qamqor.registry.models import Batch, HouseholdFact, PopulationFact
from tests.registry.builders import valid_iin

PASSWORD = "correct horse battery"
BIN = valid_number("99044000001")


@pytest.fixture
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Argon2id with 1 pass and 1 MiB: the same code path, a hundredth of the time."""
    monkeypatch.setenv("QAMQOR_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("QAMQOR_ARGON2_MEMORY_KIB", "1024")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


_serial = iter(range(10**6))


def add_batch(session: Session, source: str) -> Batch:
    now = dt.datetime.now(dt.UTC)
    n = next(_serial)
    batch = Batch(
        source=source,
        file_name=f"{source}-{n}.csv",
        file_sha256=f"{n:064d}",
        file_bytes=0,
        format="csv",
        encoding="utf-8",
        delimiter=";",
        rows_read=0,
        facts=0,
        rejections=0,
        duplicates=0,
        rejection_reasons={},
        received_at=now,
        loaded_at=now,
    )
    session.add(batch)
    session.flush()
    return batch


def add_person(
    session: Session, iin: str, region: str, *, updated_on: dt.date | None = None
) -> None:
    batch = add_batch(session, "population")
    session.add(
        PopulationFact(
            batch_id=batch.id,
            line_no=2,
            source_record_id=f"POP-{iin}-{batch.id}",
            valid_from=dt.date(1985, 3, 14),
            valid_to=None,
            updated_on=updated_on or dt.date(2026, 1, 1),
            iin=iin,
            last_name="Ахметов",
            first_name="Ерлан",
            patronymic=None,
            birth_date=dt.date(1985, 3, 14),
            sex="M",
            region_code=region,
            settlement="urban",
            death_date=None,
        )
    )
    session.flush()


def add_member(
    session: Session,
    household_id: str,
    iin: str,
    relation: str,
    *,
    record_id: str | None = None,
    member_to: dt.date | None = None,
    updated_on: dt.date = dt.date(2026, 1, 1),
) -> None:
    batch = add_batch(session, "household")
    session.add(
        HouseholdFact(
            batch_id=batch.id,
            line_no=2,
            source_record_id=record_id or f"HH-{household_id}-{iin}",
            valid_from=dt.date(2020, 1, 1),
            valid_to=member_to,
            updated_on=updated_on,
            household_id=household_id,
            iin=iin,
            relation=relation,
            member_from=dt.date(2020, 1, 1),
            member_to=member_to,
        )
    )
    session.flush()


def make_household(session: Session, household_id: str, region: str, start: int) -> list[str]:
    """A head and a spouse living in ``region``; returns their IINs (head first)."""
    head, spouse = valid_iin(start), valid_iin(start + 1, sex="F")
    for iin, relation in ((head, "head"), (spouse, "spouse")):
        add_person(session, iin, region)
        add_member(session, household_id, iin, relation)
    return [head, spouse]


def make_officer(
    session: Session, role: str, regions: tuple[str, ...] = ("75",), login: str | None = None
) -> tuple[Account, str]:
    account = identities.create_officer(
        session,
        login=login or f"t.{role}.{'_'.join(regions)}",
        password=PASSWORD,
        display_name=f"Officer {role}",
        role=role,
        institution=f"Institution of {role}",
        institution_code=BIN,
        regions=list(regions),
    )
    token, _ = identities.issue_bearer(session, account)
    return account, token


def make_citizen(session: Session, iin: str) -> tuple[Account, str]:
    account = identities.create_citizen(
        session, iin=iin, display_name=f"Citizen {iin}", password=PASSWORD
    )
    token, _ = identities.issue_bearer(session, account)
    return account, token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
