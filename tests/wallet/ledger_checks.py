"""What must hold in the wallet's tables at every commit, recomputed from the transfers.

The stateful, concurrency and crash tests call :func:`check_ledger` after every step, kill or
race. It trusts no running sum: every account's four sums, every tranche's spent, pending and
returned, every payment's draws and every program's totals are recomputed from the
append-only transfers and compared. A failure names the row and both numbers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

from qamqor.wallet.categories import allowed_purposes


@dataclass
class LedgerTotals:
    """Per program: what its budget issued, and where that money is now."""

    issued: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    spent: dict[str, int] = field(default_factory=dict)
    returned: dict[str, int] = field(default_factory=dict)
    payments: int = 0


def _transfer_sums(session: Session, side: str) -> dict[int, tuple[int, int]]:
    """(posted, pending) per account on the debit or credit ``side``, from the transfers."""
    rows = session.execute(
        text(
            f"SELECT {side}_account_id, "
            "SUM(CASE WHEN flags IN ('posted', 'post_pending') THEN amount_tiyn ELSE 0 END), "
            "SUM(CASE flags WHEN 'pending' THEN amount_tiyn WHEN 'posted' THEN 0 "
            "ELSE -amount_tiyn END) "
            f"FROM wallet_transfer GROUP BY {side}_account_id"
        )
    ).all()
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def check_ledger(session: Session) -> LedgerTotals:
    """Assert every invariant of the ledger; return the per-program totals."""
    totals = LedgerTotals()
    debits = _transfer_sums(session, "debit")
    credits = _transfer_sums(session, "credit")
    accounts = session.execute(
        text(
            "SELECT id, code, kind, program_id, may_go_negative, debits_pending, debits_posted, "
            "credits_pending, credits_posted FROM wallet_account"
        )
    ).all()
    by_id = {a.id: a for a in accounts}
    for a in accounts:
        dp, dq = debits.get(a.id, (0, 0))
        cp, cq = credits.get(a.id, (0, 0))
        assert (a.debits_posted, a.debits_pending, a.credits_posted, a.credits_pending) == (
            dp,
            dq,
            cp,
            cq,
        ), f"{a.code}: sums differ from its transfers"
        assert min(a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) >= 0
        assert bool(a.may_go_negative) == (a.kind == "budget"), a.code
        if a.kind != "budget":
            assert a.debits_posted + a.debits_pending <= a.credits_posted, f"{a.code} below zero"

    # tranches: amount = spent + pending + returned + remaining, each part from its transfers
    per_tranche = session.execute(
        text(
            "SELECT tranche_id, "
            "SUM(CASE WHEN code = 'credit' THEN amount_tiyn ELSE 0 END), "
            "SUM(CASE WHEN code = 'credit' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN code = 'payment' AND flags IN ('posted', 'post_pending') "
            "THEN amount_tiyn WHEN code = 'refund' THEN -amount_tiyn ELSE 0 END), "
            "SUM(CASE WHEN code = 'payment' AND flags = 'pending' THEN amount_tiyn "
            "WHEN code = 'payment' AND flags IN ('post_pending', 'void_pending') "
            "THEN -amount_tiyn ELSE 0 END), "
            "SUM(CASE WHEN code = 'sweep' THEN amount_tiyn ELSE 0 END) "
            "FROM wallet_transfer WHERE tranche_id IS NOT NULL GROUP BY tranche_id"
        )
    ).all()
    moved = {row[0]: tuple(int(v) for v in row[1:]) for row in per_tranche}
    tranches = session.execute(
        text(
            "SELECT id, account_id, household_id, program_id, purpose, amount_tiyn, spent_tiyn, "
            "pending_tiyn, returned_tiyn, closed, credit_transfer_id FROM wallet_tranche"
        )
    ).all()
    tranche_by_id = {t.id: t for t in tranches}
    available: dict[int, int] = defaultdict(int)
    pending_per_account: dict[int, int] = defaultdict(int)
    for t in tranches:
        credit, credit_count, spent, pending, returned = moved.get(t.id, (0, 0, 0, 0, 0))
        assert (credit_count, credit) == (1, t.amount_tiyn), f"tranche {t.id}: its credit"
        assert (t.spent_tiyn, t.pending_tiyn, t.returned_tiyn) == (spent, pending, returned), (
            f"tranche {t.id}: spent/pending/returned {t.spent_tiyn}/{t.pending_tiyn}/"
            f"{t.returned_tiyn}, transfers say {spent}/{pending}/{returned}"
        )
        remaining = t.amount_tiyn - spent - pending - returned
        assert remaining >= 0 and min(spent, pending, returned) >= 0, f"tranche {t.id}"
        if t.closed:
            assert (remaining, pending) == (0, 0), f"closed tranche {t.id} still holds money"
        account = by_id[t.account_id]
        assert account.kind == "wallet" and account.code.endswith(f":{t.purpose}"), t.id
        available[t.account_id] += remaining
        pending_per_account[t.account_id] += pending
        program = t.program_id
        totals.issued[program] = totals.issued.get(program, 0) + t.amount_tiyn
        totals.held[program] = totals.held.get(program, 0) + remaining
        totals.pending[program] = totals.pending.get(program, 0) + pending
        totals.spent[program] = totals.spent.get(program, 0) + spent
        totals.returned[program] = totals.returned.get(program, 0) + returned
    for a in accounts:
        if a.kind == "wallet":
            # a wallet holds exactly what its tranches hold: no money outside a label
            assert a.credits_posted - a.debits_posted - a.debits_pending == available[a.id], (
                f"{a.code}: available differs from its tranches' remainders"
            )
            assert a.debits_pending == pending_per_account[a.id], a.code
    # per program: issued = held + pending + spent + returned, and the ledger agrees
    for a in accounts:
        if a.kind == "budget":
            program = a.program_id
            assert a.debits_posted == totals.issued.get(program, 0), f"{a.code}: issued"
            assert a.credits_posted == a.credits_pending == a.debits_pending == 0, a.code
        if a.kind == "returns":
            assert a.credits_posted == totals.returned.get(a.program_id, 0), a.code
    for program, issued in totals.issued.items():
        parts = (
            totals.held[program]
            + totals.pending[program]
            + totals.spent[program]
            + totals.returned[program]
        )
        assert issued == parts, f"{program}: issued {issued}, held+pending+spent+returned {parts}"

    # payments: wholly applied, on allowed purposes of the payer's household only
    payments = session.execute(
        text(
            "SELECT id, household_id, category, amount_tiyn, refunded_tiyn, status, merchant_bin "
            "FROM wallet_payment"
        )
    ).all()
    draws: dict[int, list[tuple[int | None, str, str, int]]] = defaultdict(list)
    for row in session.execute(
        text(
            "SELECT payment_id, tranche_id, code, flags, amount_tiyn FROM wallet_transfer "
            "WHERE payment_id IS NOT NULL"
        )
    ).all():
        draws[row[0]].append((row[1], row[2], row[3], int(row[4])))
    merchant_net: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for p in payments:
        moves = draws.get(p.id, [])
        original = [m for m in moves if m[1] == "payment" and m[2] in ("posted", "pending")]
        assert sum(m[3] for m in original) == p.amount_tiyn, f"payment {p.id} partly applied"
        flags = {m[2] for m in original}
        resolved = [m for m in moves if m[1] == "payment" and m[2] not in ("posted", "pending")]
        refunded = sum(m[3] for m in moves if m[1] == "refund")
        assert refunded == p.refunded_tiyn, f"payment {p.id}: refunds"
        if p.status == "posted":
            assert flags == {"posted"} or (
                flags == {"pending"}
                and sorted(m[3] for m in resolved if m[2] == "post_pending")
                == sorted(m[3] for m in original)
                and len(resolved) == len(original)
            ), f"payment {p.id} posted but its transfers are not"
        elif p.status == "pending":
            assert flags == {"pending"} and not resolved and refunded == 0, p.id
        else:
            assert p.status == "voided" and flags == {"pending"} and refunded == 0, p.id
            assert len(resolved) == len(original), p.id
            assert all(m[2] == "void_pending" for m in resolved), p.id
        allowed = allowed_purposes(p.category)
        for tranche_id, _code, _flags, _amount in moves:
            assert tranche_id is not None, f"payment {p.id}: a transfer without a tranche"
            tranche = tranche_by_id[tranche_id]
            assert tranche.purpose in allowed, (
                f"payment {p.id} at category {p.category} drew on {tranche.purpose}"
            )
            assert tranche.household_id == p.household_id, f"payment {p.id}: another household"
        posted, held = merchant_net[p.merchant_bin]
        if p.status == "posted":
            posted += p.amount_tiyn - p.refunded_tiyn
        elif p.status == "pending":
            held += p.amount_tiyn
        merchant_net[p.merchant_bin] = (posted, held)
    settled: dict[int, int] = dict(
        session.execute(
            text(
                "SELECT debit_account_id, SUM(amount_tiyn) FROM wallet_transfer "
                "WHERE code = 'settlement' GROUP BY debit_account_id"
            )
        ).all()
    )
    for a in accounts:
        if a.kind == "merchant":
            bin_ = a.code.split(":", 1)[1]
            posted, held = merchant_net.get(bin_, (0, 0))
            assert a.credits_posted - a.debits_posted + int(settled.get(a.id, 0)) == posted, a.code
            assert a.credits_pending == held, a.code
    totals.payments = len(payments)
    return totals
