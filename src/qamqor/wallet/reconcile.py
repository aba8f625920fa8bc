"""Reconciliation: every invariant of the ledger, as SQL aggregates.

One query per check, not a loop over rows in Python: it has to run over millions of transfers.
An empty list means the books are right; each problem names the check, the row and both
numbers. ``qamqor wallet reconcile`` prints them and exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, union_all
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from qamqor.wallet.models import Account, Payment, Tranche, Transfer
from qamqor.wallet.reports import POSTED, RESOLVED


@dataclass(frozen=True)
class Problem:
    """A broken invariant: which check, on what, and the two numbers that disagree."""

    check: str
    subject: str
    message: str
    expected: int | None = None
    found: int | None = None

    def __str__(self) -> str:
        numbers = (
            f" (transfers say {self.expected}, stored {self.found})"
            if self.expected is not None
            else ""
        )
        return f"[{self.check}] {self.subject}: {self.message}{numbers}"


def _sum(condition: ColumnElement[bool], value: Any = None) -> ColumnElement[int]:
    return func.coalesce(
        func.sum(case((condition, Transfer.amount_tiyn if value is None else value), else_=0)), 0
    )


def _account_sums(session: Session) -> list[Problem]:
    """(a) every account's four sums equal the sums of its transfers: a posted transfer adds
    to posted; a pending one to pending; a post_pending moves its amount from pending to
    posted; a void_pending takes it out of pending."""
    posted = Transfer.flags.in_(POSTED)
    pending_delta = case(
        (Transfer.flags == "pending", Transfer.amount_tiyn),
        (Transfer.flags.in_(RESOLVED), -Transfer.amount_tiyn),
        else_=0,
    )
    sides = union_all(
        select(
            Transfer.debit_account_id.label("account_id"),
            _sum(posted).label("debits_posted"),
            func.coalesce(func.sum(pending_delta), 0).label("debits_pending"),
            literal(0).label("credits_posted"),
            literal(0).label("credits_pending"),
        ).group_by(Transfer.debit_account_id),
        select(
            Transfer.credit_account_id.label("account_id"),
            literal(0),
            literal(0),
            _sum(posted),
            func.coalesce(func.sum(pending_delta), 0),
        ).group_by(Transfer.credit_account_id),
    ).subquery()
    totals = (
        select(
            sides.c.account_id,
            func.sum(sides.c.debits_posted).label("debits_posted"),
            func.sum(sides.c.debits_pending).label("debits_pending"),
            func.sum(sides.c.credits_posted).label("credits_posted"),
            func.sum(sides.c.credits_pending).label("credits_pending"),
        )
        .group_by(sides.c.account_id)
        .subquery()
    )
    names = ("debits_posted", "debits_pending", "credits_posted", "credits_pending")
    expected = {n: func.coalesce(totals.c[n], 0) for n in names}
    rows = session.execute(
        select(Account.code, *[getattr(Account, n) for n in names], *expected.values())
        .outerjoin(totals, totals.c.account_id == Account.id)
        .where(or_(*[getattr(Account, n) != expected[n] for n in names]))
        .order_by(Account.id)
    ).all()
    problems = []
    for row in rows:
        code, stored, computed = row[0], row[1:5], row[5:9]
        for name, s, c in zip(names, stored, computed, strict=True):
            if int(s) != int(c):
                problems.append(
                    Problem("account_sums", f"account {code}", f"{name} differ", int(c), int(s))
                )
    return problems


def _tranche_sums(session: Session) -> list[Problem]:
    """(b) every tranche's amount, spent, pending and returned equal its transfers; a closed
    tranche holds nothing; each wallet account holds what its tranches hold."""
    by_tranche = (
        select(
            Transfer.tranche_id.label("tranche_id"),
            _sum(and_(Transfer.code == "credit", Transfer.flags == "posted")).label("amount"),
            (
                _sum(and_(Transfer.code == "payment", Transfer.flags.in_(POSTED)))
                - _sum(Transfer.code == "refund")
            ).label("spent"),
            (
                _sum(and_(Transfer.code == "payment", Transfer.flags == "pending"))
                - _sum(and_(Transfer.code == "payment", Transfer.flags.in_(RESOLVED)))
            ).label("pending"),
            _sum(Transfer.code == "sweep").label("returned"),
        )
        .where(Transfer.tranche_id.is_not(None))
        .group_by(Transfer.tranche_id)
        .subquery()
    )
    names = ("amount", "spent", "pending", "returned")
    stored = {
        "amount": Tranche.amount_tiyn,
        "spent": Tranche.spent_tiyn,
        "pending": Tranche.pending_tiyn,
        "returned": Tranche.returned_tiyn,
    }
    computed = {n: func.coalesce(by_tranche.c[n], 0) for n in names}
    rows = session.execute(
        select(Tranche.id, *stored.values(), *computed.values())
        .outerjoin(by_tranche, by_tranche.c.tranche_id == Tranche.id)
        .where(or_(*[stored[n] != computed[n] for n in names]))
        .order_by(Tranche.id)
    ).all()
    problems = []
    for row in rows:
        for name, s, c in zip(names, row[1:5], row[5:9], strict=True):
            if int(s) != int(c):
                problems.append(
                    Problem(
                        "tranche_sums", f"tranche {row[0]}", f"{name}_tiyn differs", int(c), int(s)
                    )
                )
    for tranche_id, remaining in session.execute(
        select(
            Tranche.id,
            Tranche.amount_tiyn - Tranche.spent_tiyn - Tranche.pending_tiyn - Tranche.returned_tiyn,
        )
        .where(
            Tranche.closed.is_(True),
            Tranche.amount_tiyn
            != Tranche.spent_tiyn + Tranche.pending_tiyn + Tranche.returned_tiyn,
        )
        .order_by(Tranche.id)
    ):
        problems.append(
            Problem(
                "tranche_closed",
                f"tranche {tranche_id}",
                "closed but still holds money",
                0,
                int(remaining),
            )
        )
    held = (
        select(
            Tranche.account_id.label("account_id"),
            func.sum(Tranche.amount_tiyn - Tranche.spent_tiyn - Tranche.returned_tiyn).label(
                "held"
            ),
        )
        .group_by(Tranche.account_id)
        .subquery()
    )
    balance = Account.credits_posted - Account.debits_posted
    for code, found, expected in session.execute(
        select(Account.code, balance, func.coalesce(held.c.held, 0))
        .outerjoin(held, held.c.account_id == Account.id)
        .where(Account.kind == "wallet", balance != func.coalesce(held.c.held, 0))
        .order_by(Account.id)
    ):
        problems.append(
            Problem(
                "wallet_holds_tranches",
                f"account {code}",
                "balance is not what its tranches hold",
                int(expected),
                int(found),
            )
        )
    return problems


def _programs(session: Session) -> list[Problem]:
    """(c) per program: the budget's debits are its credit transfers and its tranches'
    amounts; issued = held + spent + pending + returned, with issued read from the budget
    account and returned from the returns account; and across programs, what was spent is
    what merchants and settlement hold."""
    problems: list[Problem] = []
    by_program = {
        pid: (int(amount), int(held), int(spent), int(pending), int(returned))
        for pid, amount, held, spent, pending, returned in session.execute(
            select(
                Tranche.program_id,
                func.sum(Tranche.amount_tiyn),
                func.sum(
                    Tranche.amount_tiyn
                    - Tranche.spent_tiyn
                    - Tranche.pending_tiyn
                    - Tranche.returned_tiyn
                ),
                func.sum(Tranche.spent_tiyn),
                func.sum(Tranche.pending_tiyn),
                func.sum(Tranche.returned_tiyn),
            ).group_by(Tranche.program_id)
        )
    }
    credits: dict[str, int] = {
        program_id: int(amount or 0)
        for program_id, amount in session.execute(
            select(Tranche.program_id, func.sum(Transfer.amount_tiyn))
            .join(Tranche, Tranche.id == Transfer.tranche_id)
            .where(Transfer.code == "credit")
            .group_by(Tranche.program_id)
        )
    }
    accounts = {
        (kind, pid): (int(debits), int(credits_))
        for kind, pid, debits, credits_ in session.execute(
            select(
                Account.kind, Account.program_id, Account.debits_posted, Account.credits_posted
            ).where(Account.kind.in_(("budget", "returns")))
        )
    }
    programs = sorted(set(by_program) | {pid for _, pid in accounts if pid})
    for pid in programs:
        amount, held, spent, pending, returned = by_program.get(pid, (0, 0, 0, 0, 0))
        issued = accounts.get(("budget", pid), (0, 0))[0]
        returned_ledger = accounts.get(("returns", pid), (0, 0))[1]
        credited = int(credits.get(pid) or 0)
        subject = f"program {pid}"
        if issued != credited:
            problems.append(
                Problem(
                    "budget_credits",
                    subject,
                    "budget debits differ from credit transfers",
                    credited,
                    issued,
                )
            )
        if credited != amount:
            problems.append(
                Problem(
                    "budget_credits",
                    subject,
                    "credit transfers differ from tranche amounts",
                    credited,
                    amount,
                )
            )
        if returned_ledger != returned:
            problems.append(
                Problem(
                    "program_returns",
                    subject,
                    "returns account differs from tranches' returned",
                    returned_ledger,
                    returned,
                )
            )
        if issued != held + spent + pending + returned_ledger:
            problems.append(
                Problem(
                    "program_balance",
                    subject,
                    f"issued != held + spent + pending + returned "
                    f"({held} + {spent} + {pending} + {returned_ledger})",
                    issued,
                    held + spent + pending + returned_ledger,
                )
            )
    spent_total = sum(v[2] for v in by_program.values())
    pending_total = sum(v[3] for v in by_program.values())
    merchant_posted, merchant_pending = session.execute(
        select(
            func.coalesce(func.sum(Account.credits_posted - Account.debits_posted), 0),
            func.coalesce(func.sum(Account.credits_pending), 0),
        ).where(Account.kind.in_(("merchant", "settlement")))
    ).one()
    if int(merchant_posted) != spent_total:
        problems.append(
            Problem(
                "merchants_hold_spent",
                "merchants and settlement",
                "their balances differ from what tranches spent",
                spent_total,
                int(merchant_posted),
            )
        )
    if int(merchant_pending) != pending_total:
        problems.append(
            Problem(
                "merchants_hold_spent",
                "merchants",
                "pending credits differ from tranches' pending",
                pending_total,
                int(merchant_pending),
            )
        )
    dp, dpe, cp, cpe = session.execute(
        select(
            func.coalesce(func.sum(Account.debits_posted), 0),
            func.coalesce(func.sum(Account.debits_pending), 0),
            func.coalesce(func.sum(Account.credits_posted), 0),
            func.coalesce(func.sum(Account.credits_pending), 0),
        )
    ).one()
    if (int(dp), int(dpe)) != (int(cp), int(cpe)):
        problems.append(
            Problem(
                "ledger_balanced",
                "all accounts",
                f"debits {dp}/{dpe} != credits {cp}/{cpe} (posted/pending)",
            )
        )
    return problems


def _negative(session: Session) -> list[Problem]:
    """(d) no account but a budget is, or may go, below zero."""
    available = Account.credits_posted - Account.debits_posted - Account.debits_pending
    return [
        Problem(
            "account_negative",
            f"account {code}",
            "may go negative" if may and available_ >= 0 else "is below zero",
            0,
            int(available_),
        )
        for code, available_, may in session.execute(
            select(Account.code, available, Account.may_go_negative)
            .where(Account.kind != "budget", or_(available < 0, Account.may_go_negative.is_(True)))
            .order_by(Account.id)
        )
    ]


def _transfers(session: Session) -> list[Problem]:
    """(e) every transfer moves a positive amount between two accounts; a post or void
    resolves a pending transfer of the same accounts and amount; a payment's transfers make
    its amount and its refunds' sum."""
    problems = [
        Problem("transfer_shape", f"transfer {tid}", f"debit {d} credit {c} amount {amount}")
        for tid, d, c, amount in session.execute(
            select(
                Transfer.id,
                Transfer.debit_account_id,
                Transfer.credit_account_id,
                Transfer.amount_tiyn,
            )
            .where(
                or_(
                    Transfer.debit_account_id == Transfer.credit_account_id,
                    Transfer.amount_tiyn <= 0,
                )
            )
            .order_by(Transfer.id)
        )
    ]
    original = aliased(Transfer)
    for tid, pid in session.execute(
        select(Transfer.id, Transfer.pending_id)
        .outerjoin(original, original.id == Transfer.pending_id)
        .where(
            Transfer.flags.in_(RESOLVED),
            or_(
                original.id.is_(None),
                original.flags != "pending",
                original.amount_tiyn != Transfer.amount_tiyn,
                original.debit_account_id != Transfer.debit_account_id,
                original.credit_account_id != Transfer.credit_account_id,
            ),
        )
        .order_by(Transfer.id)
    ):
        problems.append(
            Problem("transfer_shape", f"transfer {tid}", f"does not resolve pending transfer {pid}")
        )
    moved = (
        select(
            Transfer.payment_id.label("payment_id"),
            _sum(and_(Transfer.code == "payment", Transfer.flags.in_(("posted", "pending")))).label(
                "charged"
            ),
            _sum(Transfer.code == "refund").label("refunded"),
        )
        .where(Transfer.payment_id.is_not(None))
        .group_by(Transfer.payment_id)
        .subquery()
    )
    charged = func.coalesce(moved.c.charged, 0)
    refunded = func.coalesce(moved.c.refunded, 0)
    for pid, amount, refunded_stored, charged_, refunded_ in session.execute(
        select(Payment.id, Payment.amount_tiyn, Payment.refunded_tiyn, charged, refunded)
        .outerjoin(moved, moved.c.payment_id == Payment.id)
        .where(or_(Payment.amount_tiyn != charged, Payment.refunded_tiyn != refunded))
        .order_by(Payment.id)
    ):
        if int(amount) != int(charged_):
            problems.append(
                Problem(
                    "payment_sums",
                    f"payment {pid}",
                    "amount differs from its transfers",
                    int(charged_),
                    int(amount),
                )
            )
        if int(refunded_stored) != int(refunded_):
            problems.append(
                Problem(
                    "payment_sums",
                    f"payment {pid}",
                    "refunded differs from its refund transfers",
                    int(refunded_),
                    int(refunded_stored),
                )
            )
    return problems


CHECKS = (_account_sums, _tranche_sums, _programs, _negative, _transfers)


def reconcile(session: Session) -> list[Problem]:
    """Every broken invariant of the wallet's books; an empty list when they hold."""
    problems: list[Problem] = []
    for check in CHECKS:
        problems += check(session)
    return problems


def counts(session: Session) -> dict[str, int]:
    """How many rows reconcile looked at (for its report)."""
    return {
        "accounts": int(session.scalar(select(func.count()).select_from(Account)) or 0),
        "transfers": int(session.scalar(select(func.count()).select_from(Transfer)) or 0),
        "tranches": int(session.scalar(select(func.count()).select_from(Tranche)) or 0),
        "payments": int(session.scalar(select(func.count()).select_from(Payment)) or 0),
    }
