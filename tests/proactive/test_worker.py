"""The worker on both databases: a birth ends as an offer, nothing is done twice, a late event
changes nothing, a lost eligibility is a notice — and a worker killed with SIGKILL at random
points and started again loses no event and duplicates nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, Engine

from qamqor.kit.db import session_scope
from qamqor.kit.errors import QamqorError
from qamqor.proactive.demo import birth_events
from qamqor.proactive.models import Entitlement, Notice, Offer
from qamqor.proactive.worker import run, run_once
from qamqor.profiles.builder import build
from qamqor.registry.events import accept_events
from qamqor.registry.models import RegistryEvent
from qamqor.rules.service import decide
from qamqor.synth import generate
from tests.registry.builders import ingest_all

AS_OF = dt.date(2026, 10, 1)
TODAY = dt.date(2026, 11, 29)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def extracts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, 400, seed=23, as_of=AS_OF, chunk_households=400)
    return out


@pytest.fixture
def decided(engine: Engine, extracts: Path) -> Engine:
    ingest_all(engine, [extracts], TODAY)
    build(engine, AS_OF)
    decide(engine)
    return engine


def _push(events: list[dict[str, Any]]) -> None:
    with session_scope() as session:
        for event in events:
            event = dict(event)
            source = event.pop("source")
            (result,) = accept_events(session, source, [event], dt.datetime.now(dt.UTC))
            assert result.status in ("accepted", "duplicate"), result


def _pushed_birth() -> tuple[str, list[dict[str, Any]]]:
    """The demo's birth in a low-income family, pushed to the inbox: (household, events)."""
    with session_scope() as session:
        household, events = birth_events(session, dt.date(2026, 9, 20))
    _push(events)
    return household, events


def _birth_in(household: str, born: dt.date, serial_from: int) -> list[dict[str, Any]] | None:
    """The demo's events of a child born into ``household`` (not pushed); None when the
    household has no head today to register the child with."""
    from qamqor.proactive import demo

    real = demo._candidate
    demo._candidate = lambda _s: household  # type: ignore[assignment]
    try:
        with session_scope() as session:
            return birth_events(session, born, serial_from)[1]
    except QamqorError:
        return None
    finally:
        demo._candidate = real  # type: ignore[assignment]


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def _until_waiting(other: Connection, key: int, worker: Thread, found: list[Any]) -> None:
    """Return once ``worker`` waits for the household lock ``key`` that ``other`` holds."""
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
    )
    deadline = time.monotonic() + 60
    while not other.execute(waiting, {"high": high, "low": low}).scalar_one():
        assert time.monotonic() < deadline, "the worker never waited for the lock"
        assert worker.is_alive(), found
        time.sleep(0.05)
    other.commit()


def test_a_birth_in_a_poor_family_ends_as_an_offer(decided: Engine) -> None:
    household, events = _pushed_birth()
    report = run_once(decided)
    assert (report.claimed, report.applied, report.done) == (2, 2, 2)
    assert report.households >= 1 and report.offers >= 1
    with session_scope() as session:
        offers = session.scalars(select(Offer).where(Offer.household_id == household)).all()
        assert "asp" in {o.program_id for o in offers}
        asp = next(o for o in offers if o.program_id == "asp")
        assert asp.amount_tiyn and asp.amount_tiyn > 0
        assert asp.expires_at - asp.created_at == dt.timedelta(hours=72)
        assert asp.recipient_iin and asp.event_received_at <= asp.created_at
        statuses = session.scalars(select(RegistryEvent.status)).all()
        assert statuses == ["done", "done"]
    # the child is a fact of both registries now, in a batch of the events
    child = events[0]["subject_iin"]
    assert _count(decided, f"SELECT count(*) FROM fact_population WHERE iin = '{child}'") == 1
    assert _count(decided, f"SELECT count(*) FROM fact_household WHERE iin = '{child}'") == 1
    # the offer is in the outbox, and the metrics show the pipeline
    from fastapi.testclient import TestClient

    from qamqor.web.app import create_app

    assert _count(decided, "SELECT count(*) FROM proactive_notification") >= 1
    metrics = TestClient(create_app()).get("/metrics")
    assert metrics.status_code == 200
    body = metrics.text
    assert "qamqor_inbox_pending_events 0" in body
    assert 'qamqor_inbox_events{status="done"} 2' in body
    assert f"qamqor_event_to_offer_latency_seconds_count {len(offers)}" in body
    assert 'qamqor_event_to_offer_latency_seconds{quantile="0.99"}' in body
    # again: nothing new, and the same events pushed again are duplicates
    assert run_once(decided).offers == 0
    _push(events)
    again = run_once(decided)
    assert again.claimed == 0 and again.offers == 0
    assert _count(decided, "SELECT count(*) FROM proactive_offer") == len(offers)


def test_a_late_event_changes_nothing_and_a_lost_eligibility_is_a_notice(
    decided: Engine,
) -> None:
    household, events = _pushed_birth()
    run_once(decided)
    with session_scope() as session:
        offer = session.scalars(
            select(Offer).where(Offer.household_id == household, Offer.program_id == "asp")
        ).one()
        # accepted (the offers module does this for the citizen; here directly)
        offer.status = "accepted"
        session.add(
            Entitlement(
                offer_id=offer.id,
                household_id=household,
                program_id="asp",
                amount_tiyn=offer.amount_tiyn or 0,
                period_start=TODAY,
                period_end=None,
                channel="bank",
                purpose="cash",
                status="active",
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    # the registry says the birth was recorded wrongly an hour earlier: an older update of the
    # same record arriving later is superseded
    late = dict(events[1], event_id=events[1]["event_id"] + "-LATE")
    late["payload"] = dict(late["payload"], updated_on="2026-09-01")
    _push([late])
    report = run_once(decided)
    assert (report.claimed, report.superseded, report.offers) == (1, 1, 0)
    # the child moves out again: the family is above the line, the payment ends after notice
    gone = dict(events[1], event_id=events[1]["event_id"] + "-OUT", type="member_moved_out")
    gone["payload"] = dict(gone["payload"], member_to="2026-09-25", updated_on="2026-09-25")
    _push([gone])
    report = run_once(decided)
    assert report.notices == 1
    with session_scope() as session:
        notice = session.scalars(select(Notice).where(Notice.household_id == household)).one()
        assert notice.kind == "eligibility_lost" and notice.program_id == "asp"
        entitlement = session.get(Entitlement, notice.entitlement_id)
        assert entitlement is not None and entitlement.status == "ending"
        assert entitlement.period_end == notice.effective_on > TODAY
    assert run_once(decided).notices == 0


def _accept_directly(household: str, period_end: dt.date | None) -> Entitlement:
    """The household's АСП offer accepted (the offers module does this for the citizen)."""
    with session_scope() as session:
        offer = session.scalars(
            select(Offer).where(Offer.household_id == household, Offer.program_id == "asp")
        ).one()
        offer.status = "accepted"
        entitlement = Entitlement(
            offer_id=offer.id,
            household_id=household,
            program_id="asp",
            amount_tiyn=offer.amount_tiyn or 0,
            period_start=TODAY.replace(day=1),
            period_end=period_end,
            channel="bank",
            purpose="cash",
            status="active",
            created_at=dt.datetime.now(dt.UTC),
        )
        session.add(entitlement)
        session.flush()
        session.expunge(entitlement)
        return entitlement


def test_an_entitlement_is_never_paid_past_its_period_and_resumes_for_the_programs_duration(
    decided: Engine,
) -> None:
    from qamqor.proactive.notify import local_day
    from qamqor.proactive.offers import entitlement_period

    household, events = _pushed_birth()
    run_once(decided)
    # a period that ends before the notice period would (the end of next month)
    today = dt.datetime.now(dt.UTC).date()
    notice_end = (today.replace(day=1) + dt.timedelta(days=62)).replace(day=1) - dt.timedelta(
        days=1
    )
    period_end = notice_end - dt.timedelta(days=10)
    entitlement = _accept_directly(household, period_end)
    gone = dict(events[1], event_id=events[1]["event_id"] + "-OUT", type="member_moved_out")
    gone["payload"] = dict(gone["payload"], member_to="2026-09-25", updated_on="2026-09-25")
    _push([gone])
    assert run_once(decided).notices == 1
    with session_scope() as session:
        notice = session.scalars(select(Notice).where(Notice.household_id == household)).one()
        assert (notice.kind, notice.effective_on) == ("eligibility_lost", period_end)
        ending = session.get(Entitlement, entitlement.id)
        assert ending is not None
        # paid to the end of its own period, not to the end of the notice period
        assert (ending.status, ending.period_end) == ("ending", period_end)
    # the child is back: eligible again, the payment goes on for the program's 3 months
    back = dict(events[1], event_id=events[1]["event_id"] + "-BACK")
    back["payload"] = dict(back["payload"], updated_on="2026-09-28")
    _push([back])
    assert run_once(decided).notices == 1
    with session_scope() as session:
        asp_offers = session.scalars(
            select(Offer.id).where(Offer.household_id == household, Offer.program_id == "asp")
        ).all()
        assert len(asp_offers) == 1  # paid already: no second offer
        notices = session.scalars(
            select(Notice).where(Notice.household_id == household).order_by(Notice.id)
        ).all()
        assert [n.kind for n in notices] == ["eligibility_lost", "amount_changed"]
        resumed = session.get(Entitlement, entitlement.id)
        assert resumed is not None
        _, three_months = entitlement_period(local_day(dt.datetime.now(dt.UTC)), 3)
        assert three_months is not None and three_months > period_end
        assert (resumed.status, resumed.period_end) == ("active", three_months)
        assert resumed.period_start == entitlement.period_start


def test_an_amount_change_keeps_the_period(decided: Engine) -> None:
    from qamqor.proactive.worker import reconcile

    household, _ = _pushed_birth()
    run_once(decided)
    period_end = dt.date(2027, 1, 31)
    entitlement = _accept_directly(household, period_end)
    with session_scope() as session:
        row = session.get(Entitlement, entitlement.id)
        assert row is not None
        row.amount_tiyn += 100  # paid more than the decision says now
    with session_scope() as session:
        offers, notices = reconcile(session, {household: dt.datetime.now(dt.UTC)}, _now())
        assert offers == [] and [n.kind for n in notices] == ["amount_changed"]
        changed = session.get(Entitlement, entitlement.id)
        assert changed is not None
        assert (changed.status, changed.period_end) == ("active", period_end)
        assert changed.amount_tiyn == notices[0].amount_after_tiyn


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_heads_of_many_households_are_those_of_each(decided: Engine) -> None:
    from qamqor.privacy.households import head_of, heads_of

    with session_scope() as session:
        ids = session.scalars(
            text("SELECT DISTINCT household_id FROM fact_household ORDER BY 1 LIMIT 40")
        ).all()
        wanted = [*ids, "HH-NOBODY"]
        one_by_one = {h: head_of(session, h) for h in wanted}
        assert heads_of(session, wanted) == one_by_one
        assert one_by_one["HH-NOBODY"] is None
        assert sum(v is not None for v in one_by_one.values()) >= 30


def test_one_household_is_recomputed_by_one_worker_at_a_time(decided: Engine) -> None:
    """A worker that finds a household locked by another does its other households first,
    then waits for that one and recomputes it from the facts as they are then — those the
    other applied meanwhile included."""
    if decided.dialect.name != "postgresql":
        pytest.skip("SQLite runs one worker: no household locks (docs/proactive.md)")
    import threading

    from qamqor.proactive.locks import household_lock_key
    from qamqor.proactive.worker import CycleReport, apply_pending
    from qamqor.profiles.models import ProfileBuild, ProfileHead

    with session_scope() as session:
        household, (birth, moved_in) = birth_events(session, dt.date(2026, 9, 20))
        free = session.scalars(
            text("SELECT household_id FROM profile_head WHERE household_id <> :h ORDER BY 1"),
            {"h": household},
        ).all()
    free_event = None
    for other_household in free:  # a second household, nobody holds it
        events = _birth_in(other_household, dt.date(2026, 9, 21), serial_from=5000)
        if events is not None:
            free_event = events[1]
            break
    assert free_event is not None
    started = _now()
    key = household_lock_key(household)
    low = key & 0xFFFFFFFF
    found: list[CycleReport] = []
    with decided.connect() as other:  # another worker, holding the household
        other.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        other.commit()
        _push([moved_in, free_event])
        worker = threading.Thread(target=lambda: found.append(run_once(decided)))
        worker.start()
        _until_waiting(other, key, worker, found)
        with session_scope() as session:  # the free household is done already
            head = session.get(ProfileHead, other_household)
            assert head is not None
            done_first = session.get(ProfileBuild, head.build_id)
            assert done_first is not None and done_first.started_at >= started
            assert done_first.households == 1
        # meanwhile the other worker applies the birth itself
        _push([birth])
        assert apply_pending(decided, 10, _now(), CycleReport()) != []
        with session_scope() as session:
            newest = session.scalar(select(func.max(RegistryEvent.batch_id)))
            assert (
                session.scalar(select(func.count(Offer.id)).where(Offer.household_id == household))
                == 0
            )
        time.sleep(0.3)
        assert worker.is_alive()  # still waiting
        other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        other.commit()
        worker.join(timeout=120)
    assert not worker.is_alive()
    (report,) = found
    assert (report.applied, report.households, report.done, report.waited) == (2, 2, 2, 1)
    assert report.phases["lock"] >= 0.3
    with session_scope() as session:
        head = session.get(ProfileHead, household)
        assert head is not None
        build = session.get(ProfileBuild, head.build_id)
        # its profile was built from the facts the other worker applied while it waited
        assert build is not None and build.max_batch_id >= newest
        assert (
            "asp"
            in session.scalars(
                select(Offer.program_id).where(Offer.household_id == household)
            ).all()
        )
    # the lock connection went back to the pool holding nothing
    with decided.connect() as conn:
        held = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid::bigint = :low"
            ),
            {"low": low},
        ).scalar_one()
        assert held == 0


def _worker_url(engine: Engine) -> str:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        url += f"?options=-csearch_path%3D{schema}"
    return url


def test_a_running_worker_leaves_a_held_household_to_its_next_cycle(decided: Engine) -> None:
    """A running worker (``deferred``) does not wait for a household another worker holds:
    it does the others and leaves that one (and the events waiting for it) to its next
    cycle, also when that one claims nothing; the cycle after ``MAX_DEFERRALS`` in a row
    that left it waits for it."""
    if decided.dialect.name != "postgresql":
        pytest.skip("SQLite runs one worker: no household locks (docs/proactive.md)")
    import threading

    from qamqor.proactive.locks import household_lock_key
    from qamqor.proactive.worker import MAX_DEFERRALS, CycleReport, Deferred

    with session_scope() as session:
        household, held_events = birth_events(session, dt.date(2026, 9, 20))
        others = session.scalars(
            text("SELECT household_id FROM profile_head WHERE household_id <> :h ORDER BY 1"),
            {"h": household},
        ).all()
    free_events: list[list[dict[str, Any]]] = []
    for serial, candidate in enumerate(others):  # births in households nobody holds
        events = _birth_in(candidate, dt.date(2026, 9, 21), serial_from=5000 + 10 * serial)
        if events is not None:
            free_events.append(events)
        if len(free_events) == MAX_DEFERRALS + 1:
            break
    key = household_lock_key(household)

    def statuses() -> dict[str, int]:
        with decided.connect() as conn:
            return dict(
                conn.execute(text("SELECT status, count(*) FROM registry_event GROUP BY 1")).all()
            )

    deferred = Deferred()
    with decided.connect() as other:  # another worker, holding the household
        other.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        other.commit()
        _push(held_events + free_events[0])
        started = time.monotonic()
        report = run_once(decided, deferred=deferred)
        assert time.monotonic() - started < 60
        assert (report.claimed, report.deferred, report.waited, report.done) == (4, 1, 0, 2)
        assert list(deferred.households) == [household] and len(deferred.events) == 2
        assert statuses() == {"done": 2, "applied": 2}
        # while the other holds it, the next cycles with events of their own leave it again,
        # the MAX_DEFERRALS-th in a row no more: that one waits (here: until it is let go)
        for rounds in range(1, MAX_DEFERRALS):
            _push(free_events[rounds])
            report = run_once(decided, deferred=deferred)
            assert (report.deferred, report.done, deferred.rounds) == (1, 2, rounds + 1)
        _push(free_events[MAX_DEFERRALS])
        found: list[CycleReport] = []
        worker = threading.Thread(target=lambda: found.append(run_once(decided, deferred=deferred)))
        worker.start()
        _until_waiting(other, key, worker, found)
        other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        other.commit()
        worker.join(timeout=120)
    assert not worker.is_alive()
    (report,) = found
    assert (report.deferred, report.waited, report.done) == (0, 1, 4)  # its two, the two left
    assert not deferred and deferred.rounds == 0
    assert statuses() == {"done": 2 * (MAX_DEFERRALS + 2)}
    with session_scope() as session:
        assert (
            "asp"
            in session.scalars(
                select(Offer.program_id).where(Offer.household_id == household)
            ).all()
        )
    # a cycle that claims nothing leaves it for the next events too, MAX_DEFERRALS times
    deferred.households = {household: dt.datetime.now(dt.UTC)}
    for rounds in range(1, MAX_DEFERRALS + 1):
        report = run_once(decided, deferred=deferred)
        assert (report.claimed, report.deferred, report.households) == (0, 1, 0)
        assert deferred.rounds == rounds
    report = run_once(decided, deferred=deferred)
    assert (report.claimed, report.deferred, report.households) == (0, 0, 1)
    assert not deferred


@pytest.mark.slow
def test_a_worker_killed_at_random_points_loses_nothing_and_doubles_nothing(
    decided: Engine, tmp_path: Path
) -> None:
    # many households get a child: 2 events each
    with session_scope() as session:
        rows = session.execute(
            text("SELECT DISTINCT household_id FROM profile_head ORDER BY 1 LIMIT 60")
        ).all()
    pushed: list[dict[str, Any]] = []
    for i, (household,) in enumerate(rows):
        day = dt.date(2026, 9, 1) + dt.timedelta(days=i % 20)
        pushed += _birth_in(household, day, serial_from=1000 + 10 * i) or []
    _push(pushed)
    env = {
        **os.environ,
        "QAMQOR_DATABASE_URL": _worker_url(decided),
        "QAMQOR_VAR_DIR": str(tmp_path / "var"),
    }
    command = [sys.executable, "-m", "qamqor", "worker", "--batch", "7", "--lease-seconds", "1"]
    rng = random.Random(7)
    kills = 0
    done_after_kill = []
    for _ in range(6):
        worker = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 4.0))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
        done_after_kill.append(
            _count(decided, "SELECT count(*) FROM registry_event WHERE status = 'done'")
        )
    # the kills fell while there was work: not everything was done when they struck
    assert done_after_kill[0] < len(pushed), done_after_kill
    # and once more, to the end
    time.sleep(1.2)  # the killed worker's lease runs out
    subprocess.run([*command, "--once"], env=env, cwd=ROOT, check=True, timeout=600)
    assert kills == 6
    with session_scope() as session:
        statuses = dict(
            session.execute(
                select(RegistryEvent.status, func.count()).group_by(RegistryEvent.status)
            ).all()
        )
        assert statuses == {"done": len(pushed)}, statuses
        # every event is exactly one fact
        for source, table in (("population", "fact_population"), ("household", "fact_household")):
            ids = [
                r[0]
                for r in session.execute(
                    select(RegistryEvent.id).where(RegistryEvent.source == source)
                ).all()
            ]
            lines = session.execute(
                text(
                    f"SELECT f.line_no FROM {table} f JOIN registry_batch b ON b.id = f.batch_id "
                    "WHERE b.format = 'event'"
                )
            ).all()
            assert sorted(r[0] for r in lines) == sorted(ids)
        # no duplicate offer: one per decision, and at most one open per household and program
        open_per_key = session.execute(
            select(Offer.household_id, Offer.program_id, func.count())
            .where(Offer.status.in_(("created", "notified")))
            .group_by(Offer.household_id, Offer.program_id)
            .having(func.count() > 1)
        ).all()
        assert open_per_key == []
        assert session.scalar(select(func.count(Offer.id))) > 0
    # a worker run on what is left finds nothing to do
    assert run(decided, once=True) == 0


def test_the_households_of_applied_events_are_found_without_reading_them_again(
    decided: Engine,
) -> None:
    from qamqor.proactive.worker import CycleReport, Touched, affected_households, apply_pending

    household, events = _pushed_birth()
    seen: dict[int, Touched] = {}
    applied = apply_pending(decided, 10, _now(), CycleReport(), seen=seen)
    assert sorted(seen) == applied and len(applied) == len(events)
    with session_scope() as session:
        from_memory = affected_households(session, applied, seen)
        from_inbox = affected_households(session, applied)  # as for events taken over
        half = affected_households(session, applied, {applied[0]: seen[applied[0]]})
    assert from_memory == from_inbox == half
    assert household in from_memory


def test_the_command_takes_the_workers_default_batch() -> None:
    import inspect

    from qamqor.proactive import worker
    from qamqor.proactive.worker_cli import worker_command

    default = inspect.signature(worker_command).parameters["batch"].default
    assert default == worker.BATCH == inspect.signature(run).parameters["limit"].default


def test_a_running_worker_looks_for_lapsed_leases_at_start_and_then_every_quarter_lease(
    decided: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qamqor.proactive import worker

    _, events = _pushed_birth()
    looks: list[bool] = []
    real = worker.run_once

    def counted(*args: Any, **kwargs: Any) -> worker.CycleReport:
        looks.append(kwargs["take_over_leases"])
        return real(*args, **kwargs)

    monkeypatch.setattr(worker, "run_once", counted)
    # one event a cycle, a lease of an hour: the first cycle looks, the rest do not
    assert run(decided, limit=1, once=True, lease=dt.timedelta(hours=1)) == len(events)
    assert looks[0] is True and not any(looks[1:]) and len(looks) >= 2
    # a lease so short that a quarter of it has passed by every cycle: every cycle looks
    looks.clear()
    _push([{**e, "event_id": e["event_id"] + "-again"} for e in events])
    assert run(decided, limit=1, once=True, lease=dt.timedelta(seconds=0.2)) == len(events)
    assert all(looks)


@pytest.mark.parametrize("until", ["drained", "stopped"])
def test_several_workers_share_the_inbox_on_postgresql(
    decided: Engine, tmp_path: Path, until: str
) -> None:
    """Two workers, each claiming a few events a cycle: ``--once`` ones, or ones that run until
    stopped (they leave a household the other holds to their next cycle) stopped with SIGTERM
    once the inbox is drained."""
    if decided.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: one worker (docs/proactive.md)")
    pushed: list[dict[str, Any]] = []
    with session_scope() as session:
        rows = session.execute(
            text("SELECT DISTINCT household_id FROM profile_head ORDER BY 1 DESC LIMIT 40")
        ).all()
    moves: list[list[dict[str, Any]]] = []  # the move-ins of two children a household
    for i, (household,) in enumerate(rows):
        day = dt.date(2026, 9, 1) + dt.timedelta(days=i % 20)
        events = _birth_in(household, day, serial_from=3000 + 10 * i)
        if events is None:
            continue
        if until == "stopped" and len(moves) < 8:
            twin = _birth_in(household, day + dt.timedelta(days=1), serial_from=3005 + 10 * i)
            assert twin is not None
            moves.append([events.pop(1), twin.pop(1)])
            events += twin
        pushed += events
    # four households' first move-ins, then their second ones: the two workers' first
    # cycles (four events each) recompute the same households at once
    front = []
    for block in range(0, len(moves), 4):
        front += [m[0] for m in moves[block : block + 4]] + [m[1] for m in moves[block : block + 4]]
    pushed = front + pushed
    _push(pushed)
    env = {
        **os.environ,
        "QAMQOR_DATABASE_URL": _worker_url(decided),
        "QAMQOR_VAR_DIR": str(tmp_path / "var"),
    }
    command = [sys.executable, "-m", "qamqor", "worker", "--json", "--batch", "4"]
    if until == "drained":
        command.append("--once")
    workers = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    if until == "stopped":
        deadline = time.monotonic() + 600
        left = "SELECT count(*) FROM registry_event WHERE status <> 'done'"
        while _count(decided, left):
            assert time.monotonic() < deadline, "the workers did not drain the inbox"
            assert all(w.poll() is None for w in workers)
            time.sleep(0.2)
        for w in workers:
            w.send_signal(signal.SIGTERM)
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers)
    claimed = [
        sum(json.loads(line)["claimed"] for line in out.splitlines() if line.strip())
        for out in outputs
    ]
    # both took part, and together they claimed every event exactly once
    assert all(c > 0 for c in claimed), claimed
    assert sum(claimed) == len(pushed)
    with session_scope() as session:
        statuses = dict(
            session.execute(
                select(RegistryEvent.status, func.count()).group_by(RegistryEvent.status)
            ).all()
        )
        assert statuses == {"done": len(pushed)}
        lines = session.execute(
            text(
                "SELECT f.line_no FROM fact_household f JOIN registry_batch b "
                "ON b.id = f.batch_id WHERE b.format = 'event'"
            )
        ).all()
        assert len(lines) == len({r[0] for r in lines}) == len(pushed) // 2
        doubled = session.execute(
            text(
                "SELECT household_id, program_id FROM proactive_offer "
                "WHERE status IN ('created', 'notified') GROUP BY 1, 2 HAVING count(*) > 1"
            )
        ).all()
        assert doubled == []


def test_a_step_that_collides_with_another_worker_is_done_again() -> None:
    from sqlalchemy.exc import IntegrityError

    from qamqor.proactive.worker import _ATTEMPTS, CycleReport, _retrying

    collision = IntegrityError("INSERT INTO decision_head ...", {}, Exception("duplicate key"))
    tries: list[int] = []

    def collides_twice() -> None:
        tries.append(1)
        if len(tries) <= 2:
            raise collision

    report = CycleReport()
    _retrying(report, collides_twice)
    assert (len(tries), report.retries) == (3, 2)

    def always_collides() -> None:
        raise collision

    report = CycleReport()
    with pytest.raises(IntegrityError):
        _retrying(report, always_collides)
    assert report.retries == _ATTEMPTS - 1

    def fails() -> None:
        raise ValueError("not a collision")

    report = CycleReport()
    with pytest.raises(ValueError, match="not a collision"):
        _retrying(report, fails)
    assert report.retries == 0


def test_an_idle_worker_starts_its_cycle_when_events_arrive_on_postgresql(
    decided: Engine, tmp_path: Path
) -> None:
    if decided.dialect.name != "postgresql":
        pytest.skip("SQLite has no notifications: the worker polls (docs/proactive.md)")
    env = {
        **os.environ,
        "QAMQOR_DATABASE_URL": _worker_url(decided),
        "QAMQOR_VAR_DIR": str(tmp_path / "var"),
    }
    # a poll of ten minutes: only the notification of a push can start a cycle sooner
    command = [sys.executable, "-m", "qamqor", "worker", "--poll-seconds", "600"]
    log = tmp_path / "worker.err"
    worker = subprocess.Popen(command, env=env, cwd=ROOT, stderr=log.open("w"))
    try:

        def done_within(count: int, seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                done = "SELECT count(*) FROM registry_event WHERE status = 'done'"
                if _count(decided, done) == count:
                    return True
                time.sleep(0.2)
            return False

        _, first = _pushed_birth()  # done by the worker's first cycle, or woken for
        assert done_within(len(first), 300)
        # now it is idle, waiting: the next push must wake it
        with session_scope() as session:
            household = session.execute(
                text("SELECT household_id FROM profile_head ORDER BY household_id LIMIT 1")
            ).scalar_one()
        second = _birth_in(household, dt.date(2026, 9, 21), serial_from=4000)
        assert second is not None
        _push(second)
        assert done_within(len(first) + len(second), 120)
    finally:
        worker.send_signal(signal.SIGTERM)
        # a stop is seen within a second of waiting, not after the ten-minute poll
        assert worker.wait(timeout=60) == 0
    # it said when it was ready, having rebuilt a few households first
    assert re.search(
        r"worker ready: warmed up in [0-9.]+ s \(20 households rebuilt\)", log.read_text()
    )


def test_a_starting_worker_rebuilds_a_few_households_and_changes_nothing(decided: Engine) -> None:
    from qamqor.proactive import worker

    tables = [
        "profile_version",
        "decision",
        "decision_head",
        "proactive_offer",
        "proactive_notice",
        "proactive_notification",
        "registry_event",
    ]

    def rows() -> dict[str, int]:
        return {t: _count(decided, f"SELECT count(*) FROM {t}") for t in tables}

    before, builds = rows(), _count(decided, "SELECT count(*) FROM profile_build")
    assert worker.warm_up(decided, AS_OF) == worker.WARM_HOUSEHOLDS
    # the households' profiles and decisions are what they were: nothing new, nothing offered
    assert rows() == before
    with decided.connect() as conn:
        scope, households, changed = conn.execute(
            text("SELECT scope, households, changed FROM profile_build ORDER BY id DESC LIMIT 1")
        ).one()
    assert (scope, households, changed) == ("households", worker.WARM_HOUSEHOLDS, 0)
    assert _count(decided, "SELECT count(*) FROM profile_build") == builds + 1
    # and the events that come next are done as before
    _pushed_birth()
    assert run_once(decided, AS_OF).offers >= 1


def test_a_worker_that_drains_and_exits_does_not_warm_up(decided: Engine) -> None:
    from qamqor.proactive import worker

    builds = _count(decided, "SELECT count(*) FROM profile_build")
    ready: list[tuple[float, int]] = []
    assert run(decided, as_of=AS_OF, once=True, on_ready=lambda s, n: ready.append((s, n))) == 0
    assert len(ready) == 1 and ready[0][1] == 0
    assert _count(decided, "SELECT count(*) FROM profile_build") == builds
    # and without an engine warming up loads the catalogues only
    assert worker.warm_up() == 0


def test_nothing_to_warm_up_before_the_first_build(engine: Engine) -> None:
    from qamqor.proactive import worker

    assert worker.warm_cycle(engine) == 0
    assert _count(engine, "SELECT count(*) FROM profile_build") == 0


def test_a_worker_tunes_the_collector_while_it_runs_and_restores_it(engine: Engine) -> None:
    import gc

    from qamqor.proactive.worker import GC_YOUNG_THRESHOLD

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    seen: list[tuple[int, int, int]] = []
    real = run_once

    def spying(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.get_threshold())
        return real(*args, **kwargs)

    import qamqor.proactive.worker as worker

    worker.run_once = spying  # type: ignore[assignment]
    try:
        assert run(engine, as_of=AS_OF, once=True) == 0  # an empty inbox: one cycle
    finally:
        worker.run_once = real  # type: ignore[assignment]
    assert seen and seen[0][0] == GC_YOUNG_THRESHOLD
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, frozen)
