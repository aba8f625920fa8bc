"""Synth + ingest benchmark: wall time, rows/s and peak memory per stage.

Each stage runs as its own process (`qamqor synth`, `qamqor ingest`), so peak memory is that
process's maximum resident set (os.wait4's ru_maxrss), DuckDB's staging included. Every size
ingests into a fresh database: SQLite in a new file, PostgreSQL in a new database.

    python benchmarks/ingest_bench.py --households 100000 1000000 --db sqlite postgresql
    python benchmarks/ingest_bench.py --households 6200000 --db sqlite   # the whole country
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
QAMQOR = [sys.executable, "-m", "qamqor"]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Stage:
    name: str
    seconds: float
    peak_rss_mib: float
    rows: int
    output: str

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def run_measured(name: str, args: list[str], env: dict[str, str]) -> Stage:
    """Run a command and report its wall time and its own peak RSS (via os.wait4)."""
    started = time.monotonic()
    out_path = Path(env["QAMQOR_VAR_DIR"]) / f"{name}.out"
    err_path = Path(env["QAMQOR_VAR_DIR"]) / f"{name}.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed:\n{err_path.read_text()[-3000:]}")
    return Stage(name, seconds, usage.ru_maxrss / 1024, 0, out_path.read_text())


def fresh_database(kind: str, var_dir: Path, tag: str) -> str:
    if kind == "sqlite":
        db = var_dir / f"bench-{tag}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        return f"sqlite:///{db}"
    name = f"qamqor_bench_{tag}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_database(kind: str, url: str) -> None:
    """Free the disk a size took (a whole country is ~15 GB) before the next one."""
    if kind == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(url.split("///", 1)[1] + suffix).unlink(missing_ok=True)
        return
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--households", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--db", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--keep", action="store_true", help="keep generated extracts")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    lines = [
        f"machine: {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "",
        "| households | stage | database | rows | wall s | rows/s | peak RSS MiB |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for households in args.households:
        out_dir = args.work / f"extracts-{households}"
        env = dict(os.environ, QAMQOR_VAR_DIR=str(args.work), PYTHONUNBUFFERED="1")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        synth = run_measured(
            f"synth-{households}",
            [
                *QAMQOR,
                "synth",
                "--households",
                str(households),
                "--seed",
                str(args.seed),
                "--out",
                str(out_dir),
            ],
            env,
        )
        manifest = json.loads((out_dir / "manifest.json").read_text())
        rows = sum(int(f["rows"]) for f in manifest["files"])
        synth.rows = rows
        size = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
        lines.append(
            f"| {households:,} | synth | – | {rows:,} | {synth.seconds:,.1f} | "
            f"{synth.rows_per_s:,.0f} | {synth.peak_rss_mib:,.0f} |"
        )
        print(lines[-1], f"(extracts: {size / 2**20:,.0f} MiB)", flush=True)
        for kind in args.db:
            url = fresh_database(kind, args.work, str(households))
            db_env = dict(env, QAMQOR_DATABASE_URL=url)
            run_measured(f"migrate-{kind}-{households}", [*QAMQOR, "db", "upgrade"], db_env)
            ingest = run_measured(
                f"ingest-{kind}-{households}", [*QAMQOR, "ingest", str(out_dir), "--json"], db_env
            )
            reports = [
                json.loads(line) for line in ingest.output.splitlines() if line.startswith("{")
            ]
            ingest.rows = sum(r.get("rows_read", 0) for r in reports)
            if not all(r.get("reconciles") for r in reports):
                sys.exit(f"ingest did not reconcile: {reports}")
            lines.append(
                f"| {households:,} | ingest | {kind} | {ingest.rows:,} | {ingest.seconds:,.1f} | "
                f"{ingest.rows_per_s:,.0f} | {ingest.peak_rss_mib:,.0f} |"
            )
            print(lines[-1], flush=True)
            per_file = ", ".join(
                f"{r['source']} {r['rows_read']:,} rows {r['seconds']:.0f}s" for r in reports
            )
            print(f"    {per_file}", flush=True)
            drop_database(kind, url)
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    table = "\n".join(lines)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.results / f"ingest-{stamp}.md").write_text(table + "\n")
    print()
    print(table)


if __name__ == "__main__":
    main()
