"""The proactive worker: from registry events to offers and notices.

One cycle (``run_once``):

1. **apply** — claim pending events (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
   workers share the inbox), turn each payload into a fact of its registry (one batch per
   source per cycle, the event's inbox id as its line), and mark the events ``applied`` — all
   in one transaction: a crash before the commit leaves them pending, after it they are facts.
   An event older than the newest fact of the same record (``updated_on``) is ``superseded``:
   it arrived late and changes nothing. Events of one household are applied in occurred-at
   order.
2. **recompute** — the households the events touch (current and former memberships of the
   subject, and the household an event names) get their profiles rebuilt and their programs
   decided through the same code path as the country-wide run (``profiles.builder.build``,
   ``rules.service.decide``), as of the reference date, in the worker's resident DuckDB
   (``kit/duck.py``). Late and out-of-order events need no special case: everything is
   recomputed from the facts. On PostgreSQL the households' advisory locks are held from here
   to the end of step 3 (``HouseholdLocks``): one household, one worker at a time.
3. **reconcile** — for each of those households and each paying program, the current decision
   is compared with what the household has: eligible and nothing offered or paid → an offer
   (72 hours to accept); eligible with a different amount than paid → a notice; ineligible
   while paid → a notice, payment continuing to the end of the notice period (or of the
   entitlement's own period, when sooner); needs review → nothing changes (nobody loses
   support because data is missing). Then the events are ``done``.

Each step is idempotent — offers and notices are unique per decision, a profile or decision is
written only when it changes — so a worker killed anywhere and started again does the rest of
the work and nothing twice. Events applied but not done whose lease (``claimed_until``) has run
out are taken over by the next cycle of any worker.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import signal
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
from sqlalchemy import BigInteger, String, any_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from qamqor.kit.duck import compute_engine
from qamqor.kit.errors import QamqorError
from qamqor.privacy import fields
from qamqor.privacy.households import heads_of
from qamqor.proactive.locks import household_locks
from qamqor.proactive.models import Entitlement, Notice, Offer
from qamqor.proactive.notify import local_day, notify_all, program_payment
from qamqor.proactive.offers import entitlement_period, expire_due
from qamqor.proactive.wakeup import InboxWaiter
from qamqor.profiles.builder import build
from qamqor.profiles.models import ProfileBuild, ProfileHead
from qamqor.registry.catalogue import get_source, sources
from qamqor.registry.events import (
    EVENT_CHECKS,
    checks_engine,
    claim_pending,
    extract_row,
    payload_of,
)
from qamqor.registry.loading import bulk_insert
from qamqor.registry.models import FACT_TABLES, Batch, HouseholdFact, RegistryEvent
from qamqor.registry.validation import fact_column
from qamqor.rules.models import DecisionHead
from qamqor.rules.service import decide
from qamqor.rules.spec import load_programs

LEASE = dt.timedelta(minutes=2)
OFFER_WINDOW = dt.timedelta(hours=72)
APPEAL_DAYS = 30
MAX_ATTEMPTS = 5
_ATTEMPTS = 4  # tries of a cycle step that collides with another worker's
_CHUNK = 500
# Events a cycle takes at most. A backlog drains faster in larger cycles (a cycle's fixed
# cost, some 0.25 s of the worker's CPU, is shared by more events): 2,000 events/s pushed at
# two workers on 1 M households were done at ~1,200/s in cycles of 1,000 and ~1,400/s in
# cycles of 2,500 (docs/proactive.md). A trickle makes small cycles whatever the limit.
BATCH = 2500


def _key_chunks(dialect: str, keys: Sequence[Any]) -> list[Sequence[Any]]:
    """``keys`` in the portions one query takes: all at once on PostgreSQL (an array
    parameter: a 500-value IN list costs SQLAlchemy and psycopg more to render and parse than
    the indexed lookup costs the server), ``_CHUNK`` at a time elsewhere."""
    if not keys:
        return []
    if dialect == "postgresql":
        return [keys]
    return [keys[i : i + _CHUNK] for i in range(0, len(keys), _CHUNK)]


def _keyed_one(
    dialect: str, column: Any, keys: Sequence[Any], element: Any = String
) -> ColumnElement[bool]:
    """``column`` is one of ``keys`` (one portion of ``_key_chunks``)."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(keys), type_=ARRAY(element)))
    return column.in_(keys)


def _keyed(
    dialect: str, column: Any, keys: Sequence[Any], element: Any = String
) -> Iterator[ColumnElement[bool]]:
    """A condition per query that together select the rows whose ``column`` is in ``keys``."""
    for chunk in _key_chunks(dialect, keys):
        yield _keyed_one(dialect, column, chunk, element)


@dataclass
class CycleReport:
    claimed: int = 0
    applied: int = 0
    superseded: int = 0
    failed: int = 0
    taken_over: int = 0
    households: int = 0
    offers: int = 0
    notices: int = 0
    done: int = 0
    expired: int = 0
    retries: int = 0  # steps done again after colliding with another worker's (``_retrying``)
    waited: int = 0  # households another worker held: done after it let them go
    deferred: int = 0  # households another worker held: left for this worker's next cycle
    phases: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_date(engine: Engine) -> dt.date:
    """The reference date the profiles are built for: that of the newest whole-country build."""
    with Session(engine) as session:
        day = session.execute(
            select(ProfileBuild.as_of)
            .where(ProfileBuild.scope == "all")
            .order_by(ProfileBuild.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    if day is None:
        raise QamqorError("no profile build yet: run `qamqor profiles build` first")
    return day


# --- 1. apply -------------------------------------------------------------------------------


def _typed_rows(
    source_code: str,
    events: Sequence[RegistryEvent],
    payloads: dict[int, dict[str, Any]],
    today: dt.date,
) -> tuple[pa.Table, dict[int, list[str]]]:
    """The events' payloads (by inbox id) as typed fact rows (line_no = inbox id), through the
    extract checks; and the reasons of any that no longer pass."""
    source = get_source(source_code)
    rows = [extract_row(source, payloads[e.id])[0] for e in events]
    columns: dict[str, pa.Array] = {
        name: pa.array([r[name] for r in rows], pa.string()) for name in source.column_names
    }
    columns["line_no"] = pa.array([e.id for e in events], pa.int64())
    columns["raw"] = pa.nulls(len(rows), pa.string())
    fact_columns = [fact_column(c) for c in source.columns]
    date_like = {fact_column(c) for c in source.columns if c.type in ("date", "month")}
    out = [f'CAST("{c}" AS VARCHAR) AS "{c}"' if c in date_like else f'"{c}"' for c in fact_columns]
    result = EVENT_CHECKS.execute(
        source,
        pa.table(columns),
        today,
        f"SELECT {', '.join(out)}, line_no, CAST(valid_from AS VARCHAR) AS valid_from, "
        "CAST(valid_to AS VARCHAR) AS valid_to, all_reasons FROM ({checks}) ORDER BY line_no",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Arrow output on a DB-API result", UserWarning)
        table = result.to_arrow_table()
    assert table is not None
    reasons = {
        int(line): list(found)
        for line, found in zip(
            table.column("line_no").to_pylist(),
            table.column("all_reasons").to_pylist(),
            strict=True,
        )
        if found
    }
    return table.drop(["all_reasons"]), reasons


def _newest_updates(
    connection: Connection, source_code: str, record_ids: Iterable[str]
) -> dict[str, dt.date]:
    table = FACT_TABLES[source_code]
    newest: dict[str, dt.date] = {}
    unique = sorted(set(record_ids))
    for condition in _keyed(connection.dialect.name, table.c.source_record_id, unique):
        for record, updated in connection.execute(
            select(table.c.source_record_id, func.max(table.c.updated_on))
            .where(condition)
            .group_by(table.c.source_record_id)
        ):
            if updated is not None:
                newest[record] = updated
    return newest


def _apply_source(
    session: Session,
    source_code: str,
    events: list[RegistryEvent],
    now: dt.datetime,
    lease: dt.timedelta,
    seen: dict[int, Touched] | None = None,
) -> tuple[list[int], int, int]:
    """Facts of one source's events in one batch; returns (the applied events' ids, how many
    were superseded, how many failed). ``seen`` gets what the applied events touch."""
    events.sort(key=lambda e: (e.occurred_at, e.id))
    today = max(e.received_at for e in events).date()
    payloads = {e.id: payload_of(e) for e in events}
    table, reasons = _typed_rows(source_code, events, payloads, today)
    connection = session.connection()
    newest = _newest_updates(connection, source_code, table.column("source_record_id").to_pylist())
    keep: list[int] = []
    superseded: set[int] = set()
    by_line = {e.id: e for e in events}
    records = table.column("source_record_id").to_pylist()
    updates = table.column("updated_on").to_pylist()
    lines = table.column("line_no").to_pylist()
    for row, (line, record, updated) in enumerate(zip(lines, records, updates, strict=True)):
        if line in reasons:
            continue
        known = newest.get(record)
        if known is not None and updated is not None and dt.date.fromisoformat(updated) < known:
            superseded.add(line)
            continue
        keep.append(row)
    facts = table.take(pa.array(keep, pa.int64())) if keep else table.slice(0, 0)
    ids = ",".join(str(e.id) for e in sorted(events, key=lambda e: e.id))
    digest = hashlib.sha256(f"events|{source_code}|{ids}".encode()).hexdigest()
    batch_id = connection.execute(
        insert(Batch)
        .values(
            source=source_code,
            file_name=f"events:{source_code}:{lines[0]}-{max(lines)}",
            file_sha256=digest,
            file_bytes=sum(len(e.payload) for e in events),
            format="event",
            encoding=None,
            delimiter=None,
            rows_read=len(events),
            facts=facts.num_rows,
            rejections=len(reasons),
            duplicates=len(superseded),
            rejection_reasons={},
            received_at=min(e.received_at for e in events),
            loaded_at=now,
        )
        .returning(Batch.id)
    ).scalar_one()
    if facts.num_rows:
        fact_table = FACT_TABLES[source_code]
        facts = facts.append_column("batch_id", pa.array([batch_id] * facts.num_rows, pa.int64()))
        names = facts.column_names
        batches = facts.to_batches()
        if get_source(source_code).has_special_columns:
            batches = [
                fields.seal_record_batch(fact_table, pa.RecordBatch.from_arrays(b.columns, names))
                for b in batches
            ]
        bulk_insert(connection, fact_table.name, names, batches)
    # The events' new states in a statement per outcome (and per failure reason), not an ORM
    # UPDATE per event: a thousand of those were a tenth of a cycle's client time.
    outcomes: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for line in by_line:
        if line in reasons:
            outcomes[("failed", " ".join(reasons[line]))].append(line)
        elif line in superseded:
            outcomes[("superseded", "an event with a newer updated_on was applied before")].append(
                line
            )
        else:
            outcomes[("applied", None)].append(line)
    dialect = connection.dialect.name
    for (status, error), lines_of in outcomes.items():
        values: dict[str, Any] = {
            "attempts": RegistryEvent.attempts + 1,
            "batch_id": batch_id,
            "status": status,
        }
        if error is not None:
            values["error"] = error
        if status != "failed":
            values.update(applied_at=now, claimed_until=now + lease)
        for condition in _keyed(dialect, RegistryEvent.id, sorted(lines_of), BigInteger):
            connection.execute(update(RegistryEvent).where(condition).values(values))
    # (the session's copies of the events are stale now; apply_pending's transaction ends
    # without reading them again)
    applied = outcomes.get(("applied", None), [])
    if seen is not None:
        for line in applied:
            event = by_line[line]
            seen[line] = Touched(event.source, event.subject_iin, payloads[line], event.received_at)
    return applied, len(superseded), len(reasons)


def apply_pending(
    engine: Engine,
    limit: int,
    now: dt.datetime,
    report: CycleReport,
    lease: dt.timedelta = LEASE,
    seen: dict[int, Touched] | None = None,
) -> list[int]:
    """Claim up to ``limit`` pending events and make them facts, in one transaction; ``seen``
    (when given) gets what each applied event touches, for ``affected_households``."""
    with Session(engine) as session, session.begin():
        events = claim_pending(session, limit)
        report.claimed = len(events)
        by_source: dict[str, list[RegistryEvent]] = defaultdict(list)
        for event in events:
            by_source[event.source].append(event)
        done: list[int] = []
        for source_code, group in sorted(by_source.items()):
            applied, superseded, failed = _apply_source(
                session, source_code, group, now, lease, seen
            )
            done.extend(applied)
            report.applied += len(applied)
            report.superseded += superseded
            report.failed += failed
        return sorted(done)


def take_over(
    engine: Engine, now: dt.datetime, limit: int, lease: dt.timedelta = LEASE
) -> list[int]:
    """Events applied by a worker that did not finish them (its lease ran out)."""
    with Session(engine) as session, session.begin():
        query = (
            select(RegistryEvent)
            .where(RegistryEvent.status == "applied", RegistryEvent.claimed_until < now)
            .order_by(RegistryEvent.id)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        events = list(session.scalars(query))
        for event in events:
            event.claimed_until = now + lease
        return [e.id for e in events]


# --- 2. recompute ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Touched:
    """What an event touches: its registry, its subject, its payload, when it came in."""

    source: str
    subject_iin: str
    payload: dict[str, Any]
    received_at: dt.datetime


def affected_households(
    session: Session, event_ids: Sequence[int], known: dict[int, Touched] | None = None
) -> dict[str, dt.datetime]:
    """household -> when the first of its events was received: every household the events'
    subjects are or were members of, and the households the events name. The events in
    ``known`` (those this cycle applied) are not read again; the others (taken over) are."""
    return households_of_events(session, event_ids, known)[0]


def households_of_events(
    session: Session, event_ids: Sequence[int], known: dict[int, Touched] | None = None
) -> tuple[dict[str, dt.datetime], dict[int, set[str]]]:
    """``affected_households``, and the households of each event."""
    received: dict[str, dt.datetime] = {}
    by_iin: dict[str, dt.datetime] = {}
    of_event: dict[int, set[str]] = {}
    events_of_iin: dict[str, list[int]] = defaultdict(list)
    dialect = session.get_bind().dialect.name
    touched = [(i, known[i]) for i in event_ids if known and i in known]
    missing = [i for i in event_ids if not known or i not in known]
    for condition in _keyed(dialect, RegistryEvent.id, missing, BigInteger):
        touched.extend(
            (e.id, Touched(e.source, e.subject_iin, payload_of(e), e.received_at))
            for e in session.scalars(select(RegistryEvent).where(condition))
        )
    for event_id, event in touched:
        mine = of_event.setdefault(event_id, set())
        iins = {event.subject_iin}
        payload = event.payload
        if isinstance(payload.get("iin"), str):
            iins.add(payload["iin"])
        for iin in iins:
            by_iin[iin] = min(by_iin.get(iin, event.received_at), event.received_at)
            events_of_iin[iin].append(event_id)
        household = payload.get("household_id")
        if event.source == "household" and isinstance(household, str):
            received[household] = min(received.get(household, event.received_at), event.received_at)
            mine.add(household)
    subjects = sorted(by_iin)
    for condition in _keyed(dialect, HouseholdFact.iin, subjects):
        for household, iin in session.execute(
            select(HouseholdFact.household_id, HouseholdFact.iin).where(condition).distinct()
        ):
            moment = by_iin[iin]
            received[household] = min(received.get(household, moment), moment)
            for event_id in events_of_iin[iin]:
                of_event[event_id].add(household)
    return received, of_event


# --- 3. reconcile ---------------------------------------------------------------------------


def _end_of_next_month(day: dt.date) -> dt.date:
    first_next = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return (first_next + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


def _notice(
    head: DecisionHead,
    entitlement: Entitlement,
    kind: str,
    effective_on: dt.date,
    amount_after: int | None,
    now: dt.datetime,
) -> Notice:
    """A notice about ``head``'s decision to the household paid by ``entitlement``."""
    return Notice(
        household_id=head.household_id,
        program_id=head.program_id,
        decision_id=head.decision_id,
        entitlement_id=entitlement.id,
        kind=kind,
        amount_before_tiyn=entitlement.amount_tiyn,
        amount_after_tiyn=amount_after,
        effective_on=effective_on,
        appeal_until=now.date() + dt.timedelta(days=APPEAL_DAYS),
        created_at=now,
    )


def reconcile(
    session: Session, households: dict[str, dt.datetime], now: dt.datetime
) -> tuple[list[Offer], list[Notice]]:
    """Offers and notices from the households' current decisions (see the module docstring)."""
    paying = set(load_programs())
    ids = sorted(households)
    heads: list[DecisionHead] = []
    active: dict[tuple[str, str], Entitlement] = {}
    open_offers: dict[tuple[str, str], list[Offer]] = defaultdict(list)
    offered: set[int] = set()
    noticed: set[int] = set()
    dialect = session.get_bind().dialect.name
    for chunk in _key_chunks(dialect, ids):
        heads += session.scalars(
            select(DecisionHead).where(
                _keyed_one(dialect, DecisionHead.household_id, chunk),
                DecisionHead.program_id.in_(paying),
            )
        ).all()
        for ent in session.scalars(
            select(Entitlement)
            .where(
                _keyed_one(dialect, Entitlement.household_id, chunk),
                Entitlement.status != "ended",
            )
            .order_by(Entitlement.id)
        ):
            active[(ent.household_id, ent.program_id)] = ent
        for offer in session.scalars(
            select(Offer).where(_keyed_one(dialect, Offer.household_id, chunk))
        ):
            offered.add(offer.decision_id)
            if offer.status in ("created", "notified"):
                open_offers[(offer.household_id, offer.program_id)].append(offer)
        noticed.update(
            session.scalars(
                select(Notice.decision_id).where(_keyed_one(dialect, Notice.household_id, chunk))
            )
        )
    offers: list[Offer] = []
    notices: list[Notice] = []
    today = now.date()
    for head in sorted(heads, key=lambda h: (h.household_id, h.program_id)):
        key = (head.household_id, head.program_id)
        entitlement = active.get(key)
        pending = open_offers.get(key, [])
        if head.status == "eligible":
            for old in pending:
                if old.decision_id != head.decision_id:
                    old.status = "expired"  # superseded by the newer decision
            if entitlement is None:
                if head.decision_id not in offered:
                    offers.append(
                        Offer(
                            household_id=head.household_id,
                            program_id=head.program_id,
                            decision_id=head.decision_id,
                            amount_tiyn=head.amount_tiyn,
                            recipient_iin=None,  # the head of household, below
                            status="created",
                            event_received_at=households[head.household_id],
                            created_at=now,
                            expires_at=now + OFFER_WINDOW,
                        )
                    )
            elif head.decision_id not in noticed and (
                entitlement.amount_tiyn != head.amount_tiyn or entitlement.status == "ending"
            ):
                first_of_next = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
                notices.append(
                    _notice(
                        head, entitlement, "amount_changed", first_of_next, head.amount_tiyn, now
                    )
                )
                entitlement.amount_tiyn = int(head.amount_tiyn or 0)
                if entitlement.status == "ending":
                    # eligible again: the payment goes on, for the program's duration from
                    # this month as if accepted now, never ending sooner than already paid
                    entitlement.status = "active"
                    entitlement.period_end = _resumed_end(entitlement, now)
        elif head.status == "ineligible":
            for old in pending:
                old.status = "expired"  # no longer eligible: the offer is withdrawn
            if (
                entitlement is not None
                and entitlement.status == "active"
                and head.decision_id not in noticed
            ):
                # the notice period, but never past the period already granted
                effective = _end_of_next_month(today)
                if entitlement.period_end is not None:
                    effective = min(effective, entitlement.period_end)
                notices.append(_notice(head, entitlement, "eligibility_lost", effective, None, now))
                entitlement.status = "ending"
                entitlement.period_end = effective
        # needs_review: nothing changes until a case worker has looked
    recipients = heads_of(session, {o.household_id for o in offers})
    for offer in offers:
        offer.recipient_iin = recipients[offer.household_id]
        if offer.recipient_iin is not None:
            # ``notify_all`` queues its SMS below, in this transaction: inserted as notified
            # rather than updated so after (which flushed an UPDATE per offer)
            offer.status, offer.notified_at = "notified", now
    session.add_all(offers)
    session.add_all(notices)
    session.flush()
    notify_all(session, offers, notices, now)  # the outbox, in the same transaction
    return offers, notices


def _resumed_end(entitlement: Entitlement, now: dt.datetime) -> dt.date | None:
    """The last day paid of an ending entitlement whose household is eligible again: the
    program's ``duration_months`` from the month it is eligible again (as ``offers.accept``
    counts from the month of acceptance), or the end it already had when that is later; open
    (None) for a program without a duration."""
    payment = program_payment(entitlement.program_id)
    if payment is None:  # no longer published: nothing to count a duration from
        return entitlement.period_end
    _, end = entitlement_period(local_day(now), payment.get("duration_months"))
    if end is None:
        return None
    return max(end, entitlement.period_end) if entitlement.period_end is not None else end


# --- the cycle ------------------------------------------------------------------------------


def _retrying(report: CycleReport, step: Callable[[], object]) -> None:
    """Run one step of the cycle (a transaction of its own) again when it collided with
    another worker's: two workers recomputing the same household at once (two events of one
    family claimed by both) may both replace its decision heads or offer for the same decision,
    and the second commit then fails on the unique key (or PostgreSQL breaks a deadlock). Done
    again, the step reads what the other committed and writes only what is still missing —
    everything is recomputed from the facts. Without this the worker exited and its events
    waited out their lease (2 minutes) for another worker."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            step()
            return
        except (IntegrityError, OperationalError):
            if attempt == _ATTEMPTS:
                raise
            report.retries += 1
            time.sleep(0.05 * attempt)


# Cycles in a row that may leave a household another worker holds for the next one; then a
# cycle waits for it (``run_once``).
MAX_DEFERRALS = 3


@dataclass
class Deferred:
    """What a worker's cycles left for its next one (``run_once(..., deferred=)``): the
    households another worker held, when the first of their events was received, and the
    events still waiting for some of them (event -> those households)."""

    households: dict[str, dt.datetime] = field(default_factory=dict)
    events: dict[int, set[str]] = field(default_factory=dict)
    rounds: int = 0  # cycles in a row that left some

    def __bool__(self) -> bool:
        return bool(self.households)  # an event waits only for households left here

    def clear(self) -> None:
        self.households, self.events, self.rounds = {}, {}, 0


def run_once(
    engine: Engine,
    as_of: dt.date | None = None,
    limit: int = BATCH,
    now: Callable[[], dt.datetime] | None = None,
    hook: Callable[[str], None] | None = None,
    lease: dt.timedelta = LEASE,
    take_over_leases: bool = True,
    deferred: Deferred | None = None,
) -> CycleReport:
    """One cycle: apply up to ``limit`` pending events (and, with ``take_over_leases``, take
    over the events of workers whose lease ran out), recompute and reconcile.

    A household another worker is recomputing right now is done after it: with ``deferred``
    (a running worker's), by this worker's next cycle, together with that cycle's households,
    while this one ends without waiting; an event is done when all its households are. A
    cycle that claims nothing leaves them to the next one as well. After ``MAX_DEFERRALS``
    cycles in a row have left some, the next one waits for them instead, as every cycle does
    without ``deferred``."""
    clock = now or (lambda: dt.datetime.now(dt.UTC))
    report = CycleReport()
    started = time.monotonic()
    mark = started
    day = as_of or reference_date(engine)
    with Session(engine) as session, session.begin():
        report.expired = expire_due(session, clock())  # the 72 hours are up
    seen: dict[int, Touched] = {}
    applied = apply_pending(engine, limit, clock(), report, lease, seen)
    taken = take_over(engine, clock(), limit, lease) if take_over_leases else []
    report.taken_over = len(taken)
    report.phases["apply"] = round(time.monotonic() - mark, 3)
    if hook:
        hook("applied")
    work = sorted(set(applied) | set(taken))
    if not work and (not deferred or deferred.rounds < MAX_DEFERRALS):
        if deferred:
            # nothing new: what was left waits for the next events (a poll at most) rather
            # than costing a cycle of its own, unless it has waited MAX_DEFERRALS cycles
            deferred.rounds += 1
            report.deferred = len(deferred.households)
        report.seconds = round(time.monotonic() - started, 3)
        return report
    with Session(engine) as session:
        households, of_event = households_of_events(session, work, seen)
    if deferred:
        for household, moment in deferred.households.items():
            households[household] = min(households.get(household, moment), moment)
        for event_id, waiting in deferred.events.items():
            of_event[event_id] = of_event.get(event_id, set()) | waiting
        work = sorted(set(work) | set(deferred.events))
    report.households = len(households)
    with household_locks(engine) as locks:
        # The households no other worker holds are done first; those another worker is
        # recomputing right now are done after it, from the facts as they are then (its
        # recompute may have started before this cycle's facts were committed). Waiting for
        # all of them first made the second of two workers wait out the first one's whole
        # cycle whenever their batches shared a single household (most cycles at 1,000 events).
        free = locks.try_take(households)
        busy = {h: households[h] for h in sorted(households) if h not in free}
        first = {h: households[h] for h in sorted(households) if h in free}
        later = deferred is not None and deferred.rounds < MAX_DEFERRALS
        if busy and later:
            # ... by this worker's next cycle: waiting here took up to 0.7 s of a 1,000-event
            # cycle at 2,000 events/s, and doing them apart a second build and decision
            assert deferred is not None
            blocked = {e: of_event.get(e, set()) & busy.keys() for e in work}
            ready = [e for e in work if not blocked[e]]
            if first or ready:
                _recompute(engine, day, first, ready, clock, report, hook)
            deferred.households = busy
            deferred.events = {e: held for e, held in blocked.items() if held}
            deferred.rounds += 1
            report.deferred = len(busy)
        else:
            if deferred is not None:
                deferred.clear()
            if first or not busy:
                _recompute(engine, day, first, [] if busy else work, clock, report, hook)
            if busy:
                locks.release()
                mark = time.monotonic()
                locks.take(busy)
                report.phases["lock"] = round(time.monotonic() - mark, 3)
                report.waited = len(busy)
                _recompute(engine, day, busy, work, clock, report, hook)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _timed(report: CycleReport, phase: str, mark: float) -> None:
    report.phases[phase] = round(report.phases.get(phase, 0.0) + time.monotonic() - mark, 3)


def _rebuild(
    engine: Engine,
    day: dt.date,
    households: list[str],
    report: CycleReport,
    hook: Callable[[str], None] | None = None,
) -> None:
    """Step 2 of a cycle: the households' profiles rebuilt and their programs decided (the
    caller holds their locks)."""
    mark = time.monotonic()
    _retrying(report, lambda: build(engine, day, households, resident=True))
    _timed(report, "profiles", mark)
    if hook:
        hook("profiles")
    mark = time.monotonic()
    _retrying(report, lambda: decide(engine, None, households, store_all=False, resident=True))
    _timed(report, "decide", mark)
    if hook:
        hook("decided")


def _recompute(
    engine: Engine,
    day: dt.date,
    households: dict[str, dt.datetime],
    work: Sequence[int],
    clock: Callable[[], dt.datetime],
    report: CycleReport,
    hook: Callable[[str], None] | None,
) -> None:
    """Steps 2 and 3 of a cycle for ``households`` (whose locks the caller holds), and the
    events ``work`` done."""
    if households:
        _rebuild(engine, day, sorted(households), report, hook)
    mark = time.monotonic()
    made: list[int] = [0, 0]

    def finish() -> None:
        with Session(engine) as session, session.begin():
            offers, notices = reconcile(session, households, clock())
            made[:] = [len(offers), len(notices)]
            dialect = session.get_bind().dialect.name
            for condition in _keyed(dialect, RegistryEvent.id, work, BigInteger):
                session.execute(
                    update(RegistryEvent)
                    .where(condition, RegistryEvent.status == "applied")
                    .values(status="done", done_at=clock(), claimed_until=None)
                )

    _retrying(report, finish)
    report.offers += made[0]
    report.notices += made[1]
    report.done += len(work)
    _timed(report, "reconcile", mark)


def warm_up(engine: Engine | None = None, as_of: dt.date | None = None) -> int:
    """Load what every cycle uses before the first event arrives: the registry, feature,
    check and program catalogues (parsed and checked with sqlglot once per process), Babel's
    data for every language (the first offer in Kazakh waited 90 ms for it) and the
    extract-check engine. Without it a benchmark worker's first cycle took 3.3 s for 32
    events, and the events arriving meanwhile waited for it.

    With ``engine`` (a worker that runs until stopped), also a cycle's work on a few
    households (``warm_cycle``); returns how many it rebuilt."""
    from qamqor.profiles.catalogue import load_catalogue
    from qamqor.quality.checks import load_checks
    from qamqor.rules.explain import load_locale_data
    from qamqor.rules.spec import load_parameters
    from qamqor.rules.wellbeing import load_wellbeing

    sources()
    load_catalogue()
    load_checks()
    load_parameters()
    load_programs()
    load_wellbeing()
    load_locale_data()
    checks_engine()
    with compute_engine("warm-up", resident=True):  # the resident engine opens
        pass
    return 0 if engine is None else warm_cycle(engine, as_of)


# Households a starting worker recomputes before its first event (``warm_cycle``).
WARM_HOUSEHOLDS = 20


def warm_cycle(engine: Engine, as_of: dt.date | None = None) -> int:
    """Do a cycle's work once before the first event: the extract checks of every registry
    over no rows (each source's statement prepared), and the profiles and decisions of the
    first ``WARM_HOUSEHOLDS`` households by id rebuilt, as a cycle rebuilds them. On 1 M
    households the first 1,000-event cycle of a worker warmed only by ``warm_up`` took
    0.54-0.61 s of CPU (0.91-1.00 s of wall time) against 0.36-0.40 s (0.66-0.71 s) for the
    next ones; after this, 0.43-0.45 s (0.80 s): connections opened, statements compiled and
    planned, caches filled. Recomputing changes nothing that a cycle would not (everything is
    recomputed from the facts; a household whose facts changed is reconciled by the cycle that
    takes its events); it writes a profile build and a decision run for those households,
    usually with nothing changed. Returns how many households were rebuilt; 0 before the
    first country-wide build."""
    today = dt.datetime.now(dt.UTC).date()
    for code in sources():
        _typed_rows(code, [], {}, today)
    try:
        day = as_of or reference_date(engine)
    except QamqorError:
        return 0
    with Session(engine) as session:
        sample = list(
            session.scalars(
                select(ProfileHead.household_id)
                .order_by(ProfileHead.household_id)
                .limit(WARM_HOUSEHOLDS)
            )
        )
    if sample:
        with household_locks(engine) as locks:
            # waiting for a worker that holds them (another one warming up: both start on
            # the same households), as a cycle waits for its busy households
            locks.take(sample)
            _rebuild(engine, day, sample, CycleReport())
    return len(sample)


# Objects a cycle allocates before the collector's youngest generation is examined (Python's
# default: 700). A 2,500-event cycle allocates over a million (ORM rows, Arrow-to-Python
# values, sqlglot trees); at 700 the collector ran ~130 times a cycle and took ~0.1 s of its
# 1.6-1.8 s of CPU, finding little: a cycle's objects die with it by reference counting.
GC_YOUNG_THRESHOLD = 50_000


def _tune_collector() -> tuple[int, int, int]:
    """Keep what warm-up loaded (catalogues, compiled SQL, Babel's data: ~160,000 objects)
    out of the collector's scans, and let it run rarely; returns the thresholds before."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, before[1], before[2])
    return before


def pending_work(engine: Engine) -> int:
    with Session(engine) as session:
        return int(
            session.execute(
                select(func.count(RegistryEvent.id)).where(
                    or_(RegistryEvent.status == "pending", RegistryEvent.status == "applied")
                )
            ).scalar_one()
        )


def run(
    engine: Engine,
    as_of: dt.date | None = None,
    limit: int = BATCH,
    once: bool = False,
    poll_seconds: float = 0.5,
    on_cycle: Callable[[CycleReport], None] | None = None,
    lease: dt.timedelta = LEASE,
    on_ready: Callable[[float, int], None] | None = None,
) -> int:
    """Cycles until stopped (SIGTERM, SIGINT), or with ``once`` until the inbox is drained.
    ``on_ready`` hears, before the first cycle, how long warming up took and how many
    households it rebuilt. Returns the number of events done."""
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = [signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)]
    done = 0
    # a worker that runs until stopped also does a cycle's work once before the first event
    # (its first cycle took half as long again as the next ones); ``once`` drains and exits
    warming = time.monotonic()
    warmed = warm_up(None if once else engine, as_of)
    if on_ready:
        on_ready(round(time.monotonic() - warming, 2), warmed)
    collector = _tune_collector()  # as it was again when ``run`` returns (tests call it)
    # Leases run out only when a worker died (or stalled) a whole lease ago: looking for them
    # every cycle and poll cost the server 18 ms a time while the other worker's events were
    # applied (13 % of its CPU in the benchmark); a quarter lease late is soon enough.
    take_over_every = min(max(lease.total_seconds() / 4, 0.05), 30.0)
    next_take_over = 0.0
    waiter: InboxWaiter | None = None
    # households another worker held, for the next cycle (``--once`` waits for them)
    deferred = Deferred()
    try:
        # an idle worker wakes when a push commits (PostgreSQL), at the latest after a poll;
        # ``once`` stops when the inbox is empty instead
        waiter = InboxWaiter(engine, listen=not once)
        while not stopping:
            due = time.monotonic() >= next_take_over
            if due:
                next_take_over = time.monotonic() + take_over_every
            waiter.drain()  # this cycle sees what they announce
            report = run_once(
                engine,
                as_of,
                limit,
                lease=lease,
                take_over_leases=due,
                deferred=None if once else deferred,
            )
            done += report.done
            if on_cycle and (report.claimed or report.taken_over or report.done):
                on_cycle(report)
            if report.claimed == 0 and report.taken_over == 0:
                if once:
                    if pending_work(engine) == 0:
                        break
                    time.sleep(poll_seconds)  # another worker's lease: wait for it
                    continue
                waiter.wait(poll_seconds, lambda: stopping)
        if deferred:  # stopped: what the last cycles left is done before the worker exits
            deferred.rounds = MAX_DEFERRALS
            report = run_once(
                engine, as_of, 0, lease=lease, take_over_leases=False, deferred=deferred
            )
            done += report.done
            if on_cycle:
                on_cycle(report)
    finally:
        if waiter is not None:
            waiter.close()
        gc.unfreeze()
        gc.set_threshold(*collector)
        for s, handler in zip((signal.SIGTERM, signal.SIGINT), previous, strict=True):
            signal.signal(s, handler)
    return done
