"""An idle worker's wait: woken by a committed push on PostgreSQL, the poll interval on SQLite."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.proactive.wakeup import InboxWaiter
from qamqor.registry.events import INBOX_CHANNEL, accept_events
from qamqor.registry.iin import make_iin

# A valid event of the income registry: nothing else needs to exist for the inbox to take it.
IIN = next(
    i for i in (make_iin(dt.date(1985, 3, 14), "M", n) for n in range(300, 400)) if i is not None
)
EVENT = {
    "type": "income_reported",
    "subject_iin": IIN,
    "occurred_at": "2026-11-02T09:00:00+05:00",
    "payload": {
        "record_id": "INC-WAKE-1",
        "iin": IIN,
        "period": "2026-10",
        "income_type": "wage",
        "amount": "150000.00",
        "payer_bin": "",
        "updated_on": "2026-11-02",
    },
}


def _push(event_id: str, commit: bool = True) -> None:
    with session_scope() as session:
        (result,) = accept_events(
            session, "income", [{**EVENT, "event_id": event_id}], dt.datetime.now(dt.UTC)
        )
        assert result.status == "accepted", result
        if not commit:
            session.rollback()


def _woken_by_a_push(waiter: InboxWaiter, event_id: str) -> bool:
    """Whether a push committed by another thread while ``waiter`` waits (a minute) wakes it."""
    pusher = threading.Timer(0.3, _push, args=(event_id,))
    pusher.start()
    try:
        return waiter.wait(60)
    finally:
        pusher.join()


def test_with_nothing_pushed_the_wait_lasts_the_poll(engine: Engine) -> None:
    waiter = InboxWaiter(engine)
    try:
        started = time.monotonic()
        assert waiter.wait(0.2) is False
        assert time.monotonic() - started >= 0.2
        # stopping cuts it short
        assert waiter.wait(60, stopping=lambda: True) is False
    finally:
        waiter.close()


@pytest.fixture
def listening(engine: Engine) -> Iterator[InboxWaiter]:
    """A waiter listening on PostgreSQL (SQLite has no notifications: the worker polls)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no notifications: the worker polls (docs/proactive.md)")
    waiter = InboxWaiter(engine)
    try:
        yield waiter
    finally:
        waiter.close()


def test_a_committed_push_wakes_the_waiter_and_nothing_else_does(
    engine: Engine, listening: InboxWaiter
) -> None:
    # rolled back: PostgreSQL drops the notification with the transaction
    _push("rolled-back", commit=False)
    # another schema's inbox (another test, another deployment in the same database)
    with engine.begin() as conn:
        conn.execute(text(f"SELECT pg_notify('{INBOX_CHANNEL}', 'some_other_schema')"))
    assert listening.wait(0.5) is False
    # one pushed while the worker was busy, before its next cycle claimed: forgotten
    _push("before-the-cycle")
    time.sleep(0.2)
    listening.drain()
    assert listening.wait(0.3) is False
    # pushed while it waits: only a notification makes ``wait`` return True (a timeout
    # returns False), and a minute's wait would outlast the test's push by far
    assert _woken_by_a_push(listening, "while-waiting")


def test_a_lost_connection_falls_back_to_polling_and_listens_again(
    engine: Engine, listening: InboxWaiter
) -> None:
    backend = listening._conn.info.backend_pid  # its own connection, no other test's
    with engine.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend({int(backend)})"))
    assert listening.wait(0.3) is False  # the broken connection: a poll's sleep, no error
    assert _woken_by_a_push(listening, "after-reconnect")  # listening again
