"""Concurrent appends from several processes and threads end in one consistent tree.

Appends serialise on the ``audit_head`` row lock (PostgreSQL) or the write lock (SQLite) and
each reads the right edge its predecessor committed; nothing is cached across transactions.
"""

from __future__ import annotations

import multiprocessing
import threading

from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from qamqor.audit import service
from qamqor.audit.models import AuditEntry
from qamqor.kit.db import make_engine, session_scope

PROCESSES = 4
TRANSACTIONS = 15


def _connect(url: str, schema: str | None) -> Engine:
    if schema is None:
        return make_engine(url)
    return make_engine(url, connect_args={"options": f"-csearch_path={schema}"})


def _append_worker(url: str, schema: str | None, worker: int) -> list[int]:
    engine = _connect(url, schema)
    indices = []
    try:
        for t in range(TRANSACTIONS):
            with session_scope(engine) as session:
                # 1 to 3 entries per transaction, one or many at a time
                if t % 2:
                    indices.append(service.append(session, "access", f"w{worker}", {"t": t}))
                else:
                    batch = [("decision", f"w{worker}", {"t": t, "k": k}) for k in range(3)]
                    indices.extend(service.append_many(session, batch))
    finally:
        engine.dispose()
    return indices


def _where(engine: Engine) -> tuple[str, str | None]:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name != "postgresql":
        return url, None
    with engine.connect() as conn:
        return url, str(conn.execute(text("SELECT current_schema()")).scalar_one())


def _check(engine: Engine, indices: list[int]) -> None:
    expected = PROCESSES * sum(1 if t % 2 else 3 for t in range(TRANSACTIONS))
    assert sorted(indices) == list(range(expected))
    with session_scope(engine) as session:
        stored = session.execute(select(AuditEntry.leaf_index).order_by(AuditEntry.leaf_index))
        assert [i for (i,) in stored] == list(range(expected))
        service.checkpoint(session)
        report = service.verify(session)
    assert report.ok, report.problems
    assert report.tree_size == expected


def test_processes_appending_at_once_build_one_consistent_tree(engine: Engine) -> None:
    url, schema = _where(engine)
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        results = pool.starmap(_append_worker, [(url, schema, w) for w in range(PROCESSES)])
    _check(engine, [i for result in results for i in result])


def test_threads_appending_at_once_build_one_consistent_tree(engine: Engine) -> None:
    url, schema = _where(engine)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            results.append(_append_worker(url, schema, worker))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(PROCESSES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    _check(engine, [i for result in results for i in result])
