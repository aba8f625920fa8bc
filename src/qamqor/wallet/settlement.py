"""Settlement: the day's takings of each merchant handed over to the merchants' banks.

A payment credits the merchant's ledger account (``merchant:<BIN>``); refunds debit it. Once a
day :func:`settle` moves what each merchant earned up to the end of a settlement day (local
time, ``QAMQOR_LOCAL_TIMEZONE``) to the ``settlement`` account: money on its way to the
merchant's bank, no longer the wallet's to refund. One transfer per merchant and day, with
the idempotency key ``settlement:<BIN>:<day>``, so running the job twice for a day (a retry
after a crash, two operators) settles once.

What is settled for a day is the smaller of

- the merchant's **net posted** amount up to the cut-off (payments posted before midnight less
  refunds and earlier settlements before it): money that came in after the cut-off waits for
  the next day, whatever time the job runs;
- what the account has **available now**: a refund made after the cut-off has already given
  some of that money back to a household, and no account may go below zero.

Authorisations not yet captured are pending, not posted: they are settled on the day they are
captured.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qamqor.kit.errors import QamqorError
from qamqor.kit.settings import get_settings
from qamqor.wallet import ledger
from qamqor.wallet.models import Merchant, Transfer

SETTLEMENT_CODE = "settlement"  # the transfer code
POSTED = ("posted", "post_pending")


class SettlementError(QamqorError):
    code = "settlement_error"


@dataclass(frozen=True)
class Settled:
    merchant_bin: str
    merchant_name: str
    day: dt.date
    amount_tiyn: int  # 0: nothing to settle
    transfer_id: int | None
    already: bool  # settled by an earlier run for this day


def settlement_key(merchant_bin: str, day: dt.date) -> str:
    return f"settlement:{merchant_bin}:{day.isoformat()}"


def _zone() -> ZoneInfo:
    return ZoneInfo(get_settings().local_timezone)


def cut_off(day: dt.date) -> dt.datetime:
    """The end of ``day`` in local time, as a UTC instant."""
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=_zone())
    return end.astimezone(dt.UTC)


def previous_day(now: dt.datetime) -> dt.date:
    """The default settlement day: yesterday, local time (the job runs in the morning)."""
    return now.astimezone(_zone()).date() - dt.timedelta(days=1)


def _net_posted_before(session: Session, account_id: int, before: dt.datetime) -> int:
    posted = select(func.coalesce(func.sum(Transfer.amount_tiyn), 0)).where(
        Transfer.flags.in_(POSTED), Transfer.created_at < before
    )
    credits = session.scalar(posted.where(Transfer.credit_account_id == account_id)) or 0
    debits = session.scalar(posted.where(Transfer.debit_account_id == account_id)) or 0
    return int(credits) - int(debits)


def settle_merchant(
    session: Session, merchant: Merchant, day: dt.date, now: dt.datetime
) -> Settled:
    """Settle one merchant for ``day``; see the module docstring for how much."""
    key = settlement_key(merchant.bin, day)
    earlier = ledger.existing_transfer(session, key)
    if earlier is not None:
        return Settled(merchant.bin, merchant.name, day, earlier.amount_tiyn, earlier.id, True)
    accounts = ledger.lock_accounts(session, [merchant.account_id])
    account = accounts[merchant.account_id]
    amount = min(
        _net_posted_before(session, merchant.account_id, cut_off(day)), account.available_tiyn
    )
    if amount <= 0:
        return Settled(merchant.bin, merchant.name, day, 0, None, False)
    target = ledger.ensure_account(session, ledger.SETTLEMENT, "settlement", now=now)
    moved = ledger.transfer(
        session,
        ledger.TransferRequest(
            key=key,
            debit_account_id=merchant.account_id,
            credit_account_id=target,
            amount_tiyn=amount,
            code=SETTLEMENT_CODE,
        ),
        now=now,
        locked=accounts,
    )
    return Settled(merchant.bin, merchant.name, day, amount, moved.id, False)


def settle(
    session: Session,
    *,
    now: dt.datetime,
    day: dt.date | None = None,
    merchant_bin: str | None = None,
) -> list[Settled]:
    """Settle every merchant (or one) for ``day`` (default: yesterday, local time), in BIN
    order. A suspended or closed merchant is settled too: what it earned is still its own."""
    ledger.write_lock(session)
    day = day or previous_day(now)
    if cut_off(day) > now:
        raise SettlementError(f"{day} has not ended yet: settle a day once it is over")
    query = select(Merchant).order_by(Merchant.bin)
    if merchant_bin is not None:
        query = query.where(Merchant.bin == merchant_bin)
    merchants = list(session.scalars(query))
    if merchant_bin is not None and not merchants:
        raise SettlementError(f"no merchant with BIN {merchant_bin}")
    return [settle_merchant(session, m, day, now) for m in merchants]


@dataclass(frozen=True)
class SettlementDay:
    day: dt.date
    amount_tiyn: int
    transfer_id: int
    settled_at: dt.datetime


def settlements_of(
    session: Session,
    merchant: Merchant,
    *,
    since: dt.date | None = None,
    until: dt.date | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[SettlementDay]:
    """The merchant's settled amounts by day, newest day first."""
    prefix = f"settlement:{merchant.bin}:"
    query = (
        select(Transfer)
        .where(
            Transfer.debit_account_id == merchant.account_id,
            Transfer.code == SETTLEMENT_CODE,
            Transfer.idempotency_key.startswith(prefix, autoescape=True),
        )
        # ISO dates in the key sort as the days do
        .order_by(Transfer.idempotency_key.desc())
    )
    if since is not None:
        query = query.where(Transfer.idempotency_key >= prefix + since.isoformat())
    if until is not None:
        query = query.where(Transfer.idempotency_key <= prefix + until.isoformat())
    rows = session.scalars(query.limit(limit).offset(offset))
    return [
        SettlementDay(
            day=dt.date.fromisoformat(row.idempotency_key[len(prefix) :]),
            amount_tiyn=row.amount_tiyn,
            transfer_id=row.id,
            settled_at=row.created_at,
        )
        for row in rows
    ]
