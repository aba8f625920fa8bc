"""The change-event inbox: a registry says "this record is new or changed", Qamqor keeps it.

An event's payload is one row of its source's extract (``catalogue.yaml``). It is checked with
the very SQL that checks extracts (``validation.validation_sql``, over a small DuckDB table of
the payloads), plus the checks of the envelope (``events.yaml`` types, event id, subject,
time). Accepted events are inserted into ``registry_event`` as ``pending`` in the caller's
transaction, which the caller commits before it answers: an acknowledged event is never lost.
The worker claims them (``claim_pending``) and inserts each payload as a fact, so a later
record with the same record id supersedes the earlier one.

A push is idempotent by (source, event id): the same event again is a ``duplicate`` pointing
at the first one's inbox row; the same id with other content is refused. Concurrent pushes of
one event meet at the unique constraint (INSERT ... ON CONFLICT DO NOTHING, then a re-read),
so neither fails.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Literal, cast

import duckdb
import pyarrow as pa
import yaml
from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from qamqor.kit.errors import NotFoundError, QamqorError
from qamqor.kit.settings import get_settings
from qamqor.privacy import fields
from qamqor.privacy import keyring as keyring_module
from qamqor.registry import iin
from qamqor.registry.catalogue import LANGUAGES, Source, sources
from qamqor.registry.models import RAW_SEALED, RegistryEvent
from qamqor.registry.validation import PreparedChecks

MAX_EVENTS = 1000
# A registry's clock may run a little ahead of ours; an event further in the future is an error.
CLOCK_SKEW = dt.timedelta(minutes=5)
EVENT_FIELDS = frozenset({"event_id", "type", "subject_iin", "occurred_at", "payload"})
TWELVE_DIGITS = re.compile(r"[0-9]{12}")
FIELD_NAME_SHOWN = 64  # an unexpected field's name is echoed back, cut to this length

# Reasons an event can be refused for besides the column checks of registry/validation.py
# (``missing_value:iin`` and the like); each has a text in ru/kk/en (locale/*/messages.po).
EVENT_REASONS = (
    "event_not_an_object", "unexpected_event_field", "bad_event_id", "repeated_event_id",
    "unknown_event_type", "type_of_other_source", "bad_subject_iin", "subject_mismatch",
    "bad_occurred_at", "occurred_in_future", "payload_not_an_object", "bad_payload_value",
    "unexpected_payload_field", "required_by_type", "value_not_for_type",
    "conflicting_event_id",
)  # fmt: skip

# Domain separation of the keyed content hash of sealed payloads (see _content_digest).
_SEALED_DIGEST_CONTEXT = b"qamqor-registry-event-content/v1"


Status = Literal["accepted", "duplicate", "rejected"]


class TooManyEventsError(QamqorError):
    code = "too_many_events"


@dataclass(frozen=True)
class EventType:
    code: str
    names: dict[str, str]
    source: str
    requires: tuple[str, ...] = ()
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)


@lru_cache(maxsize=1)
def load_event_types() -> dict[str, EventType]:
    """Every event type by code (``events.yaml``), checked against the catalogue."""
    text = resources.files("qamqor.registry").joinpath("events.yaml").read_text("utf-8")
    catalogue = sources()
    result: dict[str, EventType] = {}
    for code, spec in yaml.safe_load(text)["types"].items():
        source = catalogue.get(spec["source"])
        if source is None:
            raise ValueError(f"events.yaml: {code} names unknown source {spec['source']!r}")
        requires = tuple(spec.get("requires") or ())
        values = {
            name: tuple(str(v) for v in allowed)
            for name, allowed in (spec.get("values") or {}).items()
        }
        for name in (*requires, *values):
            if name not in source.column_names:
                raise ValueError(f"events.yaml: {code} names unknown column {source.code}.{name}")
        for name, allowed in values.items():
            unknown = set(allowed) - set(source.column(name).values)
            if unknown:
                raise ValueError(f"events.yaml: {code}.{name} allows unknown codes {unknown}")
        result[code] = EventType(
            code=code,
            names={lang: spec["names"][lang] for lang in LANGUAGES},
            source=source.code,
            requires=requires,
            values=values,
        )
    return result


@dataclass
class Result:
    """What became of one event. ``status`` is ``accepted``, ``duplicate`` or ``rejected``;
    ``inbox_id`` is the inbox row (the first one's for a duplicate), None when rejected."""

    event_id: str | None
    status: Status
    inbox_id: int | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass
class _Accepted:
    """An event that passed every check: the inbox row it becomes."""

    index: int
    row: dict[str, Any]


def _local_zone() -> dt.tzinfo:
    return zoneinfo.ZoneInfo(get_settings().local_timezone)


def parse_occurred_at(value: object, zone: dt.tzinfo) -> dt.datetime | None:
    """An ISO-8601 timestamp or date as aware UTC; one without an offset (a date alone: its
    midnight) is local time. None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=zone)
    if stamp.year < 1900:
        return None
    return stamp.astimezone(dt.UTC)


def extract_row(source: Source, payload: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The payload as the extract line it stands for, and the reasons it cannot be one.

    A missing column is an empty value (the column checks then say whether it may be); a
    number is its text. Anything else (true, a list, an object, NaN) is refused.
    """
    row = {name: "" for name in source.column_names}
    reasons: list[str] = []
    for name, value in payload.items():
        if name not in row:
            reasons.append(f"unexpected_payload_field:{str(name)[:FIELD_NAME_SHOWN]}")
        elif value is None:
            continue
        elif isinstance(value, str):
            row[name] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            row[name] = str(value)
        elif isinstance(value, float) and math.isfinite(value):
            row[name] = repr(value)
        else:
            reasons.append(f"bad_payload_value:{name}")
    return row, reasons


@lru_cache(maxsize=1)
def checks_engine() -> duckdb.DuckDBPyConnection:
    """The process's DuckDB for the extract checks of incoming events (and of the worker's
    cycles, which check them again), opened once: a new
    engine per request and source cost about 50 ms (the producer of the worker benchmark
    could not push 2,000 events/s for it). Each thread takes a cursor of its own — a
    connection of its own to this in-memory database, so its tables and prepared checks stay
    its own and concurrent requests do not meet (``validation.PreparedChecks``). It reads only
    the Arrow tables handed to it (no file or network access, configuration locked).

    Without DuckDB's optimiser: the checks are one projection over a request's rows (no join,
    no filter to push down), and optimising that 6-14 KB expression list took as long as
    binding it, ~14 ms a source and call whatever the number of rows; without it the same
    query over 10 or 2,000 rows ran in 5-15 ms less (``registry/validation.py``)."""
    con = duckdb.connect(
        config={
            "enable_optimizer": False,
            "threads": 1,
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    con.execute("SET lock_configuration = true")
    return con


# the checks prepared once per thread over a table each call refills (why: PreparedChecks);
# the worker's cycles use them too
EVENT_CHECKS = PreparedChecks(checks_engine)


def _column_reasons(source: Source, rows: list[dict[str, str]], today: dt.date) -> list[list[str]]:
    """The extract checks (registry/validation.py) of each row, in one DuckDB query."""
    if not rows:
        return []
    columns: dict[str, pa.Array] = {
        name: pa.array([row[name] for row in rows], pa.string()) for name in source.column_names
    }
    columns["line_no"] = pa.array(range(len(rows)), pa.int64())
    columns["raw"] = pa.nulls(len(rows), pa.string())
    found = EVENT_CHECKS.execute(
        source, pa.table(columns), today, "SELECT line_no, all_reasons FROM ({checks})"
    ).fetchall()
    reasons: list[list[str]] = [[] for _ in rows]
    for line_no, codes in found:
        reasons[int(line_no)] = list(codes)
    return reasons


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _content_digest(canonical: str, sealed: bool) -> str:
    """SHA-256 of the canonical event; for a sealed payload HMAC-SHA-256 under a key derived
    from the keyring's pseudonym salt. A plain hash of a payload holding a diagnosis could be
    reversed by hashing each of the ~14,000 ICD-10 codes with the other, known values; the
    salt is never rotated, so the same event keeps the same digest and stays a duplicate."""
    data = canonical.encode("utf-8")
    if not sealed:
        return hashlib.sha256(data).hexdigest()
    salt = keyring_module.load(create=True).pseudonym_salt
    key = hmac.new(salt, _SEALED_DIGEST_CONTEXT, hashlib.sha256).digest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _envelope_reasons(
    event: dict[str, Any],
    source: Source,
    seen: set[str],
    now: dt.datetime,
    zone: dt.tzinfo,
) -> tuple[list[str], dt.datetime | None]:
    """The event's own checks (not the payload's columns), and its time when it has one."""
    reasons = [
        f"unexpected_event_field:{str(name)[:FIELD_NAME_SHOWN]}"
        for name in event
        if name not in EVENT_FIELDS
    ]
    event_id = event.get("event_id")
    if not (isinstance(event_id, str) and 1 <= len(event_id) <= 64 and event_id.isprintable()):
        reasons.append("bad_event_id")
    elif event_id in seen:
        reasons.append("repeated_event_id")
    else:
        seen.add(event_id)
    event_type = load_event_types().get(str(event.get("type")))
    if event_type is None:
        reasons.append("unknown_event_type")
    elif event_type.source != source.code:
        reasons.append("type_of_other_source")
    subject = event.get("subject_iin")
    if not (
        isinstance(subject, str) and TWELVE_DIGITS.fullmatch(subject) and iin.is_valid(subject)
    ):
        reasons.append("bad_subject_iin")
    occurred_at = parse_occurred_at(event.get("occurred_at"), zone)
    if occurred_at is None:
        reasons.append("bad_occurred_at")
    elif occurred_at > now + CLOCK_SKEW:
        reasons.append("occurred_in_future")
    return reasons, occurred_at


def _type_reasons(event_type: EventType | None, source: Source, row: dict[str, str]) -> list[str]:
    if event_type is None or event_type.source != source.code:
        return []
    reasons = [f"required_by_type:{name}" for name in event_type.requires if not row[name].strip()]
    for name, allowed in event_type.values.items():
        value = row[name].strip()
        if value and value not in allowed:
            reasons.append(f"value_not_for_type:{name}")
    return reasons


# The inbox columns a push writes, and their PostgreSQL types (the rest take their defaults).
_INBOX_COLUMNS = {
    "source": "text",
    "event_id": "text",
    "type": "text",
    "subject_iin": "text",
    "occurred_at": "timestamptz",
    "received_at": "timestamptz",
    "payload": "text",
    "payload_sealed": "text",
    "content_sha256": "text",
}


# PostgreSQL's notification channel of new inbox events; the payload is the schema
INBOX_CHANNEL = "qamqor_inbox"


def _insert_postgres(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """``_insert_statement`` on PostgreSQL as one statement over the rows as one JSON
    document, in ``rows``' order, on the session's own connection (its transaction).
    SQLAlchemy's multi-row VALUES with ten parameters an event cost the producer of the
    worker benchmark half its CPU; column arrays after it, a third (psycopg quotes every
    element of a text array with a regular expression: 1.1 s of 3.9 s for 10,000 events). One
    ``json.dumps`` is C; ``json_to_recordset`` types the values on the server."""
    if not rows:
        return {}
    names = list(_INBOX_COLUMNS)
    columns = ", ".join(f"{n} {t}" for n, t in _INBOX_COLUMNS.items())
    document = json.dumps(
        [
            {
                **{n: row[n] for n in names},
                "occurred_at": row["occurred_at"].isoformat(),
                "received_at": row["received_at"].isoformat(),
                "position": position,
            }
            for position, row in enumerate(rows)
        ]
    )
    sql = (
        f"INSERT INTO {RegistryEvent.__tablename__} ({', '.join(names)}) "
        f"SELECT {', '.join(names)} FROM json_to_recordset(%s::json) "
        f"AS incoming({columns}, position integer) ORDER BY position "
        "ON CONFLICT (source, event_id) DO NOTHING RETURNING id, event_id"
    )
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(sql, (document,))
        inserted = {event_id: inbox_id for inbox_id, event_id in cursor.fetchall()}
        if inserted:
            # wakes idle workers when this transaction commits (``proactive/wakeup.py``)
            cursor.execute("SELECT pg_notify(%s, current_schema())", (INBOX_CHANNEL,))
        return inserted


def _insert_statement(session: Session) -> Any:
    """INSERT ... ON CONFLICT (source, event_id) DO NOTHING RETURNING id, event_id."""
    table = cast(Table, RegistryEvent.__table__)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(table.c.id, table.c.event_id)
    )


def accept_events(
    session: Session, source: str, events: Sequence[object], received_at: dt.datetime
) -> list[Result]:
    """Check every event and add the valid ones to the inbox; one result per event, in order.

    Rejected events do not stop the valid ones. Nothing is committed here: the caller commits
    before it acknowledges. Raises NotFoundError for an unknown source and TooManyEventsError
    beyond MAX_EVENTS.
    """
    src = sources().get(source)
    if src is None:
        raise NotFoundError(f"unknown source registry {source!r}")
    if len(events) > MAX_EVENTS:
        raise TooManyEventsError(
            f"{len(events):,} events in one call; at most {MAX_EVENTS:,} are accepted"
        )
    zone = _local_zone()
    today = received_at.astimezone(zone).date()
    seen: set[str] = set()
    results: list[Result] = []
    checked: list[tuple[int, dict[str, Any], dt.datetime | None, dict[str, str]]] = []
    rows: list[dict[str, str]] = []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            results.append(Result(None, "rejected", reasons=["event_not_an_object"]))
            continue
        event_id = event.get("event_id")
        result = Result(event_id if isinstance(event_id, str) else None, "rejected")
        results.append(result)
        result.reasons, occurred_at = _envelope_reasons(event, src, seen, received_at, zone)
        payload = event.get("payload")
        if not isinstance(payload, dict):
            result.reasons.append("payload_not_an_object")
            continue
        row, payload_reasons = extract_row(src, payload)
        result.reasons.extend(payload_reasons)
        event_type = load_event_types().get(str(event.get("type")))
        result.reasons.extend(_type_reasons(event_type, src, row))
        payload_iin = row.get("iin", "").strip()
        if (
            payload_iin
            and "bad_subject_iin" not in result.reasons
            and payload_iin != event.get("subject_iin")
        ):
            result.reasons.append("subject_mismatch")
        checked.append((index, event, occurred_at, row))
        rows.append(row)

    column_reasons = _column_reasons(src, rows, today)
    sealed = src.has_special_columns
    accepted: list[_Accepted] = []
    for (index, event, occurred_at, _), codes in zip(checked, column_reasons, strict=True):
        result = results[index]
        # a value already refused for its JSON type is not checked again as text
        refused = {r.partition(":")[2] for r in result.reasons if r.startswith("bad_payload")}
        result.reasons.extend(c for c in codes if c.partition(":")[2] not in refused)
        if result.reasons:
            continue
        assert occurred_at is not None
        accepted.append(_Accepted(index, _inbox_row(src, event, occurred_at, received_at, sealed)))

    if accepted:
        _store(session, src, accepted, results)
    for result in results:
        if not result.reasons and result.status == "rejected":
            raise RuntimeError(f"event {result.event_id!r} was neither stored nor refused")
    return results


def _inbox_row(
    source: Source,
    event: dict[str, Any],
    occurred_at: dt.datetime,
    received_at: dt.datetime,
    sealed: bool,
) -> dict[str, Any]:
    payload_text = _canonical(event["payload"])
    canonical = _canonical(
        {
            "event_id": event["event_id"],
            "type": event["type"],
            "subject_iin": event["subject_iin"],
            "occurred_at": occurred_at.isoformat(),
            "payload": event["payload"],
        }
    )
    row = {
        "source": source.code,
        "event_id": event["event_id"],
        "type": event["type"],
        "subject_iin": event["subject_iin"],
        "occurred_at": occurred_at,
        "received_at": received_at,
        "payload": payload_text,
        "payload_sealed": None,
        "content_sha256": _content_digest(canonical, sealed),
        "status": "pending",
        "attempts": 0,
        "applied_at": None,
        "error": None,
    }
    if sealed:
        row["payload_sealed"] = fields.encrypt(
            payload_text,
            table=RegistryEvent.__tablename__,
            column="payload_sealed",
            row=(source.code, event["event_id"]),
        )
        row["payload"] = RAW_SEALED
    return row


def _store(
    session: Session, source: Source, accepted: list[_Accepted], results: list[Result]
) -> None:
    """Insert the accepted events; those whose id is already in the inbox are duplicates when
    their content is the same, and refused as ``conflicting_event_id`` when it is not."""
    # In event-id order, not the request's: two pushes holding some of each other's events in
    # opposite orders deadlocked on PostgreSQL (3 rounds in 8 of two 1,000-event pushes, one
    # reversed), each waiting for the other's uncommitted row; one order admits no cycle.
    rows = sorted((a.row for a in accepted), key=lambda row: str(row["event_id"]))
    if session.get_bind().dialect.name == "postgresql":
        inserted = _insert_postgres(session, rows)
    else:
        inserted = {
            event_id: inbox_id
            for inbox_id, event_id in session.execute(_insert_statement(session), rows)
        }
    taken = [a for a in accepted if a.row["event_id"] not in inserted]
    existing: dict[str, tuple[int, str]] = {}
    if taken:
        # Inserted by an earlier push, or by a concurrent one that committed while we waited
        # on its row lock: either way it is visible to this new statement.
        found = session.execute(
            select(RegistryEvent.event_id, RegistryEvent.id, RegistryEvent.content_sha256).where(
                RegistryEvent.source == source.code,
                RegistryEvent.event_id.in_([a.row["event_id"] for a in taken]),
            )
        )
        existing = {event_id: (inbox_id, digest) for event_id, inbox_id, digest in found}
    for item in accepted:
        result = results[item.index]
        event_id = item.row["event_id"]
        if event_id in inserted:
            result.status, result.inbox_id = "accepted", inserted[event_id]
            continue
        inbox_id, digest = existing[event_id]
        if hmac.compare_digest(digest, item.row["content_sha256"]):
            result.status, result.inbox_id = "duplicate", inbox_id
        else:
            result.reasons.append("conflicting_event_id")


# --- the worker's side -----------------------------------------------------------------------


def claim_pending(session: Session, limit: int) -> list[RegistryEvent]:
    """The oldest pending events, locked for this transaction.

    On PostgreSQL ``FOR UPDATE SKIP LOCKED``: several workers claim disjoint events and none
    waits for another. SQLite has no row locks (one writer at a time), so a plain select; run
    one worker there.
    """
    query = (
        select(RegistryEvent)
        .where(RegistryEvent.status == "pending")
        .order_by(RegistryEvent.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def payload_of(event: RegistryEvent) -> dict[str, Any]:
    """The payload as received, unsealed when it was sealed."""
    if event.payload_sealed is None:
        loaded = json.loads(event.payload)
    else:
        secret = fields.reveal(event, "payload_sealed")
        assert secret is not None
        loaded = json.loads(secret.reveal())
    if not isinstance(loaded, dict):
        raise ValueError(f"registry_event {event.id}: the payload is not an object")
    return loaded


def pending_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(RegistryEvent).where(RegistryEvent.status == "pending")
        )
        or 0
    )


def oldest_pending_age_seconds(session: Session, now: dt.datetime) -> float:
    """Seconds since the oldest pending event was received; 0 when none is pending."""
    received = session.scalar(
        select(RegistryEvent.received_at)
        .where(RegistryEvent.status == "pending")
        .order_by(RegistryEvent.id)
        .limit(1)
    )
    if received is None:
        return 0.0
    return max(0.0, (now - received).total_seconds())


def list_events(
    session: Session,
    *,
    status: str | None = None,
    source: str | None = None,
    limit: int = 50,
) -> list[RegistryEvent]:
    """Inbox rows, newest first."""
    query = select(RegistryEvent)
    if status is not None:
        query = query.where(RegistryEvent.status == status)
    if source is not None:
        query = query.where(RegistryEvent.source == source)
    return list(session.scalars(query.order_by(RegistryEvent.id.desc()).limit(limit)))
