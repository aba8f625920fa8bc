"""``quality run``: the checks over the whole population, reconciled into issues."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy.engine import Engine

from qamqor.profiles.snapshot import Progress, open_snapshot
from qamqor.quality.service import sync_issues


def run_quality(engine: Engine, as_of: dt.date, progress: Progress | None = None) -> dict[str, Any]:
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC)
    with open_snapshot(engine, as_of, None, progress) as snapshot, engine.begin() as connection:
        if progress is not None:
            progress("recording issues", 0, None)
        result = sync_issues(connection, snapshot, started_at)
        phases = snapshot.phases
    return {
        "run_id": result.run_id,
        "as_of": as_of.isoformat(),
        "findings": snapshot.findings,
        "opened": result.opened,
        "refreshed": result.refreshed,
        "closed": result.closed,
        "phases": phases,
        "seconds": round(time.monotonic() - started, 3),
    }
