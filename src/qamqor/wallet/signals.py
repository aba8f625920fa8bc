"""Misuse signals: patterns a person should look at. They never block a payment or a merchant.

Three patterns, each over the payments of a window ``[since, now)`` (voided authorisations
left out), with thresholds in ``Thresholds`` (the defaults are the module's constants):

- ``drain`` — a merchant whose payments, many of them, each leave the household's money for
  the purposes drawn at zero: the shape of a shop "buying" whole vouchers for cash at a
  discount. A payment *drains* when, right after its transfers, the wallet accounts it drew
  on have nothing available (posted credits less posted and pending debits, replayed from the
  ledger's transfers in SQL). Raised when a merchant has at least ``drain_min_payments`` such
  payments in the window and they are at least ``drain_min_share`` of its payments there (a
  big supermarket where families spend their whole voucher now and then stays quiet).
- ``split`` — repeated payments just under a limit: at least ``split_min_payments`` payments
  by one household at one merchant within ``split_window``, each between
  ``split_near_share × split_limit_tiyn`` and the limit, together above it: a large purchase
  cut up to stay under the amount that draws attention.
- ``far`` — payments far from home: at least ``far_min_payments`` payments by a household at
  a merchant whose region (kept on the payment) is not the household's. The household's
  region is its profile's (``profile_head.region_code``, the head's region as the profile
  builder saw it): one indexed column per household, joined in SQL; a household without a
  profile or a region is never flagged. "Far" is another region (oblast or city of republican
  significance) — the registry knows no distances, and a trip to the next town stays quiet.

Each signal has a ``dedupe_key`` (unique), so running the detection again over the same or an
overlapping window inserts nothing twice: ``drain:<BIN>:<ISO week of now>`` (one per merchant
per week), ``split:<BIN>:<household>:<first payment id>``, ``far:<household>:<BIN>`` (a
reviewer's dismissal covers the pair: a family living at a region's border buys there).
A reviewer confirms or dismisses a signal with a note; nothing else happens to the payments.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import and_, case, func, select, union_all
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from qamqor.kit.errors import NotFoundError, QamqorError
from qamqor.profiles.models import ProfileHead
from qamqor.wallet.models import SIGNAL_STATUSES, Payment, Signal, Transfer

KINDS = ("drain", "split", "far")

# drain: 5 draining payments in the window, and at least 60% of the merchant's payments there.
# A family spending its whole voucher in one go is normal; a shop where most payments do, for
# several households, is not.
DRAIN_MIN_PAYMENTS = 5
DRAIN_MIN_SHARE = 0.6
# split: the limit is the amount of one payment above which a payment would stand out (20,000 ₸,
# about what a family of five receives a month as the food voucher); "just under" is within 10%
# of it; two or more such payments within 10 minutes adding up to more than the limit.
SPLIT_LIMIT_TIYN = 2_000_000
SPLIT_NEAR_SHARE = 0.9
SPLIT_WINDOW = dt.timedelta(minutes=10)
SPLIT_MIN_PAYMENTS = 2
# far: two or more payments at one merchant outside the household's region in the window (one
# purchase while travelling is normal).
FAR_MIN_PAYMENTS = 2


class SignalError(QamqorError):
    code = "signal_error"
    status = 409


@dataclass(frozen=True)
class Thresholds:
    drain_min_payments: int = DRAIN_MIN_PAYMENTS
    drain_min_share: float = DRAIN_MIN_SHARE
    split_limit_tiyn: int = SPLIT_LIMIT_TIYN
    split_near_share: float = SPLIT_NEAR_SHARE
    split_window: dt.timedelta = SPLIT_WINDOW
    split_min_payments: int = SPLIT_MIN_PAYMENTS
    far_min_payments: int = FAR_MIN_PAYMENTS


@dataclass
class SignalsReport:
    since: dt.datetime
    now: dt.datetime
    payments: int = 0
    found: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    inserted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    signal_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"], data["now"] = self.since.isoformat(), self.now.isoformat()
        return data


@dataclass(frozen=True)
class Found:
    dedupe_key: str
    kind: str
    merchant_bin: str | None
    household_id: str | None
    detail: dict[str, Any]


def _window(since: dt.datetime, now: dt.datetime) -> Any:
    return and_(Payment.created_at >= since, Payment.created_at < now, Payment.status != "voided")


def draining_payments(session: Session, since: dt.datetime, now: dt.datetime) -> set[int]:
    """Payments of the window after whose transfers the wallet accounts they drew on had
    nothing available: replays each account's transfers up to the payment's last one."""
    charges = and_(
        Transfer.code == "payment",
        Transfer.flags.in_(("posted", "pending")),
        Transfer.payment_id.in_(select(Payment.id).where(_window(since, now))),
    )
    drawn = (
        select(Transfer.payment_id.label("payment_id"), Transfer.debit_account_id.label("acct"))
        .where(charges)
        .distinct()
        .subquery()
    )
    last = (
        select(Transfer.payment_id.label("payment_id"), func.max(Transfer.id).label("last_id"))
        .where(charges)
        .group_by(Transfer.payment_id)
        .subquery()
    )
    accounts = select(drawn.c.acct)
    amount = Transfer.amount_tiyn
    # what each transfer does to an account's available money (credits_posted - debits_posted
    # - debits_pending): credited when posted; debited when posted or reserved; a void gives
    # the reservation back; posting a reservation changes nothing available
    moves = union_all(
        select(
            Transfer.id.label("id"),
            Transfer.credit_account_id.label("acct"),
            case((Transfer.flags.in_(("posted", "post_pending")), amount), else_=0).label("delta"),
        ).where(Transfer.credit_account_id.in_(accounts)),
        select(
            Transfer.id,
            Transfer.debit_account_id,
            case(
                (Transfer.flags.in_(("posted", "pending")), -amount),
                (Transfer.flags == "void_pending", amount),
                else_=0,
            ),
        ).where(Transfer.debit_account_id.in_(accounts)),
    ).subquery()
    rows = session.execute(
        select(drawn.c.payment_id, func.sum(moves.c.delta))
        .join(last, last.c.payment_id == drawn.c.payment_id)
        .join(moves, and_(moves.c.acct == drawn.c.acct, moves.c.id <= last.c.last_id))
        .group_by(drawn.c.payment_id)
    ).all()
    return {int(pid) for pid, available in rows if int(available or 0) <= 0}


def find_drains(
    session: Session, since: dt.datetime, now: dt.datetime, limits: Thresholds
) -> list[Found]:
    draining = draining_payments(session, since, now)
    if not draining:
        return []
    per_merchant: dict[str, list[tuple[int, str]]] = defaultdict(list)
    totals: dict[str, int] = defaultdict(int)
    for pid, merchant_bin, household_id in session.execute(
        select(Payment.id, Payment.merchant_bin, Payment.household_id).where(_window(since, now))
    ):
        totals[merchant_bin] += 1
        if pid in draining:
            per_merchant[merchant_bin].append((pid, household_id))
    week = now.isocalendar()
    found = []
    for merchant_bin, drained in sorted(per_merchant.items()):
        share = len(drained) / totals[merchant_bin]
        if len(drained) < limits.drain_min_payments or share < limits.drain_min_share:
            continue
        found.append(
            Found(
                f"drain:{merchant_bin}:{week.year}-W{week.week:02d}",
                "drain",
                merchant_bin,
                None,
                {
                    "draining_payments": len(drained),
                    "payments": totals[merchant_bin],
                    "share": round(share, 3),
                    "households": len({h for _, h in drained}),
                    "payment_ids": sorted(p for p, _ in drained)[:50],
                    "since": since.isoformat(),
                    "until": now.isoformat(),
                },
            )
        )
    return found


def find_splits(
    session: Session, since: dt.datetime, now: dt.datetime, limits: Thresholds
) -> list[Found]:
    low = int(limits.split_limit_tiyn * limits.split_near_share)
    # from one window before ``since``: a burst that began just before it is found whole, and
    # with the same first payment (so the same key) as the run that saw its beginning
    rows = session.execute(
        select(
            Payment.id,
            Payment.merchant_bin,
            Payment.household_id,
            Payment.amount_tiyn,
            Payment.created_at,
        )
        .where(
            _window(since - limits.split_window, now),
            Payment.amount_tiyn >= low,
            Payment.amount_tiyn < limits.split_limit_tiyn,
        )
        .order_by(Payment.merchant_bin, Payment.household_id, Payment.created_at, Payment.id)
    ).all()
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        groups[(row.merchant_bin, row.household_id)].append(row)
    found = []
    for (merchant_bin, household_id), payments in groups.items():
        i = 0
        while i < len(payments):
            first = payments[i]
            burst = [
                p for p in payments[i:] if p.created_at - first.created_at <= limits.split_window
            ]
            total = sum(p.amount_tiyn for p in burst)
            if (
                len(burst) >= limits.split_min_payments
                and total > limits.split_limit_tiyn
                and burst[-1].created_at >= since
            ):
                found.append(
                    Found(
                        f"split:{merchant_bin}:{household_id}:{first.id}",
                        "split",
                        merchant_bin,
                        household_id,
                        {
                            "payments": len(burst),
                            "total_tiyn": total,
                            "limit_tiyn": limits.split_limit_tiyn,
                            "amounts_tiyn": [p.amount_tiyn for p in burst],
                            "payment_ids": [p.id for p in burst],
                            "first_at": first.created_at.isoformat(),
                            "last_at": burst[-1].created_at.isoformat(),
                        },
                    )
                )
                i += len(burst)
            else:
                i += 1
    return found


def find_far(
    session: Session, since: dt.datetime, now: dt.datetime, limits: Thresholds
) -> list[Found]:
    rows = session.execute(
        select(
            Payment.household_id,
            Payment.merchant_bin,
            ProfileHead.region_code,
            Payment.region_code,
            func.count(),
            func.sum(Payment.amount_tiyn),
            func.min(Payment.id),
            func.max(Payment.id),
        )
        .join(ProfileHead, ProfileHead.household_id == Payment.household_id)
        .where(
            _window(since, now),
            ProfileHead.region_code.is_not(None),
            ProfileHead.region_code != Payment.region_code,
        )
        .group_by(
            Payment.household_id,
            Payment.merchant_bin,
            ProfileHead.region_code,
            Payment.region_code,
        )
        .order_by(Payment.household_id, Payment.merchant_bin)
    ).all()
    return [
        Found(
            f"far:{household_id}:{merchant_bin}",
            "far",
            merchant_bin,
            household_id,
            {
                "household_region": home,
                "merchant_region": away,
                "payments": int(count),
                "amount_tiyn": int(amount),
                "first_payment_id": int(first),
                "last_payment_id": int(last),
            },
        )
        for household_id, merchant_bin, home, away, count, amount, first, last in rows
        if count >= limits.far_min_payments
    ]


def _insert(session: Session, found: Found, now: dt.datetime) -> int | None:
    """Insert a signal unless its dedupe key exists (``ON CONFLICT DO NOTHING``: two runs at
    once insert it once); its id when inserted."""
    dialect = session.connection().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    result = session.execute(
        insert(Signal)
        .values(
            dedupe_key=found.dedupe_key,
            kind=found.kind,
            merchant_bin=found.merchant_bin,
            household_id=found.household_id,
            detail=found.detail,
            status="open",
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Signal.id)
    )
    return result.scalar()


def run_signals(
    session: Session,
    since: dt.datetime,
    now: dt.datetime,
    limits: Thresholds | None = None,
) -> SignalsReport:
    """Look for the three patterns in ``[since, now)`` and record new signals (open)."""
    limits = limits or Thresholds()
    report = SignalsReport(since, now)
    report.payments = int(
        session.scalar(select(func.count()).select_from(Payment).where(_window(since, now))) or 0
    )
    for kind, finder in (("drain", find_drains), ("split", find_splits), ("far", find_far)):
        for found in finder(session, since, now, limits):
            report.found[kind] += 1
            signal_id = _insert(session, found, now)
            if signal_id is not None:
                report.inserted[kind] += 1
                report.signal_ids.append(signal_id)
    session.flush()
    return report


def list_signals(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Signal]:
    """Signals, newest first."""
    query = select(Signal).order_by(Signal.id.desc()).limit(limit).offset(offset)
    if status is not None:
        query = query.where(Signal.status == status)
    if kind is not None:
        query = query.where(Signal.kind == kind)
    return list(session.scalars(query))


def get_signal(session: Session, signal_id: int) -> Signal:
    signal = session.get(Signal, signal_id)
    if signal is None:
        raise NotFoundError(f"no signal {signal_id}")
    return signal


def review(
    session: Session,
    signal_id: int,
    *,
    decision: str,
    note: str,
    reviewer: str,
    now: dt.datetime,
) -> Signal:
    """Confirm or dismiss an open signal, with a note saying why. Reviewing again with the
    same decision returns it unchanged; a different decision is refused (a second look opens a
    case elsewhere, it does not rewrite the first reviewer's record)."""
    if decision not in SIGNAL_STATUSES or decision == "open":
        raise SignalError("the decision must be confirmed or dismissed")
    if not note.strip():
        raise SignalError("say why: a review needs a note")
    signal = session.scalar(
        select(Signal)
        .where(Signal.id == signal_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if signal is None:
        raise NotFoundError(f"no signal {signal_id}")
    if signal.status == decision:
        return signal
    if signal.status != "open":
        raise SignalError(f"signal {signal_id} was already {signal.status} by {signal.reviewed_by}")
    signal.status = decision
    signal.review_note = note.strip()[:500]
    signal.reviewed_by = reviewer[:100]
    signal.reviewed_at = now
    session.flush()
    return signal


def signal_out(signal: Signal) -> dict[str, Any]:
    return {
        "id": signal.id,
        "kind": signal.kind,
        "status": signal.status,
        "merchant_bin": signal.merchant_bin,
        "household_id": signal.household_id,
        "detail": signal.detail,
        "created_at": signal.created_at.isoformat(),
        "reviewed_by": signal.reviewed_by,
        "reviewed_at": signal.reviewed_at.isoformat() if signal.reviewed_at else None,
        "review_note": signal.review_note,
    }
