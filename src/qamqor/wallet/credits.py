"""From entitlement to money: the monthly credits of wallet entitlements.

An entitlement with channel ``wallet`` (made when a citizen accepts an offer,
``qamqor.proactive.offers.accept``) is paid as one tranche a month, from the first month of its
period to the last: ``schedule_credits`` opens this month's tranche for each such entitlement,
from the program's budget into the household's wallet for the entitlement's purpose. Opening is
idempotent by (entitlement, first day of the month) — a unique constraint on the tranche — so
the monthly job may run any number of times, or be killed half way and run again.

The program's ``payment`` block (``programs/*.yaml``) says how long the money lasts:

- ``expiry: month_end`` — the tranche expires at the end of its month, midnight in the local
  time zone (``QAMQOR_LOCAL_TIMEZONE``), as Kazakhstan's food vouchers lapse at month end;
- ``expiry_months: N`` — it expires at local midnight N months after its month began;
- neither — ``DEFAULT_EXPIRY_MONTHS`` (12): benefits in kind unspent for a year go back to the
  budget. A year, not "never": every earmark must end, or the program's books never close;
- ``activation: monthly`` — the citizen must activate each month's voucher; an unactivated
  one lapses at its expiry (the sweep returns it as ``lapsed``).

Which months are paid, and how much:

- the entitlement's period: from ``period_start`` to ``period_end`` (the last day included),
  and never past the program's ``duration_months`` counted from ``period_start`` (the worker
  clears ``period_end`` when a household becomes eligible again; the program's duration still
  holds);
- an entitlement ``ending`` or ``ended`` after a notice of lost eligibility is paid up to the
  notice's ``effective_on`` (the Social Code pays to the end of the notice period), which the
  worker also wrote into ``period_end``; one with no end at all gets nothing more;
- an ``amount_changed`` notice changes the amount from its ``effective_on``: months before it
  are paid the amount before the change (``amount_before_tiyn``), even though the worker
  already wrote the new amount into the entitlement.

A month that has not begun yet (locally) is refused: a tranche is drawable as soon as it is
opened, so crediting January in December would let January's food money buy December's.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from qamqor.kit.errors import QamqorError
from qamqor.kit.settings import get_settings
from qamqor.proactive.models import Entitlement, Notice
from qamqor.rules.spec import Program, load_programs
from qamqor.wallet import ledger, tranches
from qamqor.wallet.models import Tranche

DEFAULT_EXPIRY_MONTHS = 12
# 500 entitlements a chunk: one chunk is one transaction from the CLI, a few hundred ms of
# inserts, short enough that payments waiting on the same wallets do not notice.
CHUNK = 500


class CreditError(QamqorError):
    code = "credit_error"


@dataclass(frozen=True)
class PaymentTerms:
    """How long a program's wallet money lasts and whether it needs monthly activation."""

    expiry_months: int
    activation_required: bool


def payment_terms(payment: dict[str, Any], program_id: str = "?") -> PaymentTerms:
    """Read ``expiry`` / ``expiry_months`` / ``activation`` of a ``payment`` block."""
    expiry = payment.get("expiry")
    months = payment.get("expiry_months")
    if expiry is not None and months is not None:
        raise CreditError(f"program {program_id}: give expiry or expiry_months, not both")
    if expiry is not None and expiry != "month_end":
        raise CreditError(f"program {program_id}: expiry must be month_end, not {expiry!r}")
    if months is not None and (not isinstance(months, int) or isinstance(months, bool)):
        raise CreditError(f"program {program_id}: expiry_months must be a whole number")
    if months is not None and months < 1:
        raise CreditError(f"program {program_id}: expiry_months must be at least 1")
    activation = payment.get("activation")
    if activation not in (None, "none", "monthly"):
        raise CreditError(f"program {program_id}: activation must be monthly or none")
    return PaymentTerms(
        expiry_months=1 if expiry == "month_end" else int(months or DEFAULT_EXPIRY_MONTHS),
        activation_required=activation == "monthly",
    )


def add_months(first: dt.date, months: int) -> dt.date:
    """The first day of the month ``months`` after the month of ``first``."""
    index = first.year * 12 + first.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def local_midnight(day: dt.date) -> dt.datetime:
    """00:00 of ``day`` in the local time zone, as a UTC moment."""
    zone = ZoneInfo(get_settings().local_timezone)
    return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def expiry_of(terms: PaymentTerms, month: dt.date) -> dt.datetime:
    """When a tranche of ``month`` expires: local midnight ``expiry_months`` months on."""
    return local_midnight(add_months(month_of(month), terms.expiry_months))


def last_day(month: dt.date) -> dt.date:
    return add_months(month, 1) - dt.timedelta(days=1)


@dataclass
class CreditReport:
    month: dt.date
    entitlements: int = 0  # wallet entitlements whose period touches the month
    opened: int = 0
    already: int = 0  # credited by an earlier run
    credited_tiyn: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> entitlements
    tranche_ids: list[int] = field(default_factory=list)

    def add(self, other: CreditReport) -> None:
        self.entitlements += other.entitlements
        self.opened += other.opened
        self.already += other.already
        self.credited_tiyn += other.credited_tiyn
        self.skipped.update(other.skipped)
        self.tranche_ids += other.tranche_ids

    def to_dict(self) -> dict[str, Any]:
        return {
            "month": self.month.isoformat()[:7],
            "entitlements": self.entitlements,
            "opened": self.opened,
            "already": self.already,
            "credited_tiyn": self.credited_tiyn,
            "skipped": dict(sorted(self.skipped.items())),
        }


def paid_until(entitlement: Entitlement, program: Program | None) -> dt.date | None:
    """The last day the entitlement is paid for (None: open-ended); see the module docstring."""
    ends = [entitlement.period_end] if entitlement.period_end is not None else []
    duration = program.payment.get("duration_months") if program is not None else None
    if isinstance(duration, int) and duration > 0:
        ends.append(add_months(month_of(entitlement.period_start), duration) - dt.timedelta(1))
    return min(ends) if ends else None


def amount_for(entitlement: Entitlement, notices: list[Notice], month: dt.date) -> int:
    """The amount in force for ``month``: before the first amount change that takes effect
    after the month began, else the entitlement's (current) amount."""
    later = sorted(
        (
            n
            for n in notices
            if n.kind == "amount_changed"
            and n.effective_on > month
            and n.amount_before_tiyn is not None
        ),
        key=lambda n: (n.effective_on, n.id),
    )
    return int(later[0].amount_before_tiyn or 0) if later else entitlement.amount_tiyn


def _skip_reason(
    entitlement: Entitlement, program: Program | None, notices: list[Notice], month: dt.date
) -> str | None:
    if program is None:
        return "program_unknown"
    if entitlement.purpose != program.payment.get("purpose"):
        # the program's purpose is the earmark; an entitlement that disagrees was edited by hand
        return "purpose_mismatch"
    end = paid_until(entitlement, program)
    if entitlement.status in ("ending", "ended"):
        # an ending payment stops at the earlier of its notice's end and its period's; with
        # neither, it stops now
        stops = [n.effective_on for n in notices if n.kind == "eligibility_lost"]
        stops += [entitlement.period_end] if entitlement.period_end is not None else []
        if not stops:
            return "ended"
        end = min([end, *stops]) if end is not None else min(stops)
    if month < month_of(entitlement.period_start) or (end is not None and month > end):
        return "outside_period"
    return None


def _paid_in(month: dt.date) -> list[ColumnElement[bool]]:
    return [
        Entitlement.channel == "wallet",
        Entitlement.period_start <= last_day(month),
        or_(Entitlement.period_end.is_(None), Entitlement.period_end >= month),
    ]


def count_candidates(session: Session, month: dt.date) -> int:
    """Wallet entitlements whose period touches ``month`` (for the CLI's progress bar)."""
    query = select(func.count()).select_from(Entitlement).where(*_paid_in(month_of(month)))
    return int(session.scalar(query) or 0)


def credit_chunk(
    session: Session, month: dt.date, now: dt.datetime, *, after_id: int = 0, limit: int = CHUNK
) -> tuple[CreditReport, int | None]:
    """Credit ``month`` for up to ``limit`` wallet entitlements with ids above ``after_id``;
    returns the report and the last id seen (None when there were none left)."""
    month = month_of(month)
    if month > month_of(now.astimezone(ZoneInfo(get_settings().local_timezone)).date()):
        raise CreditError(f"{month:%Y-%m} has not begun: a month is credited once it starts")
    report = CreditReport(month)
    ledger.write_lock(session)  # SQLite: take the writer lock before the reads that decide
    entitlements = list(
        session.scalars(
            select(Entitlement)
            .where(Entitlement.id > after_id, *_paid_in(month))
            .order_by(Entitlement.id)
            .limit(limit)
        )
    )
    if not entitlements:
        return report, None
    ids = [e.id for e in entitlements]
    credited = set(
        session.scalars(
            select(Tranche.entitlement_id).where(
                Tranche.entitlement_id.in_(ids), Tranche.period_start == month
            )
        )
    )
    notices: dict[int, list[Notice]] = {}
    for notice in session.scalars(select(Notice).where(Notice.entitlement_id.in_(ids))):
        notices.setdefault(notice.entitlement_id, []).append(notice)
    programs = load_programs()
    for entitlement in entitlements:
        report.entitlements += 1
        if entitlement.id in credited:
            report.already += 1
            continue
        program = programs.get(entitlement.program_id)
        own = notices.get(entitlement.id, [])
        reason = _skip_reason(entitlement, program, own, month)
        if reason is None and program is not None:
            terms = payment_terms(program.payment, program.id)
            expires_at = expiry_of(terms, month)
            amount = amount_for(entitlement, own, month)
            if expires_at <= now:
                reason = "month_over"
            elif amount <= 0:
                reason = "no_amount"
        if reason is not None:
            report.skipped[reason] += 1
            continue
        assert program is not None
        tranche = tranches.open_tranche(
            session,
            household_id=entitlement.household_id,
            program_id=entitlement.program_id,
            purpose=entitlement.purpose,
            amount_tiyn=amount,
            period_start=month,
            period_end=last_day(month),
            expires_at=expires_at,
            now=now,
            activation_required=terms.activation_required,
            entitlement_id=entitlement.id,
        )
        report.opened += 1
        report.credited_tiyn += tranche.amount_tiyn
        report.tranche_ids.append(tranche.id)
    return report, entitlements[-1].id


def schedule_credits(
    session: Session,
    month: dt.date,
    now: dt.datetime,
    *,
    chunk: int = CHUNK,
    progress: Callable[[CreditReport], None] | None = None,
) -> CreditReport:
    """Open ``month``'s tranche of every wallet entitlement paid that month, in the caller's
    transaction (the CLI commits per chunk through :func:`credit_chunk` instead)."""
    total = CreditReport(month_of(month))
    after = 0
    while True:
        part, last = credit_chunk(session, month, now, after_id=after, limit=chunk)
        if last is None:
            return total
        total.add(part)
        after = last
        if progress is not None:
            progress(total)
