"""Tranches: labelled credits to a household wallet, and the order payments draw on them.

A tranche is opened by a credit from its program's budget (``open_tranche``), drawn on by
payments (earliest expiry first, only purposes the merchant's category allows), refilled by
refunds, and closed by the sweep: at expiry, or at the end of its month when it needed
activation and nobody activated it, its remainder goes to the program's returns account.
Nothing draws on a closed tranche, and a refund to one goes straight on to the returns.

Locking order, everywhere: wallet accounts first (by id), then their tranches (by id). Payments,
refunds and the sweep all take them in this order, so they queue and never deadlock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, and_, bindparam, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from qamqor.kit.errors import QamqorError
from qamqor.rules.spec import PURPOSES
from qamqor.wallet import ledger
from qamqor.wallet.models import Account, Tranche


class TrancheError(QamqorError):
    code = "tranche_error"


@dataclass(frozen=True)
class Draw:
    tranche: Tranche
    amount_tiyn: int


def open_tranche(
    session: Session,
    *,
    household_id: str,
    program_id: str,
    purpose: str,
    amount_tiyn: int,
    period_start: dt.date,
    period_end: dt.date,
    expires_at: dt.datetime,
    now: dt.datetime,
    activation_required: bool = False,
    entitlement_id: int | None = None,
    key: str | None = None,
) -> Tranche:
    """Credit a household's wallet for ``purpose`` from the program's budget: one tranche, one
    transfer. Idempotent: by (entitlement, period start) when an entitlement pays it, else by
    ``key``; the repeat returns the tranche first opened."""
    if purpose not in PURPOSES:
        raise TrancheError(f"unknown purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    if expires_at <= now:
        raise TrancheError("a tranche must expire after it is opened")
    transfer_key = key or (
        f"credit:{entitlement_id}:{period_start.isoformat()}" if entitlement_id else None
    )
    if transfer_key is None:
        raise TrancheError("a credit without an entitlement needs an idempotency key")
    if entitlement_id is not None:
        found = session.scalar(
            select(Tranche).where(
                Tranche.entitlement_id == entitlement_id, Tranche.period_start == period_start
            )
        )
        if found is not None:
            return found
    previous = ledger.existing_transfer(session, transfer_key)
    if previous is not None and previous.tranche_id is not None:
        tranche = session.get(Tranche, previous.tranche_id)
        assert tranche is not None
        if (tranche.household_id, tranche.amount_tiyn, tranche.purpose) != (
            household_id,
            amount_tiyn,
            purpose,
        ):
            raise ledger.IdempotencyConflictError(f"key {transfer_key!r} credited another tranche")
        return tranche
    budget = ledger.ensure_account(
        session, ledger.budget_code(program_id), "budget", now=now, program_id=program_id
    )
    wallet = ledger.ensure_account(
        session,
        ledger.wallet_code(household_id, purpose),
        "wallet",
        now=now,
        household_id=household_id,
        purpose=purpose,
    )
    tranche = Tranche(
        account_id=wallet,
        household_id=household_id,
        program_id=program_id,
        purpose=purpose,
        entitlement_id=entitlement_id,
        period_start=period_start,
        period_end=period_end,
        expires_at=expires_at,
        activation_required=activation_required,
        amount_tiyn=amount_tiyn,
        spent_tiyn=0,
        pending_tiyn=0,
        returned_tiyn=0,
        closed=False,
        created_at=now,
    )
    session.add(tranche)
    session.flush()
    credit = ledger.transfer(
        session,
        ledger.TransferRequest(
            key=transfer_key,
            debit_account_id=budget,
            credit_account_id=wallet,
            amount_tiyn=amount_tiyn,
            code="credit",
            tranche_id=tranche.id,
        ),
        now=now,
    )
    tranche.credit_transfer_id = credit.id
    session.flush()
    return tranche


def usable(tranche: Tranche, now: dt.datetime) -> bool:
    """May a payment draw on it now: open, not expired, activated when it must be."""
    return (
        not tranche.closed
        and tranche.expires_at > now
        and (not tranche.activation_required or tranche.activated_at is not None)
        and tranche.remaining_tiyn > 0
    )


def lock_household(
    session: Session, household_id: str, purposes: Iterable[str], also: Iterable[int] = ()
) -> tuple[dict[int, Account], list[Tranche]]:
    """Lock the household's wallet accounts for ``purposes`` and their open tranches, in the
    one locking order, and return them (tranches in drawing order: earliest expiry first).

    ``also`` are more accounts to lock in the same id-ordered statement — the merchant's,
    for a payment: a refund locks merchant and wallet too, and two transactions locking the
    same rows in the same order cannot deadlock."""
    # One statement finds and locks the wallets and the ``also`` accounts, in id order (a
    # select of the ids and then a lock by id cost a round trip more on every payment).
    wanted = set(purposes)
    wallets = and_(
        Account.kind == "wallet",
        Account.household_id == household_id,
        Account.purpose.in_(sorted(wanted)),
    )
    extra = sorted(set(also))
    rows = session.scalars(
        select(Account)
        .where(or_(wallets, Account.id.in_(extra)) if extra else wallets)
        .order_by(Account.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    accounts = {row.id: row for row in rows}
    account_ids = [
        row.id
        for row in rows
        if row.kind == "wallet" and row.household_id == household_id and row.purpose in wanted
    ]
    if not account_ids:
        return {}, []
    tranches = list(
        session.scalars(
            select(Tranche)
            .where(Tranche.account_id.in_(sorted(account_ids)), Tranche.closed.is_(False))
            .order_by(Tranche.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    tranches.sort(key=lambda t: (t.expires_at, t.id))
    return accounts, tranches


def plan(tranches: Sequence[Tranche], amount_tiyn: int, now: dt.datetime) -> list[Draw] | None:
    """Draw ``amount_tiyn`` from usable tranches, earliest expiry first; None when they hold
    less."""
    draws: list[Draw] = []
    left = amount_tiyn
    for tranche in tranches:
        if left == 0:
            break
        if not usable(tranche, now):
            continue
        part = min(left, tranche.remaining_tiyn)
        draws.append(Draw(tranche, part))
        left -= part
    return draws if left == 0 else None


def add_to_sums(session: Session, draws: Sequence[Draw], *, spent: int, pending: int) -> None:
    """Add each draw's amount, times ``spent`` and ``pending``, to its locked tranche's sums:
    one executemany UPDATE by increments, and the loaded tranches kept true without an ORM
    flush of their own."""
    table = cast(Table, Tranche.__table__)
    session.execute(
        table.update()
        .where(table.c.id == bindparam("tranche_id"))
        .values(
            spent_tiyn=table.c.spent_tiyn + bindparam("spent"),
            pending_tiyn=table.c.pending_tiyn + bindparam("pending"),
        ),
        [
            {
                "tranche_id": draw.tranche.id,
                "spent": draw.amount_tiyn * spent,
                "pending": draw.amount_tiyn * pending,
            }
            for draw in sorted(draws, key=lambda d: d.tranche.id)
        ],
    )
    for draw in draws:
        tranche = draw.tranche
        set_committed_value(tranche, "spent_tiyn", tranche.spent_tiyn + draw.amount_tiyn * spent)
        set_committed_value(
            tranche, "pending_tiyn", tranche.pending_tiyn + draw.amount_tiyn * pending
        )


def activate(session: Session, tranche_id: int, household_id: str, now: dt.datetime) -> Tranche:
    """Activate a voucher that needs monthly activation; before its expiry only, once."""
    tranche = session.scalar(select(Tranche).where(Tranche.id == tranche_id).with_for_update())
    if tranche is None or tranche.household_id != household_id:
        raise TrancheError(f"no tranche {tranche_id} in this household's wallet")
    if not tranche.activation_required:
        raise TrancheError("this credit needs no activation")
    if tranche.closed or tranche.expires_at <= now:
        raise TrancheError("this voucher has lapsed")
    if tranche.activated_at is None:
        tranche.activated_at = now
        session.flush()
    return tranche


def close_reason(tranche: Tranche) -> str:
    """``lapsed``: a voucher nobody activated in its month; ``expired``: any other."""
    return "lapsed" if tranche.activation_required and tranche.activated_at is None else "expired"


def close(session: Session, tranche: Tranche, reason: str, now: dt.datetime) -> int:
    """Return what a tranche still holds to its program's returns account and close it; the
    caller holds the locks (:func:`lock_household`). Returns the tiyn returned. A tranche with
    an authorisation still pending stays open until that is posted or voided."""
    if tranche.closed:
        return 0
    if tranche.pending_tiyn:
        raise TrancheError(f"tranche {tranche.id} has {tranche.pending_tiyn} tiyn authorised")
    remaining = tranche.remaining_tiyn
    if remaining:
        give_back(session, tranche, remaining, f"sweep:{tranche.id}", now)
    tranche.closed = True
    tranche.close_reason = reason
    session.flush()
    return remaining


def give_back(
    session: Session, tranche: Tranche, amount_tiyn: int, key: str, now: dt.datetime
) -> None:
    """Move ``amount_tiyn`` of a tranche from the wallet to the program's returns account."""
    returns = ledger.ensure_account(
        session,
        ledger.returns_code(tranche.program_id),
        "returns",
        now=now,
        program_id=tranche.program_id,
    )
    ledger.transfer(
        session,
        ledger.TransferRequest(
            key=key,
            debit_account_id=tranche.account_id,
            credit_account_id=returns,
            amount_tiyn=amount_tiyn,
            code="sweep",
            tranche_id=tranche.id,
        ),
        now=now,
    )
    tranche.returned_tiyn += amount_tiyn


def due_for_sweep(session: Session, now: dt.datetime, limit: int = 1000) -> list[tuple[int, str]]:
    """(tranche id, household id) of open tranches that expired, or lapsed unactivated."""
    rows = session.execute(
        select(Tranche.id, Tranche.household_id)
        .where(Tranche.closed.is_(False), Tranche.expires_at <= now)
        .order_by(Tranche.expires_at, Tranche.id)
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]
