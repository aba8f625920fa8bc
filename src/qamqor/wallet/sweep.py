"""The sweep: what expired or lapsed goes back to its program.

``sweep`` first voids the authorisations whose timeout passed (their reservations would
otherwise keep a tranche open), then closes every tranche due: one that expired, or a voucher
nobody activated in its month (``lapsed``). What a closed tranche still holds moves from the
household's wallet to ``returns:<program>`` by a ``sweep`` transfer naming the tranche, so the
program's books show it came back.

Each household's wallet accounts and tranches are locked in the one order payments use
(``tranches.lock_household``), and each tranche is checked again under the lock: a payment or a
refund that raced the sweep is either wholly before it or wholly after. Idempotent: a closed
tranche is skipped and the returning transfer's key is ``sweep:<tranche>``, so a sweep killed
half way and run again returns each tenge once.

A tranche still holding an authorisation that has not timed out (authorised minutes before the
tranche expired) is left open — the merchant may still capture it — and the next sweep, after
the authorisation's timeout, closes it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qamqor.wallet import ledger, payments, tranches
from qamqor.wallet.models import Tranche

# 500 tranches a chunk: each chunk is one transaction from the CLI and holds its households'
# wallet locks until it commits; payments on those wallets wait for it, so keep it short.
CHUNK = 500


@dataclass
class SweepReport:
    authorisations_voided: int = 0
    closed: int = 0
    expired: int = 0
    lapsed: int = 0
    returned_tiyn: int = 0
    households: int = 0
    waiting: int = 0  # due, but an authorisation on it has not timed out yet

    def add(self, other: SweepReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def count_due(session: Session, now: dt.datetime) -> int:
    """Open tranches past their expiry (for the CLI's progress bar)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Tranche)
            .where(Tranche.closed.is_(False), Tranche.expires_at <= now)
        )
        or 0
    )


def void_timed_out(session: Session, now: dt.datetime, limit: int = CHUNK) -> int:
    """Void up to ``limit`` timed-out authorisations (``payments.expire_authorisations``)."""
    return payments.expire_authorisations(session, now, limit)


def sweep_chunk(session: Session, now: dt.datetime, limit: int = CHUNK) -> SweepReport:
    """Close up to ``limit`` due tranches, household by household; the caller commits."""
    report = SweepReport()
    ledger.write_lock(session)
    due = tranches.due_for_sweep(session, now, limit)
    if not due:
        return report
    purposes: dict[int, str] = {
        tranche_id: purpose
        for tranche_id, purpose in session.execute(
            select(Tranche.id, Tranche.purpose).where(Tranche.id.in_([i for i, _ in due]))
        )
    }
    by_household: dict[str, set[int]] = defaultdict(set)
    for tranche_id, household_id in due:
        by_household[household_id].add(tranche_id)
    # households in a fixed order: two sweeps running at once lock them in the same order
    for household_id in sorted(by_household):
        wanted = by_household[household_id]
        _, found = tranches.lock_household(session, household_id, {purposes[i] for i in wanted})
        report.households += 1
        for tranche in found:
            if tranche.id not in wanted or tranche.closed or tranche.expires_at > now:
                continue  # re-checked under the lock
            if tranche.pending_tiyn:
                report.waiting += 1
                continue
            reason = tranches.close_reason(tranche)
            report.returned_tiyn += tranches.close(session, tranche, reason, now)
            report.closed += 1
            if reason == "lapsed":
                report.lapsed += 1
            else:
                report.expired += 1
    return report


def sweep(
    session: Session,
    now: dt.datetime,
    *,
    chunk: int = CHUNK,
    progress: Callable[[SweepReport], None] | None = None,
    commit: Callable[[], None] | None = None,
) -> SweepReport:
    """Void timed-out authorisations, then close every due tranche.

    In one transaction unless ``commit`` is given: the CLI passes ``session.commit`` to end
    each chunk's transaction (and release its locks) before the next."""
    total = SweepReport()
    while True:
        voided = void_timed_out(session, now, chunk)
        total.authorisations_voided += voided
        if commit is not None:
            commit()
        if voided < chunk:
            break
    while True:
        part = sweep_chunk(session, now, chunk)
        total.add(part)
        # the tranches waiting on an authorisation come back in every chunk: count them once,
        # from the last chunk (which holds them all, being the one that closed nothing)
        total.waiting = part.waiting
        if commit is not None:
            commit()
        if progress is not None:
            progress(total)
        # a chunk that closed nothing holds only tranches waiting on authorisations: the
        # remaining ones (ordered by expiry) are the same rows again, so stop
        if part.closed == 0:
            return total
