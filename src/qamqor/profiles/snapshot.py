"""One run's view of the registries: facts loaded, relations built, quality checks run.

``profiles build`` and ``quality run`` both start here, so the quality flags a profile carries
are the findings over the very facts its values came from.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from qamqor.kit.duck import compute_engine, lock_down
from qamqor.profiles import facts, relations
from qamqor.profiles.catalogue import Catalogue, load_catalogue, parameter_values
from qamqor.quality.checks import Check, load_checks, prepare_context, run_checks
from qamqor.registry.models import Batch

Progress = Callable[[str, int, int | None], None]  # phase, done, total


@dataclass
class Snapshot:
    con: duckdb.DuckDBPyConnection
    as_of: dt.date
    households: list[str] | None  # None: the whole population
    max_batch_id: int
    catalogue: Catalogue
    checks: dict[str, Check]
    fact_rows: dict[str, int]
    findings: dict[str, int]
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        return "all" if self.households is None else "households"

    def target_count(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM target").fetchall()[0][0])


def last_received(engine: Engine, max_batch: int) -> dict[str, dt.date | None]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(Batch.source, func.max(Batch.received_at))
            .where(Batch.id <= max_batch)
            .group_by(Batch.source)
        ).all()
    return {source: received.date() if received else None for source, received in rows}


@contextmanager
def open_snapshot(
    engine: Engine,
    as_of: dt.date,
    households: Sequence[str] | None = None,
    progress: Progress | None = None,
    max_batch_id: int | None = None,
    now: dt.datetime | None = None,
    check: bool = True,
    resident: bool = False,
) -> Iterator[Snapshot]:
    """Facts up to the newest batch (or ``max_batch_id``), relations as of ``as_of``, and,
    unless ``check`` is off (listing a value's sources needs no findings), the checks run.

    ``resident``: in a scratch schema of the process's resident DuckDB (``kit/duck.py``; a
    worker's micro-batches) rather than an engine opened for this snapshot."""
    catalogue = load_catalogue()
    checks = load_checks()
    phases: dict[str, float] = {}
    mark = time.monotonic()
    with compute_engine("profiles", on_disk=households is None, resident=resident) as con:
        with engine.connect() as conn:
            max_batch = facts.latest_batch_id(conn) if max_batch_id is None else max_batch_id
            if households is None:
                rows = facts.load_all(
                    con,
                    engine,
                    max_batch,
                    None if progress is None else lambda s, n: progress(f"reading {s}", n, None),
                )
            else:
                rows = facts.load_households(con, conn, list(households), max_batch)
        phases["read"] = round(time.monotonic() - mark, 3)
        mark = time.monotonic()
        if progress is not None:
            progress("relating", 0, None)
        relations.create_relations(
            con,
            as_of,
            parameter_values(catalogue),
            None if households is None else list(households),
        )
        if check:
            today = (now or dt.datetime.now(dt.UTC)).date()
            prepare_context(con, as_of, last_received(engine, max_batch), today)
        lock_down(con)
        phases["relate"] = round(time.monotonic() - mark, 3)
        mark = time.monotonic()
        if progress is not None:
            progress("checking", 0, None)
        found = run_checks(con, checks, whole_population=households is None) if check else {}
        phases["check"] = round(time.monotonic() - mark, 3)
        yield Snapshot(
            con=con,
            as_of=as_of,
            households=None if households is None else sorted(set(households)),
            max_batch_id=max_batch,
            catalogue=catalogue,
            checks=checks,
            fact_rows=rows,
            findings=found,
            phases=phases,
        )
