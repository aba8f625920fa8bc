"""Audit log benchmark: durable appends per second and inclusion-proof latency at 10 M entries.

For each database: a fresh schema (PostgreSQL) or file (SQLite) migrated with the real
migrations, filled to ``--entries`` through ``service.append_many`` in large batches (the
same code as every append, committed per batch), then measured on the real path:

- durable appends/s: committed transactions of 1 entry (``append``), 100 and 1,000 entries
  (``append_many``), one after the other in one process, as a caller would;
- inclusion-proof latency: a random entry's proof fetched from the database in its own
  transaction (as one API request) and verified against the signed checkpoint's root; p50,
  p99 and max over ``--proofs`` proofs;
- checkpoint signing at full size, and optionally ``--verify``: the full recomputation.

    python benchmarks/audit_bench.py                       # 10 M entries, PostgreSQL and SQLite
    python benchmarks/audit_bench.py --entries 100000 --db sqlite
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from qamqor.audit import merkle, service
from qamqor.kit import migrate
from qamqor.kit.db import make_engine, session_scope

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("QAMQOR_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1/test")
SCHEMA = "audit_bench"
KINDS = ("access", "access", "access", "decision", "offer", "transfer", "override")
Entry = tuple[str, str | None, dict[str, Any]]


def make_entry(i: int) -> Entry:
    """An access-log-like entry of ~150 bytes: who, why, on what basis, which fields."""
    kind = KINDS[i % len(KINDS)]
    return (
        kind,
        f"household:{i * 7919 % 6_200_000}",
        {
            "actor": f"officer:{i % 4099}",
            "purpose": "case_review",
            "basis": "appeal" if i % 3 else "scheduled_review",
            "fields": ["income", "members", "disability"][: 1 + i % 3],
            "case": f"C-{i // 10}",
        },
    )


@dataclass
class Result:
    database: str
    entries: int = 0
    fill_entries: int = 0
    fill_batch: int = 0
    fill_seconds: float = 0.0
    appends: dict[int, tuple[int, float]] = field(default_factory=dict)  # batch -> (n, seconds)
    commit_floor: float = 0.0
    proof_ms: list[float] = field(default_factory=list)
    checkpoint_ms: float = 0.0
    verify_seconds: float | None = None
    size_mib: float = 0.0


def _postgres(reuse: bool) -> Engine:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not reuse:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
    admin.dispose()
    return make_engine(PG_URL, connect_args={"options": f"-csearch_path={SCHEMA}"})


def _sqlite(work: Path, reuse: bool) -> Engine:
    path = work / "audit-bench.db"
    for suffix in ("", "-wal", "-shm"):
        if not reuse:
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return make_engine(f"sqlite:///{path}")


def _size_mib(engine: Engine, work: Path) -> float:
    if engine.dialect.name == "sqlite":
        return sum(p.stat().st_size for p in work.glob("audit-bench.db*")) / 2**20
    with engine.connect() as conn:
        size = conn.execute(
            text(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relkind = 'r'"
            ),
            {"s": SCHEMA},
        ).scalar_one()
    return float(size) / 2**20


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fill(engine: Engine, entries: int, batch: int) -> float:
    started = time.perf_counter()
    done = 0
    while done < entries:
        count = min(batch, entries - done)
        with session_scope(engine) as session:
            service.append_many(session, [make_entry(done + k) for k in range(count)])
        done += count
        if done % 1_000_000 < batch:
            rate = done / (time.perf_counter() - started)
            _say(f"filled {done:,} ({rate:,.0f}/s)")
    return time.perf_counter() - started


def measure_appends(engine: Engine, start: int, batch: int, transactions: int) -> tuple[int, float]:
    started = time.perf_counter()
    for t in range(transactions):
        with session_scope(engine) as session:
            if batch == 1:
                service.append(session, *make_entry(start + t))
            else:
                base = start + t * batch
                service.append_many(session, [make_entry(base + k) for k in range(batch)])
    return batch * transactions, time.perf_counter() - started


def measure_commit_floor(engine: Engine, transactions: int) -> float:
    """Committed transactions/s of a one-row UPDATE alone: the ceiling for 1-entry appends."""
    started = time.perf_counter()
    for _ in range(transactions):
        with session_scope(engine) as session:
            session.execute(text("UPDATE audit_head SET tree_size = tree_size WHERE id = 1"))
    return transactions / (time.perf_counter() - started)


def measure_proofs(engine: Engine, size: int, root: bytes, count: int) -> list[float]:
    rng = random.Random(2026)
    timings = []
    for _ in range(count):
        index = rng.randrange(size)
        started = time.perf_counter()
        with session_scope(engine) as session:
            proof = service.inclusion_proof(session, index, size)
        ok = merkle.verify_inclusion(index, size, proof.leaf_hash, proof.hashes, root)
        timings.append((time.perf_counter() - started) * 1000)
        if not ok:
            sys.exit(f"inclusion proof of {index} does not verify against the checkpoint")
    return timings


def run(database: str, args: argparse.Namespace) -> Result:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    engine = _postgres(args.reuse) if database == "postgresql" else _sqlite(work, args.reuse)
    result = Result(database)
    try:
        migrate.upgrade(engine)
        with session_scope(engine) as session:
            size = service.tree_size(session)
        if size >= args.entries:
            _say(f"{database}: reusing the log of {size:,} entries")
        else:
            if size:
                sys.exit(f"{database}: a partial log of {size:,} entries: run without --reuse")
            _say(f"{database}: filling {args.entries:,} entries, batches of {args.fill_batch:,}")
            result.fill_seconds = fill(engine, args.entries, args.fill_batch)
            result.fill_entries, result.fill_batch = args.entries, args.fill_batch
            size = args.entries
        result.commit_floor = measure_commit_floor(engine, args.single)
        _say(f"{database}: one-row UPDATE transactions: {result.commit_floor:,.0f}/s")
        plan = [(1, args.single), (100, args.batches_100), (1000, args.batches_1000)]
        for batch, transactions in plan:
            n, seconds = measure_appends(engine, size, batch, transactions)
            result.appends[batch] = (n, seconds)
            size += n
            _say(f"{database}: {batch}-entry transactions: {n / seconds:,.0f} entries/s")
        started = time.perf_counter()
        with session_scope(engine) as session:
            checkpoint = service.checkpoint(session)
        result.checkpoint_ms = (time.perf_counter() - started) * 1000
        result.entries = checkpoint.tree_size
        result.proof_ms = measure_proofs(
            engine, checkpoint.tree_size, checkpoint.root_hash, args.proofs
        )
        _say(f"{database}: proof p50 {statistics.median(result.proof_ms):.2f} ms")
        if args.verify:
            started = time.perf_counter()
            with session_scope(engine) as session:
                report = service.verify(session)
            result.verify_seconds = time.perf_counter() - started
            if not report.ok:
                sys.exit(f"verify found problems: {report.problems[:5]}")
            _say(f"{database}: verify {result.verify_seconds:.0f} s")
        result.size_mib = _size_mib(engine, work)
    finally:
        engine.dispose()
        if not (args.keep or args.reuse):
            if database == "postgresql":
                admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
                admin.dispose()
            else:
                for path in work.glob("audit-bench.db*"):
                    path.unlink()
    return result


def args_single(result: Result) -> int:
    return result.appends[1][0] if 1 in result.appends else 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(results: list[Result]) -> str:
    name = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
    lines = [
        "| database | log size | entries per commit | commits | durable appends/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.fill_entries:
            lines.append(
                f"| {name[r.database]} | 0 → {r.fill_entries:,} | {r.fill_batch:,} (fill) | "
                f"{-(-r.fill_entries // r.fill_batch):,} | "
                f"{r.fill_entries / r.fill_seconds:,.0f} |"
            )
        lines.append(
            f"| {name[r.database]} | {r.entries:,} | (a one-row UPDATE, for scale) | "
            f"{args_single(r):,} | {r.commit_floor:,.0f} transactions/s |"
        )
        for batch, (n, seconds) in r.appends.items():
            lines.append(
                f"| {name[r.database]} | {r.entries:,} | {batch:,} | {n // batch:,} | "
                f"{n / seconds:,.0f} |"
            )
    lines += [
        "",
        "| database | log size | inclusion proof (fetch + verify), p50 | p99 | max | "
        "checkpoint | full verify | database size |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        verify = f"{r.verify_seconds:,.0f} s" if r.verify_seconds is not None else "–"
        lines.append(
            f"| {name[r.database]} | {r.entries:,} | {statistics.median(r.proof_ms):.2f} ms | "
            f"{_percentile(r.proof_ms, 0.99):.2f} ms | {max(r.proof_ms):.2f} ms | "
            f"{r.checkpoint_ms:.1f} ms | {verify} | {r.size_mib / 1024:.1f} GiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--db", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--fill-batch", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=3000, help="1-entry transactions")
    parser.add_argument("--batches-100", type=int, default=300)
    parser.add_argument("--batches-1000", type=int, default=50)
    parser.add_argument("--proofs", type=int, default=2000)
    parser.add_argument("--verify", action="store_true", help="also time a full verify")
    parser.add_argument("--work", default=str(ROOT / "var" / "bench"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "audit.md"))
    parser.add_argument("--keep", action="store_true", help="keep the filled database")
    parser.add_argument(
        "--reuse", action="store_true", help="measure on a log kept by --keep instead of filling"
    )
    args = parser.parse_args(argv)

    results: list[Result] = []
    load_before = os.getloadavg()[1]
    for database in args.db:
        results.append(run(database, args))
    load_after = os.getloadavg()[1]
    with make_engine(PG_URL).connect() as conn:
        pg_version = conn.execute(text("SHOW server_version")).scalar_one()
    header = (
        f"Audit log benchmark, {dt.date.today():%Y-%m-%d}: `python benchmarks/audit_bench.py "
        f"{' '.join(sys.argv[1:] if argv is None else argv)}`\n\n"
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"PostgreSQL {pg_version} (synchronous_commit on, fsync on), SQLite "
        f"{sqlite3.sqlite_version} (WAL, synchronous=NORMAL); one process, one connection. "
        f"The machine is shared: 5-minute load average {load_before:.1f} at the start, "
        f"{load_after:.1f} at the end (2 cores).\n"
    )
    body = header + "\n" + table(results) + "\n"
    Path(args.out).write_text(body)
    print(body)


if __name__ == "__main__":
    main()
