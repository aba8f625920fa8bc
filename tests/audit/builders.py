"""Small builders for audit log tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from qamqor.audit import service
from qamqor.kit.db import session_scope

KINDS = ("access", "decision", "offer", "transfer", "override")


def entry(i: int) -> tuple[str, str | None, dict[str, Any]]:
    """A varied entry: kinds in turn, a subject on most, non-ASCII text, nested values."""
    subject = None if i % 5 == 4 else f"household:{i % 3}"
    payload = {
        "actor": f"officer-{i}",
        "purpose": "пересмотр дела / іс қарау",
        "amount_tiyn": 1000 * i,
        "fields": ["income", "members"][: 1 + i % 2],
    }
    return KINDS[i % len(KINDS)], subject, payload


def fill_log(engine: Engine, size: int, checkpoints: tuple[int, ...] = ()) -> None:
    """Append ``size`` entries one commit each, signing a checkpoint at each size listed."""
    for i in range(size):
        with session_scope(engine) as session:
            service.append(session, *entry(i))
            if i + 1 in checkpoints:
                service.checkpoint(session)
