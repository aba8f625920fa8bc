"""Social Wallet payments on PostgreSQL, side by side with pgbench's tpcb-like on the same server.

Setup (once; ``--reuse`` keeps it):

- database ``--database`` (default ``walletbench``) is created afresh and migrated with
  ``qamqor db upgrade`` (``QAMQOR_DATABASE_URL``);
- ``--merchants`` merchants are registered through ``merchants.register``, half groceries (MCC
  5411, food) and half pharmacies (5912, medicine);
- ``--households`` households each get a food and a medicine wallet with two tranches each
  (expiring in 20 and 50 days). These rows are written by set-based SQL — the very rows
  ``tranches.open_tranche`` writes (account, tranche, credit transfer, sums), 400,000 tranches in
  seconds instead of minutes — and ``reconcile.reconcile`` proves them right after the run;
- ``pgbench -i -s --scale`` into database ``--pgbench-database`` (default ``pgb``).

Then, for every client count C in ``--clients``: pgbench's built-in ``tpcb-like`` script with
``-c C -j min(C, cores) -T --seconds``, and C client processes (multiprocessing), each with
its own connection, paying in a loop for ``--seconds`` through the service exactly as the API
does (``session_scope`` + ``payments.pay(capture=True)``) at a random merchant, for a random
household and amount; each payment's wall time (begin to commit) is one latency sample. The
first second of each run is warm-up and not counted.

    .venv/bin/python benchmarks/wallet_bench.py                      # 100k households; C = 4, 8, 16
    .venv/bin/python benchmarks/wallet_bench.py --reuse --clients 8 --seconds 10 --profile

``--profile`` runs one client under cProfile for ``--seconds`` and prints where a payment's
time goes and how many statements it sends through SQLAlchemy (the ``wallet_pay`` call itself
goes on the driver's connection, ``payments._pay_in_database``). Writes ``results/wallet-pg.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import multiprocessing
import os
import platform
import pstats
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
WARM_UP = 1.0  # seconds of each run not counted
# 5411 groceries draw on food, 5912 pharmacies on medicine: every household holds both.
CATEGORIES = {"5411": "food", "5912": "medicine"}
TRANCHE_TIYN = 5_000_000  # 50,000 ₸: no household runs dry during a run


def psql(database: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-Atc", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def recreate(database: str) -> None:
    psql("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    psql("postgres", f'CREATE DATABASE "{database}"')


def set_up_wallet(url: str, households: int, merchant_count: int, now: dt.datetime) -> list[str]:
    """Migrate, register merchants, credit every household; return the merchants' BINs."""
    env = {**os.environ, "QAMQOR_DATABASE_URL": url}
    subprocess.run([str(ROOT / ".venv/bin/qamqor"), "db", "upgrade"], env=env, check=True, cwd=ROOT)
    from sqlalchemy import text

    from qamqor.kit.db import make_engine, session_scope
    from qamqor.registry.iin import check_digit
    from qamqor.wallet import ledger, merchants

    engine = make_engine(url)
    bins: list[str] = []
    with session_scope(engine) as session:
        serial = 1
        while len(bins) < merchant_count:
            first = f"7705{serial:07d}"
            serial += 1
            digit = check_digit(first)
            if digit is None:
                continue
            category = "5411" if len(bins) % 2 == 0 else "5912"
            bins.append(
                merchants.register(
                    session,
                    bin_=first + str(digit),
                    name=f"Bench shop {len(bins)}",
                    category=category,
                    region_code="ALA",
                    now=now,
                ).bin
            )
        budgets = {
            purpose: ledger.ensure_account(
                session,
                ledger.budget_code(f"bench_{purpose}"),
                "budget",
                now=now,
                program_id=f"bench_{purpose}",
            )
            for purpose in CATEGORIES.values()
        }
    started = time.perf_counter()
    with engine.begin() as conn:
        params = {"n": households, "now": now, "amount": TRANCHE_TIYN}
        for purpose, budget in budgets.items():
            params |= {"purpose": purpose, "program": f"bench_{purpose}", "budget": budget}
            conn.execute(
                text(
                    "INSERT INTO wallet_account (code, kind, household_id, purpose, "
                    "may_go_negative, debits_pending, debits_posted, credits_pending, "
                    "credits_posted, created_at) "
                    "SELECT 'wallet:B' || g || ':' || :purpose, 'wallet', 'B' || g, :purpose, "
                    "false, 0, 0, 0, 0, :now FROM generate_series(1, :n) g"
                ),
                params,
            )
            for days in (20, 50):
                conn.execute(
                    text(
                        "INSERT INTO wallet_tranche (account_id, household_id, program_id, "
                        "purpose, period_start, period_end, expires_at, activation_required, "
                        "amount_tiyn, spent_tiyn, pending_tiyn, returned_tiyn, closed, "
                        "created_at) "
                        "SELECT id, household_id, CAST(:program AS text), purpose, "
                        "CAST(:now AS date), "
                        "CAST(:expires AS date), :expires, false, :amount, 0, 0, 0, false, :now "
                        "FROM wallet_account WHERE kind = 'wallet' AND purpose = :purpose "
                        "ORDER BY id"
                    ),
                    params | {"expires": now + dt.timedelta(days=days)},
                )
            conn.execute(
                text(
                    "INSERT INTO wallet_transfer (idempotency_key, debit_account_id, "
                    "credit_account_id, amount_tiyn, code, flags, tranche_id, created_at) "
                    "SELECT 'bench-credit:' || id, :budget, account_id, amount_tiyn, 'credit', "
                    "'posted', id, :now FROM wallet_tranche WHERE program_id = :program "
                    "ORDER BY id"
                ),
                params,
            )
            conn.execute(
                text(
                    "UPDATE wallet_account a SET credits_posted = s.total FROM ("
                    "SELECT account_id, SUM(amount_tiyn) AS total FROM wallet_tranche "
                    "WHERE program_id = :program GROUP BY account_id) s WHERE a.id = s.account_id"
                ),
                params,
            )
            conn.execute(
                text(
                    "UPDATE wallet_account SET debits_posted = (SELECT SUM(amount_tiyn) "
                    "FROM wallet_tranche WHERE program_id = :program) WHERE id = :budget"
                ),
                params,
            )
        conn.execute(
            text(
                "UPDATE wallet_tranche t SET credit_transfer_id = x.id FROM wallet_transfer x "
                "WHERE x.tranche_id = t.id AND x.code = 'credit'"
            )
        )
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    print(f"credited {households:,} households in {time.perf_counter() - started:.1f} s")
    engine.dispose()
    return bins


def bench_bins(url: str) -> list[str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        bins = [r[0] for r in conn.execute(text("SELECT bin FROM wallet_merchant ORDER BY bin"))]
    engine.dispose()
    return bins


def settle(database: str) -> None:
    """Start each run from a checkpoint and a calm second or two: 20 s of pgbench at ~2,000
    tps leaves a checkpoint's worth of WAL that would otherwise be flushed during the next run,
    always the payments' (they ran second)."""
    psql(database, "CHECKPOINT")
    time.sleep(3)


def run_pgbench(database: str, clients: int, seconds: int) -> dict[str, float]:
    jobs = min(clients, os.cpu_count() or 1)
    done = subprocess.run(
        [
            *("pgbench", "-h", "127.0.0.1", "-U", "postgres", "-b", "tpcb-like"),
            *("-c", str(clients), "-j", str(jobs), "-T", str(seconds), "-P", "5", database),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    assert tps and latency, done.stdout
    return {"tps": float(tps.group(1)), "latency_avg_ms": float(latency.group(1))}


def client(
    url: str,
    bins: list[str],
    households: int,
    seconds: float,
    label: str,
    seed: int,
    ready: Any = None,
    results: Any = None,
) -> dict[str, Any]:
    """Pay in a loop for ``seconds``; the latencies (ms) after the warm-up, and refusals.

    Imports and connects first, then waits at the ``ready`` barrier, so a process slow to start
    on a busy machine does not eat into the measured time."""
    from qamqor.kit.db import make_engine, session_scope
    from qamqor.wallet import payments

    engine = make_engine(url, pool_size=1, max_overflow=0)
    rng = random.Random(seed)
    with engine.connect():
        pass
    if ready is not None:
        ready.wait()
    start_at = time.time()
    latencies: list[float] = []
    refused: dict[str, int] = {}
    counted_from, stop = start_at + WARM_UP, start_at + seconds
    now = dt.datetime.now(dt.UTC)
    i = 0
    while (clock := time.time()) < stop:
        merchant_bin = rng.choice(bins)
        household = f"B{rng.randint(1, households)}"
        began = time.perf_counter()
        try:
            with session_scope(engine) as session:
                payments.pay(
                    session,
                    merchant_bin=merchant_bin,
                    idempotency_key=f"{label}-{seed}-{i}",
                    household_id=household,
                    amount_tiyn=rng.randint(100, 5_000),
                    now=now,
                )
        except payments.PaymentRefusedError as refusal:
            refused[refusal.reason] = refused.get(refusal.reason, 0) + 1
        took = (time.perf_counter() - began) * 1000
        if clock >= counted_from:
            latencies.append(took)
        i += 1
    engine.dispose()
    outcome = {"latencies": latencies, "refused": refused, "cpu_s": time.process_time()}
    if results is not None:
        results.put(outcome)
    return outcome


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_payments(
    url: str, bins: list[str], households: int, clients: int, seconds: int
) -> dict[str, Any]:
    label = f"c{clients}-{int(time.time())}"
    context = multiprocessing.get_context("spawn")
    ready, queue = context.Barrier(clients), context.Queue()
    processes = [
        context.Process(
            target=client, args=(url, bins, households, seconds, label, seed, ready, queue)
        )
        for seed in range(clients)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=seconds + 300) for _ in processes]
    for process in processes:
        process.join()
    latencies = [x for r in results for x in r["latencies"]]
    refused: dict[str, int] = {}
    for r in results:
        for reason, n in r["refused"].items():
            refused[reason] = refused.get(reason, 0) + n
    counted = seconds - WARM_UP
    return {
        "payments": len(latencies),
        "payments_per_s": round(len(latencies) / counted, 1),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
        "client_cpu_ms_per_payment": round(
            1000 * sum(r["cpu_s"] for r in results) / max(1, len(latencies)), 2
        ),
        "refused": refused,
    }


def profile(url: str, bins: list[str], households: int, seconds: int) -> None:
    """One client under cProfile, and the statements one payment sends."""
    from sqlalchemy import event

    from qamqor.kit import db

    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    engine = db.make_engine(url)
    event.listen(engine, "before_cursor_execute", count)
    real = db.make_engine
    db.make_engine = lambda *_a, **_k: engine
    profiler = cProfile.Profile()
    profiler.enable()
    result = client(url, bins, households, seconds, f"prof{time.time()}", 99)
    profiler.disable()
    db.make_engine = real
    made = len(result["latencies"])
    p50 = percentile(result["latencies"], 0.5)
    print(f"\none client, cProfile on: {made} payments, p50 {p50:.2f} ms")
    print(
        "statements per payment through SQLAlchemy (commit not counted; the wallet_pay call "
        f"goes on the driver's connection and is not counted either): {statements / made:.1f}"
        if made
        else "no payment made"
    )
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def reconcile(url: str) -> list[str]:
    from qamqor.kit.db import make_engine, session_scope
    from qamqor.wallet import reconcile

    engine = make_engine(url)
    with session_scope(engine) as session:
        problems = [str(p) for p in reconcile.reconcile(session)]
    engine.dispose()
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--database", default="walletbench")
    parser.add_argument("--pgbench-database", default="pgb")
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--merchants", type=int, default=300)
    parser.add_argument("--scale", type=int, default=10, help="pgbench -i -s")
    parser.add_argument("--clients", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="keep both databases as they are")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/wallet-pg.json")
    args = parser.parse_args()

    url = f"{args.server}/{args.database}"
    now = dt.datetime.now(dt.UTC)
    if not args.reuse:
        recreate(args.database)
        set_up_wallet(url, args.households, args.merchants, now)
        recreate(args.pgbench_database)
        subprocess.run(
            [
                *("pgbench", "-h", "127.0.0.1", "-U", "postgres", "-i", "-q"),
                *("-s", str(args.scale), args.pgbench_database),
            ],
            check=True,
            capture_output=True,
        )
    bins = bench_bins(url)
    wallets = psql(args.database, "SELECT count(*) FROM wallet_account WHERE kind = 'wallet'")
    households = int(wallets) // len(CATEGORIES)
    if args.profile:
        profile(url, bins, households, args.seconds)
        return

    load_before = os.getloadavg()
    rows = []
    for clients in args.clients:
        settle(args.pgbench_database)
        pg = run_pgbench(args.pgbench_database, clients, args.seconds)
        settle(args.database)
        ours = run_payments(url, bins, households, clients, args.seconds)
        row = {
            "clients": clients,
            "pgbench_tps": pg["tps"],
            "pgbench_latency_avg_ms": pg["latency_avg_ms"],
            **ours,
            "ratio": round(ours["payments_per_s"] / pg["tps"], 3),
        }
        rows.append(row)
        print(json.dumps(row))
    problems = reconcile(url)
    result = {
        "benchmark": "wallet payments vs pgbench tpcb-like, PostgreSQL",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "postgresql": psql("postgres", "SHOW server_version"),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "households": households,
        "merchants": len(bins),
        "pgbench_scale": args.scale,
        "seconds_per_run": args.seconds,
        "warm_up_seconds": WARM_UP,
        "target": {"ratio_at_least": 0.3, "p99_ms_at_most": 25},
        "reconcile_problems": problems,
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print("| clients | pgbench tps | pgbench latency avg | Qamqor payments/s | ratio | p50 | p99 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['clients']} | {r['pgbench_tps']:.0f} | {r['pgbench_latency_avg_ms']:.2f} ms "
            f"| {r['payments_per_s']:.0f} | {r['ratio']:.2f} | {r['p50_ms']:.2f} ms "
            f"| {r['p99_ms']:.2f} ms |"
        )
    print(f"\nreconcile: {'ok' if not problems else problems[:5]}; load {load_before}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
