"""Proactive worker: sustained events per second and event -> offer latency.

On a database with profiles built and decided (``qamqor profiles build``, ``qamqor decide``),
a producer process pushes realistic registry events through the inbox service
(``registry.events.accept_events``: validated and committed, as the API does) at a fixed rate,
while ``--workers`` ``qamqor worker`` processes consume them. Measured:

- sustained events/s: events done per second over the run, from the inbox's own timestamps
  (first receipt to last ``done_at``). It cannot exceed ``--rate``: the producer pushes at that
  pace, and the last events still take a cycle after their receipt. Whether the workers keep up
  with the rate shows in ``tail_seconds`` (last receipt to the inbox drained: about a cycle
  when they keep up); what they can do at most is measured by pushing faster than they work
  (e.g. ``--rate 4000``): the rate is then their drain rate;
- event -> offer latency: ``offer.created_at - event_received_at`` for every offer the run
  made (p50, p99, max);
- the worker's own cycle phases (apply, profiles, decide, reconcile), from its JSON lines.

The events: a wage reported for a member for the last month of the quarter (income registry),
a job lost (employment registry: an open contract closed), and births (population + household:
the child joins the family), in the proportions 60/20/20.

    python benchmarks/worker_bench.py --database-url postgresql+psycopg://postgres@127.0.0.1/b1m \\
        --events 20000 --rate 2000 --workers 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _newborn(rng: random.Random, parent_surname: str) -> tuple[dt.date, str, str, str, str]:
    """A child's birth date, sex and names as a registry would send them: born in the quarter
    before the reference date (2026-10-01, so the child counts in the profile), a first name
    and a patronymic drawn from the synthetic population's pools, the parent's surname in the
    child's gender. (Every child was once an "Алихан" with no patronymic born in one of 28
    days: after a few hundred thousand events each birth had dozens of namesakes, and every
    cycle read them all for the duplicate-person check, the runs getting slower one by one.)"""
    from qamqor.synth.names import feminine, masculine, tables

    names = tables()
    sex = rng.choice("MF")
    born = dt.date(2026, 7, 1) + dt.timedelta(days=rng.randrange(92))
    pool = names.first_m if sex == "M" else names.first_f
    first_name = str(pool[rng.randrange(len(pool))])
    father = rng.randrange(len(names.first_m))
    forms = (
        (names.patronymic_ru_m, names.patronymic_kk_m)
        if sex == "M"
        else (names.patronymic_ru_f, names.patronymic_kk_f)
    )
    patronymic = str(forms[rng.randrange(2)][father])
    family = masculine(parent_surname)
    last_name = feminine(family) if sex == "F" else family
    return born, sex, first_name, patronymic, last_name


def make_events(count: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """(source, event) pairs for members of existing households, chosen at random."""
    from sqlalchemy import text

    from qamqor.kit.db import get_engine
    from qamqor.registry.iin import make_iin

    rng = random.Random(seed)
    engine = get_engine()
    with engine.connect() as conn:
        members = conn.execute(
            text(
                "SELECT household_id, iin FROM fact_household WHERE member_to IS NULL "
                f"ORDER BY random() LIMIT {count}"
            )
        ).all()
        jobs = conn.execute(
            text(
                "SELECT source_record_id, iin, status, employer_bin, start_date FROM "
                "fact_employment WHERE end_date IS NULL AND status = 'employed' "
                f"ORDER BY random() LIMIT {count // 4 + 1}"
            )
        ).all()
        payers = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT DISTINCT payer_bin FROM fact_income WHERE payer_bin IS NOT NULL "
                    "LIMIT 1000"
                )
            ).all()
        ]
        people = (
            {
                r[0]: r
                for r in conn.execute(
                    text(
                        "SELECT iin, last_name, region_code, settlement FROM fact_population "
                        "WHERE iin IN ("
                        + ",".join(f"'{m[1]}'" for m in members[: count // 4 + 1])
                        + ")"
                    )
                ).all()
            }
            if members
            else {}
        )
    events: list[tuple[str, dict[str, Any]]] = []
    today = dt.date(2026, 11, 29)
    occurred = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC).isoformat()
    serial = 0
    n = 0
    job_iter = iter(jobs)
    while len(events) < count:
        n += 1
        household, iin = members[n % len(members)]
        kind = rng.random()
        if kind < 0.6:
            events.append(
                (
                    "income",
                    {
                        "event_id": f"BENCH-INC-{seed}-{n}",
                        "type": "income_reported",
                        "subject_iin": iin,
                        "occurred_at": occurred,
                        "payload": {
                            "record_id": f"BENCH-INC-{seed}-{n}",
                            "iin": iin,
                            "period": "2026-09",
                            "income_type": "wage",
                            "amount": f"{rng.randint(20_000, 400_000)}.00",
                            "payer_bin": rng.choice(payers) if payers else "",
                            "updated_on": today.isoformat(),
                        },
                    },
                )
            )
        elif kind < 0.8:
            job = next(job_iter, None)
            if job is None:
                continue
            record, job_iin, status, employer, start = job
            events.append(
                (
                    "employment",
                    {
                        "event_id": f"BENCH-JOB-{seed}-{n}",
                        "type": "job_lost",
                        "subject_iin": job_iin,
                        "occurred_at": occurred,
                        "payload": {
                            "record_id": record,
                            "iin": job_iin,
                            "status": status,
                            "employer_bin": employer or "",
                            "start_date": str(start),
                            "end_date": "2026-09-15",
                            "updated_on": today.isoformat(),
                        },
                    },
                )
            )
        else:
            parent = people.get(iin)
            if parent is None:
                continue
            born, sex, first_name, patronymic, last_name = _newborn(rng, parent[1])
            child = None
            while child is None:
                serial += 1
                child = make_iin(born, sex, 5000 + serial % 5000)
            events.append(
                (
                    "population",
                    {
                        "event_id": f"BENCH-BIRTH-{seed}-{n}",
                        "type": "birth",
                        "subject_iin": child,
                        "occurred_at": occurred,
                        "payload": {
                            "record_id": f"BENCH-P-{seed}-{n}",
                            "iin": child,
                            "last_name": last_name,
                            "first_name": first_name,
                            "patronymic": patronymic,
                            "birth_date": born.isoformat(),
                            "sex": sex,
                            "region_code": parent[2],
                            "settlement": parent[3],
                            "updated_on": born.isoformat(),
                        },
                    },
                )
            )
            events.append(
                (
                    "household",
                    {
                        "event_id": f"BENCH-MOVEIN-{seed}-{n}",
                        "type": "member_moved_in",
                        "subject_iin": child,
                        "occurred_at": occurred,
                        "payload": {
                            "record_id": f"BENCH-H-{seed}-{n}",
                            "household_id": household,
                            "iin": child,
                            "relation": "child",
                            "member_from": born.isoformat(),
                            "updated_on": born.isoformat(),
                        },
                    },
                )
            )
    return events[:count]


# What the worker rewrites (a row version per event and per decision changed): vacuumed before
# a run, so that one run starts where the last left off. Autovacuum would do it between runs,
# but it is off on this machine's PostgreSQL (a CI configuration, conf.d/90-ci.conf).
CHURNED = (
    "registry_event",
    "decision_head",
    "profile_head",
    "proactive_offer",
    "dq_issue",
    "dq_issue_subject",
)


def vacuum() -> None:
    from qamqor.kit.db import get_engine

    with get_engine().connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql(f"VACUUM (ANALYZE) {', '.join(CHURNED)}")


def prewarm() -> float:
    """Read every table and index of the database into the OS cache (``pg_prewarm``'s
    ``read`` mode: not into ``shared_buffers``); returns the seconds it took. The cache lost
    parts of the database between runs here (a 200-event cycle's fact reads took 243 ms of
    block reads, 62 ms once the files were read again), and a run on a cold cache measures the
    disk, not the code."""
    from qamqor.kit.db import get_engine

    started = time.monotonic()
    with get_engine().connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        conn.exec_driver_sql(
            "SELECT sum(pg_prewarm(c.oid, 'read')) FROM pg_class c "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'i')"
        )
    return round(time.monotonic() - started, 1)


def produce(events_file: Path, rate: float, chunk: int) -> dict[str, Any]:
    """Push the events at ``rate`` per second in requests of ``chunk`` events per source."""
    from collections import defaultdict

    from qamqor.kit.db import session_scope
    from qamqor.registry.events import accept_events

    events = [(source, event) for source, event in json.loads(events_file.read_text())]
    started = time.monotonic()
    sent = 0
    rejected = 0
    for i in range(0, len(events), chunk):
        part = events[i : i + chunk]
        by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for source, event in part:
            by_source[source].append(event)
        with session_scope() as session:
            now = dt.datetime.now(dt.UTC)
            for source, group in by_source.items():
                results = accept_events(session, source, group, now)
                rejected += sum(1 for r in results if r.status == "rejected")
        sent += len(part)
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    return {"sent": sent, "rejected": rejected, "seconds": round(time.monotonic() - started, 2)}


def _wait_ready(logs: list[Path], workers: list[subprocess.Popen[bytes]]) -> list[float]:
    """Wait until every worker has warmed up (``qamqor worker`` says "worker ready" on
    standard error, after a cycle's work on a few households: ``worker.warm_cycle``), so the
    first events do not wait for a worker's start; returns how long each took to warm up."""
    deadline = time.monotonic() + 120
    seconds: dict[Path, float] = {}
    while len(seconds) < len(logs):
        for log, worker in zip(logs, workers, strict=True):
            if worker.poll() is not None:
                raise SystemExit(f"a worker exited while starting: see {log}")
            found = re.search(r"worker ready: warmed up in ([0-9.]+) s", log.read_text())
            if found:
                seconds[log] = float(found.group(1))
        if time.monotonic() > deadline:
            raise SystemExit(f"the workers did not start within 120 s: see {logs}")
        time.sleep(0.1)
    return [seconds[log] for log in logs]


def _proc_stat(pid: int | str) -> tuple[str, list[str]] | None:
    """(command, the fields after it) of ``/proc/PID/stat``; None when the process is gone."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes ``pids`` (those still running)."""
    total = 0
    for pid in pids:
        found = _proc_stat(pid)
        if found is not None:
            total += int(found[1][11]) + int(found[1][12])
    return total / os.sysconf("SC_CLK_TCK")


def _server_cpu_seconds() -> float:
    """CPU seconds of the PostgreSQL server on this machine: its running processes' own and,
    through the postmaster's children counters, those of the backends that have exited (the
    producer's connections close before the run ends)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        found = _proc_stat(entry.name)
        if found is None or found[0] != "postgres":
            continue
        fields = found[1]
        total += int(fields[11]) + int(fields[12])
        parent = _proc_stat(fields[1])
        if parent is None or parent[0] != "postgres":  # the postmaster: its reaped children
            total += int(fields[13]) + int(fields[14])
    return total / ticks


# The server settings a run's figures depend on, recorded with them: this machine's PostgreSQL
# is configured for CI (128 MB of shared buffers, 1 GB of WAL between checkpoints, autovacuum
# off), not as a production server would be.
SERVER_SETTINGS = (
    "server_version",
    "shared_buffers",
    "wal_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "synchronous_commit",
    "fsync",
    "autovacuum",
    "jit",
)


def server_settings() -> dict[str, str]:
    from sqlalchemy import text

    from qamqor.kit.db import get_engine

    with get_engine().connect() as conn:
        rows = conn.execute(
            text("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(:names)"),
            {"names": list(SERVER_SETTINGS)},
        ).all()
    return dict(sorted(rows))


def machine_probe() -> float:
    """CPU seconds of a fixed pure-Python loop (the best of three): how fast this shared
    machine runs right now. The same code measured 1,466 events/s on one afternoon and 930 on
    the next evening, when this probe took 1.1-1.5 s against 0.85 s; runs are comparable only
    side by side, and the probe says how far apart two sessions' figures are."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        total = 0
        for i in range(5_000_000):
            total += i
        best = min(best, time.process_time() - started)
    return round(best, 3)


def _steal_ticks() -> int:
    """Ticks the hypervisor gave this machine's CPUs to others (``steal`` in /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) if len(fields) > 8 else 0


def measure(since: dt.datetime) -> dict[str, Any]:
    from sqlalchemy import text

    from qamqor.kit.db import get_engine

    engine = get_engine()
    with engine.connect() as conn:
        first, last, done, last_in = conn.execute(
            text(
                "SELECT min(received_at), max(done_at), count(*), max(received_at) "
                "FROM registry_event "
                "WHERE received_at >= :since AND status IN ('done', 'superseded')"
            ),
            {"since": since},
        ).one()
        statuses = dict(
            conn.execute(
                text(
                    "SELECT status, count(*) FROM registry_event WHERE received_at >= :since "
                    "GROUP BY status"
                ),
                {"since": since},
            ).all()
        )
        rows = conn.execute(
            text(
                "SELECT created_at, event_received_at FROM proactive_offer "
                "WHERE event_received_at >= :since"
            ),
            {"since": since},
        ).all()

    def aware(value: Any) -> dt.datetime:
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

    latencies = sorted((aware(c) - aware(r)).total_seconds() for c, r in rows)
    span = (aware(last) - aware(first)).total_seconds() if first and last else 0.0
    # from the last event's receipt to the inbox drained: about a cycle when the workers keep
    # up with the rate pushed, growing with the run's length when they fall behind
    tail = (aware(last) - aware(last_in)).total_seconds() if last and last_in else None

    def q(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3)

    return {
        "events_done": int(done),
        "statuses": statuses,
        "span_seconds": round(span, 2),
        "events_per_second": round(done / span, 1) if span else None,
        "tail_seconds": round(tail, 2) if tail is not None else None,
        "offers": len(latencies),
        "latency_p50": q(0.5),
        "latency_p99": q(0.99),
        "latency_max": round(latencies[-1], 3) if latencies else None,
        "latency_mean": round(statistics.mean(latencies), 3) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=2_000.0)
    parser.add_argument("--chunk", type=int, default=200, help="events per producer request")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2500, help="events per worker cycle")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=0.5,
        help="the workers' poll (on PostgreSQL an idle worker is woken by a push's NOTIFY "
        "sooner; before that wake-up existed the benchmark polled every 0.05 s)",
    )
    parser.add_argument(
        "--no-prewarm",
        action="store_true",
        help="skip reading the database's tables and indexes into the OS cache first",
    )
    parser.add_argument("--produce-from", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["QAMQOR_DATABASE_URL"] = args.database_url
    if args.produce_from:
        print(json.dumps(produce(args.produce_from, args.rate, args.chunk)))
        return
    env = {**os.environ}
    out = ROOT / "var" / "bench" / "worker"
    out.mkdir(parents=True, exist_ok=True)
    # the events are drawn from the database before anything is measured (three random
    # samples of the registers: seconds of the server's CPU that are not the run's)
    events_file = out / "events.json"
    events_file.write_text(json.dumps(make_events(args.events, args.seed)))
    vacuum()
    prewarmed = None if args.no_prewarm else prewarm()
    settings = server_settings()
    probe_before = machine_probe()
    steal_before = _steal_ticks()
    load_before = [round(x, 2) for x in os.getloadavg()]
    server_before = _server_cpu_seconds()
    producer_before = os.times().children_user + os.times().children_system
    since = dt.datetime.now(dt.UTC)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qamqor",
                "worker",
                "--json",
                "--batch",
                str(args.batch),
                "--poll-seconds",
                str(args.poll_seconds),
            ],
            env=env,
            cwd=ROOT,
            stdout=(out / f"worker-{i}.jsonl").open("w"),
            stderr=(out / f"worker-{i}.err").open("w"),
        )
        for i in range(args.workers)
    ]
    ready = _wait_ready([out / f"worker-{i}.err" for i in range(args.workers)], workers)
    producer = subprocess.run(
        [
            sys.executable,
            __file__,
            "--database-url",
            args.database_url,
            "--produce-from",
            str(events_file),
            "--rate",
            str(args.rate),
            "--chunk",
            str(args.chunk),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    produced = json.loads(producer.stdout)
    # wait until the inbox is drained
    from qamqor.kit.db import get_engine
    from qamqor.proactive.worker import pending_work

    deadline = time.monotonic() + 1800
    while pending_work(get_engine()) and time.monotonic() < deadline:
        time.sleep(0.5)
    # Where the machine's CPU went during the run (the workers' own start-up included; the
    # producer's run is a finished child of this process).
    cpu = {
        "workers": round(_cpu_seconds([w.pid for w in workers]), 1),
        "producer": round(
            os.times().children_user + os.times().children_system - producer_before, 1
        ),
        "postgres": round(_server_cpu_seconds() - server_before, 1),
    }
    steal = (_steal_ticks() - steal_before) / os.sysconf("SC_CLK_TCK")
    for worker in workers:
        worker.terminate()
        worker.wait(timeout=60)
    result = measure(since)
    probe_after = machine_probe()
    cycles = []
    for i in range(args.workers):
        for line in (out / f"worker-{i}.jsonl").read_text().splitlines():
            cycles.append(json.loads(line))
    phases: dict[str, float] = {}
    for cycle in cycles:
        for k, v in cycle["phases"].items():
            phases[k] = phases.get(k, 0.0) + v
    report = {
        "label": args.label,
        "database": args.database_url.split(":", 1)[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "events": args.events,
        "rate": args.rate,
        "workers": args.workers,
        "batch": args.batch,
        "chunk": args.chunk,
        "poll_seconds": args.poll_seconds,
        "worker_warm_up_seconds": ready,
        "prewarm_seconds": prewarmed,
        "postgres_settings": settings,
        # other users of the machine show here: the run shares 2 cores with them
        "load_average_before": load_before,
        # the machine's speed before and after (``machine_probe``, lower is faster) and the
        # CPU seconds the hypervisor took away during the run
        "machine_probe_seconds": [probe_before, probe_after],
        "steal_seconds": round(steal, 1),
        "producer": produced,
        "cycles": len(cycles),
        "mean_events_per_cycle": round(
            statistics.mean(c["claimed"] for c in cycles if c["claimed"]), 1
        )
        if cycles
        else None,
        "phase_seconds_total": {k: round(v, 1) for k, v in phases.items()},
        "cpu_seconds": cpu,
        "cycle_seconds_mean": round(statistics.mean(c["seconds"] for c in cycles), 3)
        if cycles
        else None,
        **result,
    }
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"worker-{args.label or 'run'}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
