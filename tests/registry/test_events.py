"""The change-event inbox on both databases: accept, refuse with reasons, stay idempotent."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from qamqor.kit.db import session_scope
from qamqor.kit.i18n import LANGUAGES, _catalogue
from qamqor.privacy import identities
from qamqor.registry import events
from qamqor.registry.catalogue import sources
from qamqor.registry.events_cli import events_app
from qamqor.registry.models import RAW_SEALED, RegistryEvent
from qamqor.web.app import create_app
from tests.privacy.builders import bearer, make_officer
from tests.registry.builders import valid_iin

URL = "/api/v1/registry/{}/events"
RECEIVED = dt.datetime(2026, 11, 29, 5, 0, tzinfo=dt.UTC)  # 10:00 in Almaty
runner = CliRunner()


def person(k: int, **changes: Any) -> dict[str, Any]:
    """A population record, as a registry would send it."""
    iin = valid_iin(k, dt.date(2026, 11, 20), "F")
    payload = {
        "record_id": f"POP-{iin}",
        "iin": iin,
        "last_name": "Ахметова",
        "first_name": "Айгерім",
        "patronymic": "Ерланқызы",
        "birth_date": "2026-11-20",
        "sex": "F",
        "region_code": "75",
        "settlement": "urban",
        "death_date": "",
        "updated_on": "2026-11-21",
    }
    return payload | changes


def people(n: int, start: int) -> list[dict[str, Any]]:
    """``n`` population records of distinct people (valid_iin(k) may repeat for nearby k)."""
    found: dict[str, dict[str, Any]] = {}
    k = start
    while len(found) < n:
        record = person(k)
        found.setdefault(record["iin"], record)
        k += 1
    return list(found.values())


def event(payload: Any, type_: str = "birth", /, **changes: Any) -> dict[str, Any]:
    base = {
        "event_id": f"EV-{payload.get('iin')}-{type_}",
        "type": type_,
        "subject_iin": payload.get("iin"),
        "occurred_at": "2026-11-21T09:30:00+05:00",
        "payload": payload,
    }
    return base | changes


def disability(k: int, diagnosis: str = "G80.1") -> dict[str, Any]:
    iin = valid_iin(k)
    payload = {
        "record_id": f"DIS-{k}",
        "iin": iin,
        "disability_group": "child",
        "diagnosis": diagnosis,
        "assigned_on": "2026-11-01",
        "valid_until": "",
        "updated_on": "2026-11-02",
    }
    return event(payload, "disability_assigned", event_id=f"DIS-EV-{k}")


@pytest.fixture
def clients(engine: Engine) -> Iterator[dict[str, TestClient]]:
    """A client of each registry that matters here, and an officer, each signed in."""
    made: dict[str, TestClient] = {}
    with session_scope() as session:
        for source in ("population", "household", "disability"):
            _, token = identities.create_client(
                session, name=f"{source}-registry", display_name=source, source=source
            )
            made[source] = TestClient(create_app(), headers=bearer(token))
        _, token = make_officer(session, "admin", ("all",))
        made["admin"] = TestClient(create_app(), headers=bearer(token))
    made["anonymous"] = TestClient(create_app())
    yield made


def inbox(engine: Engine) -> list[RegistryEvent]:
    with session_scope(engine) as session:
        return list(session.scalars(select(RegistryEvent).order_by(RegistryEvent.id)))


def accept(items: list[Any], source: str = "population") -> list[events.Result]:
    with session_scope() as session:
        return events.accept_events(session, source, items, RECEIVED)


# --- the data ------------------------------------------------------------------------------


def test_the_event_types_are_the_issues_and_name_real_columns() -> None:
    types = events.load_event_types()
    assert set(types) == {
        "birth", "death", "marriage", "divorce", "member_moved_in", "member_moved_out",
        "job_started", "job_lost", "income_reported", "disability_assigned",
        "disability_ended", "property_acquired", "property_disposed", "loan_opened",
        "loan_closed",
    }  # fmt: skip
    assert {code: (t.source, t.requires) for code, t in types.items() if t.requires} == {
        "death": ("population", ("death_date",)),
        "divorce": ("household", ("member_to",)),
        "member_moved_out": ("household", ("member_to",)),
        "job_lost": ("employment", ("end_date",)),
        "disability_ended": ("disability", ("valid_until",)),
        "property_disposed": ("property", ("disposed_on",)),
        "loan_closed": ("finance", ("closed_on",)),
    }
    assert types["marriage"].values == {"relation": ("spouse",)}
    assert {t.source for t in types.values()} == set(sources())
    for t in types.values():
        assert all(t.names[lang] for lang in LANGUAGES)


def test_every_event_reason_has_a_text_in_every_language() -> None:
    for lang in LANGUAGES:
        catalogue = _catalogue(lang)
        missing = [r for r in events.EVENT_REASONS if f"reason.{r}" not in catalogue]
        missing += [k for k in ("events.unknown_source", "events.too_many") if k not in catalogue]
        assert not missing, (lang, missing)


# --- accepted, duplicate, conflicting --------------------------------------------------------


def test_an_accepted_event_is_stored_pending_with_its_payload(
    engine: Engine, clients: dict[str, TestClient]
) -> None:
    birth = event(person(1))
    before = dt.datetime.now(dt.UTC)
    response = clients["population"].post(URL.format("population"), json={"events": [birth]})
    assert response.status_code == 200, response.text
    body = response.json()
    (stored,) = inbox(engine)
    assert body == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": 0,
        "results": [
            {
                "event_id": birth["event_id"],
                "status": "accepted",
                "inbox_id": stored.id,
                "reasons": [],
            }
        ],
    }
    assert (stored.source, stored.event_id, stored.type) == (
        "population",
        birth["event_id"],
        "birth",
    )
    assert stored.subject_iin == birth["subject_iin"]
    assert stored.occurred_at == dt.datetime(2026, 11, 21, 4, 30, tzinfo=dt.UTC)
    assert before <= stored.received_at <= dt.datetime.now(dt.UTC)
    assert (stored.status, stored.attempts, stored.applied_at, stored.error) == (
        "pending", 0, None, None,
    )  # fmt: skip
    assert stored.payload_sealed is None
    assert json.loads(stored.payload) == birth["payload"]
    assert events.payload_of(stored) == birth["payload"]
    assert len(stored.content_sha256) == 64
    with session_scope() as session:
        assert events.pending_count(session) == 1
        age = events.oldest_pending_age_seconds(
            session, stored.received_at + dt.timedelta(seconds=7)
        )
        assert age == 7.0
        (claimed,) = events.claim_pending(session, 10)
        assert claimed.id == stored.id


def test_quotes_backslashes_and_any_letters_are_stored_as_sent(engine: Engine) -> None:
    """The inbox insert carries the rows as one JSON document on PostgreSQL: what a registry
    sends comes back unchanged, to the microsecond."""
    odd = person(2, record_id='POP-"q"\\{a,b}\'; \u2028', last_name="Әбілқасымова")
    received = dt.datetime(2026, 11, 29, 5, 0, 1, 123456, tzinfo=dt.UTC)
    sent = event(odd, occurred_at="2026-11-21T09:30:00.654321+05:00")
    with session_scope() as session:
        (result,) = events.accept_events(session, "population", [sent], received)
    assert result.status == "accepted", result
    (stored,) = inbox(engine)
    assert events.payload_of(stored) == odd
    assert stored.received_at == received
    assert stored.occurred_at == dt.datetime(2026, 11, 21, 4, 30, 0, 654321, tzinfo=dt.UTC)
    with session_scope() as session:  # the same event again: its digest matches
        (again,) = events.accept_events(session, "population", [sent], received)
    assert again.status == "duplicate"


def test_the_same_event_again_is_a_duplicate_of_the_first(
    engine: Engine, clients: dict[str, TestClient]
) -> None:
    birth = event(person(2))
    first = clients["population"].post(URL.format("population"), json={"events": [birth]})
    # the same event, its keys in another order and its time in UTC: the same content
    again = dict(reversed(list(birth.items()))) | {"occurred_at": "2026-11-21T04:30:00Z"}
    second = clients["population"].post(URL.format("population"), json={"events": [again]})
    assert second.status_code == 200
    assert second.json()["duplicates"] == 1 and second.json()["accepted"] == 0
    (result,) = second.json()["results"]
    assert result["status"] == "duplicate"
    assert result["inbox_id"] == first.json()["results"][0]["inbox_id"]
    assert len(inbox(engine)) == 1


def test_the_same_event_id_with_other_content_is_refused(
    engine: Engine, clients: dict[str, TestClient]
) -> None:
    birth = event(person(3))
    clients["population"].post(URL.format("population"), json={"events": [birth]})
    changed = birth | {"payload": birth["payload"] | {"first_name": "Айгүл"}}
    response = clients["population"].post(
        URL.format("population"), json={"events": [changed]}, params={"lang": "ru"}
    )
    (result,) = response.json()["results"]
    assert result == {
        "event_id": birth["event_id"],
        "status": "rejected",
        "inbox_id": None,
        "reasons": [
            {"code": "conflicting_event_id", "text": "event_id: уже получено с другим содержимым"}
        ],
    }
    (stored,) = inbox(engine)
    assert json.loads(stored.payload)["first_name"] == "Айгерім"


def test_a_batch_with_rejections_still_accepts_the_valid_events(engine: Engine) -> None:
    good, bad = event(person(4)), event(person(5, sex="X"))
    results = accept([good, bad])
    assert [r.status for r in results] == ["accepted", "rejected"]
    assert results[1].reasons == ["unknown_code:sex"]
    assert [e.event_id for e in inbox(engine)] == [good["event_id"]]


def test_numbers_in_the_payload_are_read_like_an_extract_line(engine: Engine) -> None:
    iin = valid_iin(6)
    payload = {
        "record_id": 7001,
        "iin": iin,
        "period": "2026-10",
        "income_type": "wage",
        "amount": 185000.5,
        "payer_bin": None,
        "updated_on": "2026-11-05",
    }
    (result,) = accept([event(payload, "income_reported")], "income")
    assert (result.status, result.reasons) == ("accepted", [])
    (stored,) = inbox(engine)
    assert json.loads(stored.payload) == payload  # as received, numbers and all


def test_concurrent_pushes_of_the_same_events_both_succeed(engine: Engine) -> None:
    batch = [event(p) for p in people(300, 100)]
    outcomes: list[list[events.Result]] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def push(items: list[dict[str, Any]]) -> None:
        try:
            start.wait()
            outcomes.append(accept(items))
        except BaseException as exc:  # reported below, with the other thread's outcome
            failures.append(exc)

    # the second in reverse order: rows inserted in request order would deadlock on PostgreSQL
    threads = [threading.Thread(target=push, args=(b,)) for b in (batch, batch[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    statuses = sorted(r.status for results in outcomes for r in results)
    assert statuses == ["accepted"] * 300 + ["duplicate"] * 300
    ids = {r.event_id: r.inbox_id for results in outcomes for r in results}
    assert len(inbox(engine)) == 300 and len(set(ids.values())) == 300


# --- every reason ----------------------------------------------------------------------------

PERSON = person(10)
SPOUSE_IIN = valid_iin(11)
MEMBER = {
    "record_id": "HH-1-SPOUSE",
    "household_id": "HH-1",
    "iin": SPOUSE_IIN,
    "relation": "child",
    "member_from": "2026-11-01",
    "member_to": "",
    "updated_on": "2026-11-02",
}

INCOME = {
    "record_id": "INC-1",
    "iin": SPOUSE_IIN,
    "period": "2026-10",
    "income_type": "wage",
    "amount": "1.00",
    "payer_bin": "",
    "updated_on": "2026-11-01",
}
WRONG_DIGIT = PERSON["iin"][:11] + str((int(PERSON["iin"][11]) + 1) % 10)
MALFORMED_IIN = event(PERSON | {"iin": "12345"}, subject_iin=PERSON["iin"])
GARBLED = "Ахметова".encode().decode("cp1251", "replace")


def pop(**changes: Any) -> dict[str, Any]:
    """A birth whose payload has ``changes``."""
    return event(PERSON | changes)


def inc(**changes: Any) -> dict[str, Any]:
    return event(INCOME | changes, "income_reported")


def without(item: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != name}


# (what is wrong, the event, the reasons expected, the source it is pushed to)
P, H, INC = "population", "household", "income"
CASES: list[tuple[str, Any, list[str], str]] = [
    ("not an object", "birth", ["event_not_an_object"], P),
    ("extra field", event(PERSON) | {"ocurred": "x"}, ["unexpected_event_field:ocurred"], P),
    ("no event id", without(event(PERSON), "event_id"), ["bad_event_id"], P),
    ("empty event id", event(PERSON, event_id=""), ["bad_event_id"], P),
    ("event id too long", event(PERSON, event_id="E" * 65), ["bad_event_id"], P),
    ("event id line break", event(PERSON, event_id="E-1\n"), ["bad_event_id"], P),
    ("event id a number", event(PERSON, event_id=17), ["bad_event_id"], P),
    ("unknown type", event(PERSON, type="baptism"), ["unknown_event_type"], P),
    ("other's type", event(PERSON, type="job_lost"), ["type_of_other_source"], P),
    ("subject short", event(PERSON, subject_iin="12345"), ["bad_subject_iin"], P),
    ("subject digit", event(PERSON, subject_iin=WRONG_DIGIT), ["bad_subject_iin"], P),
    ("subject number", event(PERSON, subject_iin=int(PERSON["iin"])), ["bad_subject_iin"], P),
    ("subject other", event(PERSON, subject_iin=SPOUSE_IIN), ["subject_mismatch"], P),
    ("time not one", event(PERSON, occurred_at="yesterday"), ["bad_occurred_at"], P),
    ("time missing", event(PERSON, occurred_at=None), ["bad_occurred_at"], P),
    ("time ahead", event(PERSON, occurred_at="2026-11-30T09:00+05:00"), ["occurred_in_future"], P),
    ("payload missing", event(PERSON, payload=None), ["payload_not_an_object"], P),
    ("payload a list", event(PERSON, payload=[1, 2]), ["payload_not_an_object"], P),
    ("value a boolean", pop(patronymic=True), ["bad_payload_value:patronymic"], P),
    ("value an object", pop(sex={"code": "F"}), ["bad_payload_value:sex"], P),
    ("field unknown", pop(nickname="Ая"), ["unexpected_payload_field:nickname"], P),
    ("death no date", event(PERSON, type="death"), ["required_by_type:death_date"], P),
    ("marriage child", event(MEMBER, type="marriage"), ["value_not_for_type:relation"], H),
    ("moved out when", event(MEMBER, type="member_moved_out"), ["required_by_type:member_to"], H),
    # the extract's own checks (registry/validation.py), the same as for a file
    ("column missing", event(without(PERSON, "last_name")), ["missing_value:last_name"], P),
    ("control character", pop(record_id="POP-1\t2"), ["bad_character:record_id"], P),
    ("iin malformed", MALFORMED_IIN, ["subject_mismatch", "bad_format:iin"], P),
    ("bad date", pop(birth_date="2026-02-30"), ["bad_date:birth_date"], P),
    ("date range", pop(birth_date="1850-01-01"), ["date_out_of_range:birth_date"], P),
    ("date ahead", pop(updated_on="2026-12-01"), ["date_in_future:updated_on"], P),
    ("unknown code", pop(region_code="99"), ["unknown_code:region_code"], P),
    ("mojibake", pop(last_name=GARBLED), ["mojibake:last_name"], P),
    ("bad name", pop(first_name="Ai#1"), ["bad_name:first_name"], P),
    ("too long", pop(record_id="R" * 65), ["too_long:record_id"], P),
    ("died unborn", event(PERSON | {"death_date": "2026-11-10"}, "death"), ["period_inverted"], P),
    ("bad month", inc(period="2026-13"), ["bad_month:period"], INC),
    ("negative amount", inc(amount="-5"), ["negative_amount:amount"], INC),
    ("bad amount", inc(amount=1.005), ["bad_amount:amount"], INC),
    ("bin check digit", inc(payer_bin="990440000010"), ["check_digit:payer_bin"], INC),
]  # fmt: skip


@pytest.mark.parametrize(
    ("item", "expected", "source"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_check_refuses_with_its_reason(
    engine: Engine, item: Any, expected: list[str], source: str
) -> None:
    (result,) = accept([item], source)
    assert (result.status, result.inbox_id, result.reasons) == ("rejected", None, expected)
    assert inbox(engine) == []


def test_the_checks_cover_every_reason() -> None:
    from qamqor.registry.validation import REASON_CHECKS

    structural = {
        "conflicting_record_id", "empty_line", "wrong_field_count", "malformed_csv",
        "malformed_json", "not_an_object", "unexpected_field",
    }  # fmt: skip
    covered = {code.partition(":")[0] for case in CASES for code in case[2]}
    covered |= {"repeated_event_id", "conflicting_event_id"}  # tested on their own
    assert set(events.EVENT_REASONS) | (set(REASON_CHECKS) - structural) == covered


def test_a_repeated_event_id_in_one_request_refuses_the_later_one(engine: Engine) -> None:
    first, second = event(person(20)), event(person(21))
    second["event_id"] = first["event_id"]
    results = accept([first, second])
    assert [(r.status, r.reasons) for r in results] == [
        ("accepted", []),
        ("rejected", ["repeated_event_id"]),
    ]


def test_a_date_alone_is_midnight_local_time(engine: Engine) -> None:
    (result,) = accept([event(person(22), occurred_at="2026-11-21")])
    assert result.status == "accepted"
    (stored,) = inbox(engine)
    assert stored.occurred_at == dt.datetime(2026, 11, 20, 19, 0, tzinfo=dt.UTC)  # UTC+5


def test_a_few_minutes_of_clock_skew_are_tolerated(engine: Engine) -> None:
    ahead = (RECEIVED + dt.timedelta(minutes=3)).isoformat()
    (result,) = accept([event(person(23), occurred_at=ahead)])
    assert result.status == "accepted"


# --- the API: who may push, limits, language -------------------------------------------------


def test_only_the_registrys_own_client_may_push(
    engine: Engine, clients: dict[str, TestClient]
) -> None:
    body = {"events": [event(person(30))]}
    other = clients["household"].post(URL.format("population"), json=body)
    assert other.status_code == 403 and other.json()["code"] == "access_denied"
    assert clients["admin"].post(URL.format("population"), json=body).status_code == 403
    assert clients["anonymous"].post(URL.format("population"), json=body).status_code == 401
    unknown = clients["population"].post(URL.format("civil_status"), json=body)
    assert unknown.status_code == 404 and "civil_status" in unknown.json()["detail"]
    assert inbox(engine) == []


def test_the_reasons_come_in_the_callers_language(clients: dict[str, TestClient]) -> None:
    body = {"events": [event(person(31), type="death")]}
    response = clients["population"].post(
        URL.format("population"), json=body, headers={"Accept-Language": "kk-KZ,ru;q=0.8"}
    )
    (result,) = response.json()["results"]
    assert result["reasons"] == [
        {"code": "required_by_type:death_date", "text": "death_date: осы оқиға түрі үшін міндетті"}
    ]
    assert response.json()["rejected"] == 1


def test_a_thousand_events_in_one_call(engine: Engine, clients: dict[str, TestClient]) -> None:
    crowd = people(events.MAX_EVENTS + 1, 1000)
    body = {"events": [event(p) for p in crowd[:-1]]}
    started = time.perf_counter()
    response = clients["population"].post(URL.format("population"), json=body)
    seconds = time.perf_counter() - started
    assert response.status_code == 200
    assert response.json()["accepted"] == 1000, response.json()["rejected"]
    print(f"\n1,000 events on {engine.dialect.name}: {seconds:.3f} s")
    with session_scope() as session:
        assert events.pending_count(session) == 1000
    again = clients["population"].post(URL.format("population"), json=body)
    assert again.json()["duplicates"] == 1000
    too_many = {"events": body["events"] + [event(crowd[-1])]}
    refused = clients["population"].post(
        URL.format("population"), json=too_many, params={"lang": "en"}
    )
    assert refused.status_code == 413
    assert refused.json()["detail"] == (
        "1001 events in one request; at most 1000 are accepted: split the batch."
    )


# --- special categories ----------------------------------------------------------------------


def test_a_diagnosis_is_never_stored_in_plain_text(
    engine: Engine, clients: dict[str, TestClient]
) -> None:
    assigned = disability(40, "G80.1")
    response = clients["disability"].post(URL.format("disability"), json={"events": [assigned]})
    assert response.json()["accepted"] == 1, response.text
    (stored,) = inbox(engine)
    with engine.connect() as conn:
        text = repr(conn.execute(select(RegistryEvent.__table__)).all())
    assert "G80.1" not in text and "G80" not in text
    assert stored.payload == RAW_SEALED
    assert stored.payload_sealed is not None and stored.payload_sealed.startswith("v1:")
    assert events.payload_of(stored) == assigned["payload"]
    # still idempotent: the same event is a duplicate, another diagnosis a conflict
    again = clients["disability"].post(URL.format("disability"), json={"events": [assigned]})
    assert again.json()["duplicates"] == 1
    changed = disability(40, "F72")
    conflict = clients["disability"].post(URL.format("disability"), json={"events": [changed]})
    assert conflict.json()["results"][0]["reasons"][0]["code"] == "conflicting_event_id"


# --- the worker's reader ---------------------------------------------------------------------


def test_claims_skip_events_another_worker_holds(engine: Engine) -> None:
    accept([event(p) for p in people(6, 50)])
    with session_scope() as first:
        mine = [e.id for e in events.claim_pending(first, 4)]
        if engine.dialect.name == "postgresql":
            with session_scope() as second:
                theirs = [e.id for e in events.claim_pending(second, 4)]
            assert len(theirs) == 2 and not set(mine) & set(theirs)
    assert mine == sorted(e.id for e in inbox(engine))[:4]
    with session_scope() as session:
        assert events.oldest_pending_age_seconds(session, RECEIVED) == 0.0
        assert events.pending_count(session) == 6


# --- the CLI ---------------------------------------------------------------------------------


def test_the_cli_pushes_a_file_and_lists_the_inbox(engine: Engine, tmp_path: Path) -> None:
    lines = [
        json.dumps(event(person(60)), ensure_ascii=False),
        "{not json",
        "",
        json.dumps(event(person(61), type="death"), ensure_ascii=False),
        json.dumps(event(person(62)), ensure_ascii=False),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    pushed = runner.invoke(events_app, ["push", str(path), "--source", "population"])
    assert pushed.exit_code == 1, pushed.output
    assert "2 accepted, 0 duplicates, 2 rejected" in pushed.output
    assert "line 2 (no event id): the line is not valid JSON" in pushed.output
    assert "death_date: required for this event type" in pushed.output

    again = runner.invoke(events_app, ["push", str(path), "--source", "population", "--json"])
    report = json.loads(again.output)
    assert (report["accepted"], report["duplicates"], report["rejected"]) == (0, 2, 2)
    assert [r["line"] for r in report["results"]] == [1, 2, 4, 5]

    listed = runner.invoke(events_app, ["list", "--status", "pending", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["pending"] == 2
    table = runner.invoke(events_app, ["list", "--source", "population"])
    assert "2 pending in all" in table.output
    unknown = runner.invoke(events_app, ["push", str(path), "--source", "zags"])
    assert unknown.exit_code == 1 and "unknown source registry" in unknown.output
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(RegistryEvent)) == 2


def test_prepared_checks_keep_each_call_and_thread_to_its_own_rows() -> None:
    import duckdb
    import pyarrow as pa

    from qamqor.registry.catalogue import get_source
    from qamqor.registry.validation import PreparedChecks

    source = get_source("income")
    database = duckdb.connect(config={"threads": 1})
    checks = PreparedChecks(lambda: database)
    outer = "SELECT line_no, all_reasons FROM ({checks}) ORDER BY line_no"

    def rows(count: int, updated_on: str, iin: str) -> pa.Table:
        row = {
            "record_id": "R",
            "iin": iin,
            "period": "2026-09",
            "income_type": "wage",
            "amount": "1000.00",
            "payer_bin": "",
            "updated_on": updated_on,
        }
        columns = {n: pa.array([row[n]] * count, pa.string()) for n in source.column_names}
        columns["line_no"] = pa.array(range(count), pa.int64())
        columns["raw"] = pa.nulls(count, pa.string())
        return pa.table(columns)

    good = valid_iin(7)
    day = dt.date(2026, 11, 29)
    assert checks.execute(source, rows(3, "2026-11-02", good), day, outer).fetchall() == [
        (0, []),
        (1, []),
        (2, []),
    ]
    # the next call's rows replace the last call's, they are not added to them
    assert checks.execute(source, rows(1, "2026-11-02", good), day, outer).fetchall() == [(0, [])]
    # the reference day is part of the statement: the same row is from the future before it
    ahead = checks.execute(source, rows(1, "2026-11-02", good), dt.date(2026, 11, 1), outer)
    assert ahead.fetchall() == [(0, ["date_in_future:updated_on"])]
    # threads at once, each with rows of its own (a bad IIN in one of them)
    found: dict[int, list[Any]] = {}

    def check(n: int) -> None:
        iin = good if n % 2 else good[:-1] + str((int(good[-1]) + 1) % 10)
        for _ in range(20):
            found[n] = checks.execute(source, rows(n, "2026-11-02", iin), day, outer).fetchall()

    threads = [threading.Thread(target=check, args=(n,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, result in found.items():
        assert len(result) == n
        assert all(bool(reasons) == (n % 2 == 0) for _, reasons in result), (n, result)
