"""Rules: every program for a whole population, against OpenFisca and a hand-written query.

On a database with built profiles (``qamqor profiles build``):

1. ``qamqor decide`` as its own process, twice: the first run decides every program and the
   well-being levels for every household and writes what matters; the second finds nothing
   changed. Seconds per phase and peak RSS (``os.wait4``).
2. In one process, from one in-memory population (the current profiles as an Arrow table,
   read once): АСП computed three ways, each timed end to end from the same columns to the
   amounts in memory, median of ``--repeat`` runs:
   - Qamqor's engine: the published ``asp.yaml`` compiled to one DuckDB query, status and
     amount (the query a simulation runs), and again with the full explanation JSON of every
     decision (what ``qamqor decide`` stores);
   - a hand-written DuckDB query of the same rule, with the same three-valued logic;
   - OpenFisca (openfisca-core, ``benchmarks/openfisca_asp.py``): the simulation built from
     the arrays (persons and households), then calculated, float32 by default.
   The amounts are compared to the tiyn with an exact int64 computation. Households whose
   АСП inputs are unknown or held are left out of this comparison (OpenFisca has no notion
   of unknown); their number is reported. Also: all five programs and the levels in memory.
3. ``qamqor simulate asp --set subsistence_minimum_tiyn=60000`` as its own process, twice:
   the first reads the profiles from the database and caches them, the second reads the cache.

    python benchmarks/rules_bench.py --database-url sqlite:////path/qamqor.db --report
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

HANDWRITTEN = """
SELECT household_id,
       CASE WHEN status = 'eligible' THEN (line - pci) * members END AS amount_tiyn, status
FROM (
  SELECT household_id, members, pci,
         CASE WHEN pci > line OR idle <> 0 OR loans <> 0 THEN 'ineligible'
              WHEN pci IS NULL OR idle IS NULL OR loans IS NULL OR members IS NULL
                THEN 'needs_review'
              ELSE 'eligible' END AS status, line
  FROM (
    SELECT household_id, {line} AS line,
           CASE WHEN list_contains(held, 'members') THEN NULL ELSE members END AS members,
           CASE WHEN list_contains(held, 'per_capita_income_tiyn') THEN NULL
                ELSE per_capita_income_tiyn END AS pci,
           CASE WHEN list_contains(held, 'idle_able_bodied_adults') THEN NULL
                ELSE idle_able_bodied_adults END AS idle,
           CASE WHEN list_contains(held, 'non_mortgage_loans') THEN NULL
                ELSE non_mortgage_loans END AS loans
    FROM population))
"""


def run_measured(name: str, args: list[str], env: dict[str, str], out_dir: Path) -> dict:
    started = time.monotonic()
    out_path, err_path = out_dir / f"{name}.out", out_dir / f"{name}.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed:\n{err_path.read_text()[-3000:]}")
    return {
        "stage": name,
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "output": json.loads(out_path.read_text()),
    }


def _timed(work: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def compare(repeat: int) -> dict[str, Any]:
    """Part 2, in this process (the database from QAMQOR_DATABASE_URL)."""
    import duckdb
    import pyarrow as pa
    from openfisca_asp import asp_system, run_openfisca

    from qamqor.kit.db import get_engine
    from qamqor.kit.duck import compute_engine
    from qamqor.profiles.catalogue import load_catalogue
    from qamqor.rules import engine as rules_engine
    from qamqor.rules.population import load_input
    from qamqor.rules.service import bind_all, needed_features, select_rules
    from qamqor.rules.spec import load_parameters

    engine = get_engine()
    catalogue = load_catalogue()
    parameters = load_parameters()
    programs, wellbeing = select_rules(None)
    started = time.perf_counter()
    with compute_engine("bench-load") as con:
        load_input(con, engine, catalogue, needed_features(programs, catalogue, wellbeing))
        all_bounds = bind_all(con, engine, programs, parameters, catalogue, True, wellbeing)
        population = con.sql("SELECT * FROM profile_input").to_arrow_table()
    read_seconds = time.perf_counter() - started
    (asp_bound,) = [b for b in all_bounds if b.id == "asp"]
    assert isinstance(asp_bound, rules_engine.Bound)
    median = int(asp_bound.values["median_per_capita_income_tiyn"])
    day = asp_bound.day
    line_tiyn = max(
        (70 * int(asp_bound.values["subsistence_minimum_tiyn"]) + 5_000) // 10_000 * 100,
        (35 * median + 5_000) // 10_000 * 100,
    )

    spill = ROOT / "var" / "bench" / "rules" / "spill"
    spill.mkdir(parents=True, exist_ok=True)

    def fresh() -> duckdb.DuckDBPyConnection:
        # the same limits as the engine's own (kit/duck.py): 8 GB, spilling to disk beyond
        con = duckdb.connect(
            config={
                "threads": 2,
                "preserve_insertion_order": False,
                "memory_limit": "8GB",
                "temp_directory": str(spill),
            }
        )
        con.execute("SET enable_progress_bar = false")
        return con

    con = fresh()
    con.register("population", population)
    known = con.execute(
        """
        SELECT count(*) FILTER (len(held) = 0 AND members IS NOT NULL
          AND per_capita_income_tiyn IS NOT NULL AND idle_able_bodied_adults IS NOT NULL
          AND non_mortgage_loans IS NOT NULL) FROM population
        """
    ).fetchall()[0][0]
    subset = con.sql(
        """
        SELECT * FROM population WHERE len(held) = 0 AND members IS NOT NULL
          AND per_capita_income_tiyn IS NOT NULL AND idle_able_bodied_adults IS NOT NULL
          AND non_mortgage_loans IS NOT NULL
        """
    ).to_arrow_table()
    con.close()

    def qamqor(detail: bool) -> Any:
        con = fresh()
        con.register("population", subset)
        sql = rules_engine.compile_program(asp_bound, catalogue, "population", detail)
        if detail:
            # consume every explanation (DuckDB would not compute an unused column) without
            # holding millions of them in memory
            out = con.sql(f"SELECT count(*), sum(length(detail)) FROM ({sql})").fetchall()
        else:
            out = con.sql(f"SELECT household_id, amount_tiyn FROM ({sql})").to_arrow_table()
        con.close()
        return out

    def handwritten() -> Any:
        con = fresh()
        con.register("population", subset)
        out = con.sql(
            "SELECT household_id, amount_tiyn FROM (" + HANDWRITTEN.format(line=line_tiyn) + ")"
        ).to_arrow_table()
        con.close()
        return out

    arrays = {
        name: subset.column(name).to_numpy().astype(numpy.int64)
        for name in (
            "members",
            "per_capita_income_tiyn",
            "idle_able_bodied_adults",
            "non_mortgage_loans",
        )
    }
    month = day.strftime("%Y-%m")
    system_started = time.perf_counter()
    asp_system()
    system_seconds = time.perf_counter() - system_started

    def openfisca() -> Any:
        return run_openfisca(arrays, month, median / 100)

    def all_programs(detail: bool) -> Any:
        con = fresh()
        con.register("profile_input", population)
        union = " UNION ALL ".join(
            b.compile(catalogue, "profile_input", detail) for b in all_bounds
        )
        consumed = "sum(length(detail))" if detail else "sum(amount_tiyn)"
        count = con.sql(f"SELECT count(*), {consumed} FROM ({union})").fetchall()[0][0]
        con.close()
        return count

    results: dict[str, Any] = {}
    for name, work in (
        ("qamqor", lambda: qamqor(False)),
        ("qamqor_with_explanations", lambda: qamqor(True)),
        ("handwritten", handwritten),
        ("openfisca", openfisca),
        ("all_programs", lambda: all_programs(False)),
        ("all_programs_with_explanations", lambda: all_programs(True)),
    ):
        seconds, result = _timed(work, repeat)
        results[name] = {"seconds": round(seconds, 4), "result": result}
    # exactness
    order = numpy.argsort(subset.column("household_id").to_numpy(zero_copy_only=False))
    income = arrays["per_capita_income_tiyn"]
    eligible = (
        (income <= line_tiyn)
        & (arrays["idle_able_bodied_adults"] == 0)
        & (arrays["non_mortgage_loans"] == 0)
    )
    exact = numpy.where(eligible, (line_tiyn - income) * arrays["members"], 0)

    def by_household(table: pa.Table) -> Any:
        ids = table.column("household_id").to_numpy(zero_copy_only=False)
        amounts = table.column("amount_tiyn").fill_null(0).to_numpy()
        return amounts[numpy.argsort(ids)]

    qamqor_amounts = by_household(results["qamqor"]["result"])
    hand_amounts = by_household(results["handwritten"]["result"])
    of = results["openfisca"]["result"]
    of_tiyn = of["amount_tenge"].astype(numpy.float64)[order] * 100
    exact_sorted = exact[order]
    return {
        "as_of": day.isoformat(),
        "households": population.num_rows,
        "households_compared": int(known),
        "read_seconds": round(read_seconds, 1),
        "median_tiyn": median,
        "poverty_line_tiyn": line_tiyn,
        "eligible": int(eligible.sum()),
        "openfisca_system_seconds": round(system_seconds, 4),
        "openfisca_build_seconds": round(of["seconds_build"], 4),
        "openfisca_calculate_seconds": round(of["seconds_calculate"], 4),
        "seconds": {k: v["seconds"] for k, v in results.items()},
        "all_programs_decisions": results["all_programs"]["result"],
        "qamqor_equals_exact": bool(numpy.array_equal(qamqor_amounts, exact_sorted)),
        "handwritten_equals_exact": bool(numpy.array_equal(hand_amounts, exact_sorted)),
        "openfisca_off_by_a_tiyn_or_more": int((numpy.abs(of_tiyn - exact_sorted) >= 1).sum()),
        "openfisca_largest_error_tiyn": float(numpy.abs(of_tiyn - exact_sorted).max()),
        "openfisca_eligibility_mismatches": int((of["eligible"][order] != eligible[order]).sum()),
    }


def report(result: dict[str, Any]) -> str:
    out = [f"### {result['label']} — {result['households']:,} households ({result['database']})"]
    out.append("")
    out.append("| stage | seconds | peak RSS | notes |")
    out.append("|---|---:|---:|---|")
    for stage in result["stages"]:
        note = stage.get("note", "")
        out.append(
            f"| {stage['stage']} | {stage['seconds']} | {stage['peak_rss_mib']:,} MiB | {note} |"
        )
    c = result["compare"]
    s = c["seconds"]
    out.append("")
    out.append(
        f"АСП from one in-memory population of {c['households_compared']:,} households with "
        f"known inputs (of {c['households']:,}); median of {result['repeat']} runs; "
        f"poverty line {c['poverty_line_tiyn'] / 100:,.0f} ₸, {c['eligible']:,} eligible:"
    )
    out.append("")
    out.append("| engine | seconds | vs Qamqor | exact to the tiyn |")
    out.append("|---|---:|---:|---|")
    q = s["qamqor"]
    out.append(
        f"| Qamqor (asp.yaml → DuckDB; status + amount) | {q:.3f} | 1× | "
        f"{'yes' if c['qamqor_equals_exact'] else 'NO'} |"
    )
    out.append(
        f"| Qamqor with every decision's explanation JSON | {s['qamqor_with_explanations']:.3f} "
        f"| {s['qamqor_with_explanations'] / q:.1f}× | yes |"
    )
    out.append(
        f"| hand-written DuckDB query | {s['handwritten']:.3f} | {s['handwritten'] / q:.2f}× | "
        f"{'yes' if c['handwritten_equals_exact'] else 'NO'} |"
    )
    out.append(
        f"| OpenFisca {result['openfisca_version']} (build {c['openfisca_build_seconds']:.3f} s"
        f" + calculate {c['openfisca_calculate_seconds']:.3f} s) | {s['openfisca']:.3f} | "
        f"{s['openfisca'] / q:.1f}× | no: {c['openfisca_off_by_a_tiyn_or_more']:,} amounts off "
        f"by ≥ 1 tiyn (largest {c['openfisca_largest_error_tiyn']:.3f}); eligibility "
        f"mismatches {c['openfisca_eligibility_mismatches']} |"
    )
    out.append(
        f"| Qamqor, all 5 programs + well-being levels ({c['all_programs_decisions']:,} "
        f"decisions) | {s['all_programs']:.3f} | | |"
    )
    out.append(
        f"| the same with explanation JSON | {s['all_programs_with_explanations']:.3f} | | |"
    )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--label", default="")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--compare-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-decide", action="store_true")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="empty the decision tables first, so the first `qamqor decide` decides from scratch",
    )
    args = parser.parse_args()
    env = {**os.environ, "QAMQOR_DATABASE_URL": args.database_url}
    if args.compare_only:
        os.environ["QAMQOR_DATABASE_URL"] = args.database_url
        print(json.dumps(compare(args.repeat)))
        return
    out_dir = ROOT / "var" / "bench" / "rules"
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        from sqlalchemy import create_engine, text

        emptied = create_engine(args.database_url)
        with emptied.begin() as conn:
            for table in (
                "decision_head",
                "decision",
                "decision_run",
                "program_version",
                "population_figure",
            ):
                conn.execute(text(f"DELETE FROM {table}"))
        emptied.dispose()
    qamqor = [sys.executable, "-m", "qamqor"]
    stages = []
    if not args.skip_decide:
        for name in ("decide (first)", "decide (nothing changed)"):
            tag = "decide-first" if "first" in name else "decide-again"
            stage = run_measured(tag, [*qamqor, "decide", "--json"], env, out_dir)
            phases = stage["output"]["phases"]
            stage["stage"] = f"`qamqor decide` {name.split(' ', 1)[1]}"
            stage["note"] = (
                f"{stage['output']['written']:,} decisions written; read {phases['read']} s, "
                f"evaluate {phases['evaluate']} s, write {phases['write']} s"
            )
            stages.append(stage)
    # the first simulation must read the database: forget a cached population
    var_dir = Path(os.environ.get("QAMQOR_VAR_DIR", ROOT / "var"))
    for cached in (var_dir / "rules").glob("population-*.parquet"):
        cached.unlink()
    for name in ("simulate (reads the database)", "simulate (cached population)"):
        stage = run_measured(
            "simulate-cold" if "database" in name else "simulate-cached",
            [*qamqor, "simulate", "asp", "--set", "subsistence_minimum_tiyn=60000", "--json"],
            env,
            out_dir,
        )
        inner = stage["output"]
        stage["stage"] = f"`qamqor simulate asp --set subsistence_minimum_tiyn=60000` {name[9:]}"
        stage["note"] = (
            f"{inner['seconds']} s inside (read {inner['phases']['read']}, evaluate "
            f"{inner['phases']['evaluate']}, summarise {inner['phases']['summarise']}); "
            f"gainers {inner['total']['gainers']:,}, "
            f"+{inner['total']['monthly_change_tiyn'] / 100:,.0f} ₸ a month"
        )
        stages.append(stage)
    compared = run_measured(
        "compare",
        [
            sys.executable,
            __file__,
            "--database-url",
            args.database_url,
            "--compare-only",
            "--repeat",
            str(args.repeat),
        ],
        env,
        out_dir,
    )
    from importlib.metadata import version

    result = {
        "label": args.label or args.database_url.rsplit("/", 1)[-1],
        "database": args.database_url.split(":", 1)[0],
        "households": compared["output"]["households"],
        "repeat": args.repeat,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "openfisca_version": version("openfisca-core"),
        "stages": [{k: v for k, v in s.items() if k != "output"} for s in stages]
        + [
            {
                "stage": "in-memory comparison process",
                "seconds": compared["seconds"],
                "peak_rss_mib": compared["peak_rss_mib"],
                "note": f"read the profiles once: {compared['output']['read_seconds']} s",
            }
        ],
        "compare": compared["output"],
    }
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"rules-{result['label']}.json").write_text(json.dumps(result, indent=2))
    text = report(result)
    (results / f"rules-{result['label']}.md").write_text(text + "\n")
    print(text if args.report else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
