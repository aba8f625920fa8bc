"""Waking an idle worker when events arrive, instead of at its next poll.

On PostgreSQL a push that adds events to the inbox sends ``NOTIFY`` on ``INBOX_CHANNEL`` in its
own transaction (``registry.events``), which PostgreSQL delivers when it commits; an idle worker
``LISTEN``s on a connection of its own and starts its next cycle as soon as one arrives. Polling
alone made an event wait for half the poll interval on average, the whole of it at worst:
with the default 0.5 s, up to half of the second that event → offer may take. The poll stays
as the timeout, so a lost connection or a missed notification costs a poll, never an event:
the inbox itself, not the notification, is what the worker reads.

The payload is the pushing session's schema, so that workers on other schemas of the same
database (the tests run each in a schema of its own) are not woken. SQLite has no
notifications: a worker there sleeps out the poll interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from qamqor.kit.columnar import postgres_uri
from qamqor.registry.events import INBOX_CHANNEL

log = logging.getLogger(__name__)


class InboxWaiter:
    """``wait(seconds)``: until events may have arrived, or ``seconds`` have passed."""

    def __init__(self, engine: Engine, listen: bool = True) -> None:
        postgres = listen and engine.dialect.name == "postgresql"
        self._uri = postgres_uri(engine) if postgres else None
        self._conn: Any = None
        self._schema = ""
        self._warned = False  # about a lost connection, once until it is back
        if self._uri is not None:
            self._listen()

    def _listen(self) -> None:
        import psycopg

        assert self._uri is not None
        conn = psycopg.connect(self._uri, autocommit=True)
        try:
            row = conn.execute("SELECT current_schema()").fetchone()
            self._schema = str(row[0]) if row else ""
            conn.execute(f"LISTEN {INBOX_CHANNEL}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._warned = False

    def wait(self, seconds: float, stopping: Callable[[], bool] = lambda: False) -> bool:
        """True when woken by a push to this schema's inbox (committed since the last
        ``drain``), False when ``seconds`` passed without one, or ``stopping()`` turned true
        (looked at every second at least: a signal does not cut a wait short)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not stopping():
            if self._slice(min(left, 1.0)):
                return True
        return False

    def _slice(self, seconds: float) -> bool:
        if self._uri is None:
            time.sleep(seconds)
            return False
        deadline = time.monotonic() + seconds
        try:
            if self._conn is None:
                self._listen()  # again, after a lost connection
            for notice in self._conn.notifies(timeout=max(deadline - time.monotonic(), 0.0)):
                if notice.payload == self._schema:
                    return True
            return False
        except Exception as error:  # the server restarted, the connection broke: poll instead
            self._lost(error)
            time.sleep(max(deadline - time.monotonic(), 0.0))
            return False

    def drain(self) -> None:
        """Forget the notifications already received: called before a cycle claims events, as
        that cycle sees every event they announce (waking for them after it would only run an
        empty cycle)."""
        if self._conn is None:
            return
        try:
            for _ in self._conn.notifies(timeout=0):
                pass
        except Exception as error:
            self._lost(error)

    def _lost(self, error: Exception) -> None:
        if not self._warned:
            log.warning("inbox notifications lost (%s); polling until they are back", error)
            self._warned = True
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
