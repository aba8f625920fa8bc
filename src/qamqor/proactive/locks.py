"""One household recomputed by one worker at a time: PostgreSQL advisory locks per household.

Two workers recomputing the same household at once (two events of one family claimed by both)
could otherwise commit the decisions made from the older profile last, and they stood until the
household's next event. See ``HouseholdLocks``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine


def household_lock_key(household_id: str) -> int:
    """The household's PostgreSQL advisory-lock key: 64 bits of BLAKE2b of its id (two ids
    sharing a key only make one wait for the other)."""
    digest = hashlib.blake2b(f"household:{household_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class HouseholdLocks:
    """The households' advisory locks a worker holds (PostgreSQL; with SQLite, which runs one
    worker, every household is free and nothing is locked): one household is recomputed and
    reconciled by one worker at a time. Without them two workers recomputing it at once could
    commit the decisions made from the older profile last, and they stood until its next
    event.

    The locks are session-level, on a connection of their own (no transaction stays open
    while the cycle runs). ``try_take`` takes what is free without waiting; ``take`` waits for
    the rest, holding nothing else meanwhile and taking them in key order in one statement, so
    two workers cannot deadlock. A worker killed meanwhile loses its connection and its locks
    with it."""

    def __init__(self, connection: Connection | None) -> None:
        self._connection = connection

    def try_take(self, household_ids: Iterable[str]) -> set[str]:
        """The households whose locks were free and are now held."""
        wanted = set(household_ids)
        if self._connection is None or not wanted:
            return wanted
        keys = _lock_keys(wanted)
        taken = set(
            self._connection.exec_driver_sql(
                "SELECT k FROM unnest(%(keys)s::bigint[]) AS k WHERE pg_try_advisory_lock(k)",
                {"keys": sorted(keys)},
            ).scalars()
        )
        return {h for key, households in keys.items() if key in taken for h in households}

    def take(self, household_ids: Iterable[str]) -> None:
        """Wait for the households' locks; the caller holds none (``release`` first)."""
        keys = sorted(_lock_keys(household_ids))
        if self._connection is None or not keys:
            return
        # the sorted subquery feeds the aggregate in order: the locks are taken in key order
        self._connection.exec_driver_sql(
            "SELECT count(pg_advisory_lock(k)) FROM "
            "(SELECT unnest(%(keys)s::bigint[]) AS k ORDER BY 1) AS wanted",
            {"keys": keys},
        )

    def release(self) -> None:
        if self._connection is not None:
            self._connection.exec_driver_sql("SELECT pg_advisory_unlock_all()")


def _lock_keys(household_ids: Iterable[str]) -> dict[int, list[str]]:
    keys: dict[int, list[str]] = defaultdict(list)
    for household in household_ids:
        keys[household_lock_key(household)].append(household)
    return keys


@contextmanager
def household_locks(engine: Engine) -> Iterator[HouseholdLocks]:
    """Household locks for one cycle, all released at the end, on error too."""
    if engine.dialect.name != "postgresql":
        yield HouseholdLocks(None)
        return
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield HouseholdLocks(connection)
    finally:
        try:
            connection.exec_driver_sql("SELECT pg_advisory_unlock_all()")
        except Exception:
            connection.invalidate()  # never back to the pool with locks held
            raise
        finally:
            connection.close()
