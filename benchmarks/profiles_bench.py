"""Profile build and quality run on an ingested database, against a hand-written DuckDB query.

Three measurements, each in a process of its own so that peak memory is that process's
(os.wait4's ru_maxrss):

1. ``qamqor profiles build`` from empty profile tables (every household gets version 1), then
   again on unchanged facts (nothing to write), and ``qamqor quality run``;
2. in one process, over the same facts loaded by the same loader: the catalogue's compiled
   query (relations + features.yaml) and a hand-written single DuckDB query computing the same
   42 features straight from the fact tables. Both results are compared value by value, and the
   ratio of their times is the overhead of the catalogue.

    python benchmarks/profiles_bench.py --database-url sqlite:////path/qamqor.db --as-of 2026-10-01
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QAMQOR = [sys.executable, "-m", "qamqor"]

HANDWRITTEN = """
WITH
p AS (SELECT * FROM fact_population QUALIFY row_number() OVER
        (PARTITION BY iin ORDER BY updated_on DESC, batch_id DESC, line_no DESC) = 1),
h AS (SELECT * FROM fact_household QUALIFY row_number() OVER
        (PARTITION BY source_record_id ORDER BY batch_id DESC, line_no DESC) = 1),
m AS (SELECT h.household_id, h.iin, h.relation, h.updated_on AS hh_updated, p.sex,
             p.region_code, p.settlement, p.updated_on AS pop_updated,
             (year(DATE '{as_of}') * 10000 + month(DATE '{as_of}') * 100 + day(DATE '{as_of}')
              - year(p.birth_date) * 10000 - month(p.birth_date) * 100 - day(p.birth_date))
              // 10000 AS age
      FROM h LEFT JOIN p USING (iin)
      WHERE h.member_from <= DATE '{as_of}'
        AND (h.member_to IS NULL OR h.member_to > DATE '{as_of}')),
mem AS (SELECT household_id, count(*) AS members,
          count(*) FILTER (age < 1) AS children_under_1,
          count(*) FILTER (age BETWEEN 1 AND 6) AS children_1_6,
          count(*) FILTER (age BETWEEN 7 AND 17) AS children_7_17,
          count(*) FILTER (age < 18) AS children_under_18,
          count(*) FILTER (sex = 'M' AND age >= 18 AND age < 63) AS working_age_men,
          count(*) FILTER (sex = 'F' AND age >= 18 AND age < 61) AS working_age_women,
          count(*) FILTER ((sex = 'M' AND age >= 63) OR (sex = 'F' AND age >= 61)) AS pensioners,
          coalesce(min(region_code) FILTER (relation = 'head'), min(region_code)) AS region_code,
          coalesce(min(settlement) FILTER (relation = 'head'), min(settlement)) AS settlement,
          date_diff('day', max(pop_updated), DATE '{as_of}') AS days_since_population_update,
          date_diff('day', max(hh_updated), DATE '{as_of}') AS days_since_household_update
        FROM m GROUP BY household_id),
e AS (SELECT f.*, m.household_id FROM fact_employment f JOIN m USING (iin)
      WHERE f.start_date <= DATE '{as_of}' AND (f.end_date IS NULL OR f.end_date > DATE '{as_of}')
      QUALIFY row_number() OVER (PARTITION BY f.source_record_id, m.household_id
                                 ORDER BY f.batch_id DESC, f.line_no DESC) = 1),
emp AS (SELECT household_id,
          count(DISTINCT iin) FILTER (status = 'unemployed_registered') AS registered_unemployed,
          count(DISTINCT iin) FILTER (status IN ('employed', 'self_employed')) AS employed_members,
          date_diff('day', max(updated_on), DATE '{as_of}') AS days_since_employment_update
        FROM e GROUP BY household_id),
d AS (SELECT f.*, m.household_id, m.age, m.sex FROM fact_disability f JOIN m USING (iin)
      WHERE f.assigned_on <= DATE '{as_of}'
        AND (f.valid_until IS NULL OR f.valid_until > DATE '{as_of}')
      QUALIFY row_number() OVER (PARTITION BY f.source_record_id, m.household_id
                                 ORDER BY f.batch_id DESC, f.line_no DESC) = 1),
dis AS (SELECT household_id, count(DISTINCT iin) AS disabled_members,
          count(DISTINCT iin) FILTER (disability_group = '1') AS disabled_group_1,
          count(DISTINCT iin) FILTER (disability_group = '2') AS disabled_group_2,
          count(DISTINCT iin) FILTER (disability_group = '3') AS disabled_group_3,
          count(DISTINCT iin) FILTER (disability_group = 'child' OR age < 18) AS disabled_children,
          count(DISTINCT iin) FILTER (disability_group IN ('1', '2') AND age >= 18
            AND ((sex = 'M' AND age < 63) OR (sex = 'F' AND age < 61))) AS disabled_working_age_1_2,
          date_diff('day', max(updated_on), DATE '{as_of}') AS days_since_disability_update
        FROM d GROUP BY household_id),
i AS (SELECT f.*, m.household_id FROM fact_income f JOIN m USING (iin)
      WHERE f.period < DATE '{as_of}'
      QUALIFY row_number() OVER (PARTITION BY f.source_record_id, m.household_id
                                 ORDER BY f.batch_id DESC, f.line_no DESC) = 1),
inc AS (SELECT household_id,
          sum(amount_tiyn) FILTER (period >= DATE '{start}') AS income_quarter_tiyn,
          sum(amount_tiyn) FILTER (period >= DATE '{start}' AND income_type = 'wage')
            AS income_wage_quarter_tiyn,
          sum(amount_tiyn) FILTER (period >= DATE '{start}' AND income_type = 'pension')
            AS income_pension_quarter_tiyn,
          sum(amount_tiyn) FILTER (period >= DATE '{start}' AND income_type = 'benefit')
            AS income_benefit_quarter_tiyn,
          sum(amount_tiyn) FILTER (period >= DATE '{start}' AND income_type = 'self_employment')
            AS income_self_employment_quarter_tiyn,
          date_diff('day', max(updated_on), DATE '{as_of}') AS days_since_income_update
        FROM i GROUP BY household_id),
pr AS (SELECT f.* EXCLUDE (area_m2), CAST(round(f.area_m2, 2) AS DECIMAL(14, 2)) AS area_m2,
              m.household_id
       FROM fact_property f JOIN m USING (iin)
       WHERE f.acquired_on <= DATE '{as_of}'
         AND (f.disposed_on IS NULL OR f.disposed_on > DATE '{as_of}')
       QUALIFY row_number() OVER (PARTITION BY f.source_record_id, m.household_id
                                  ORDER BY f.batch_id DESC, f.line_no DESC) = 1),
prop AS (SELECT household_id,
          count(DISTINCT object_id) FILTER (property_type = 'dwelling') AS dwellings,
          coalesce(sum(area_m2) FILTER (property_type = 'dwelling'), 0) AS dwelling_area_m2,
          count(DISTINCT object_id) FILTER (property_type = 'land') AS land_plots,
          coalesce(sum(area_m2) FILTER (property_type = 'land'), 0) AS land_area_m2,
          count(DISTINCT object_id) FILTER (property_type = 'vehicle') AS vehicles,
          date_diff('day', max(updated_on), DATE '{as_of}') AS days_since_property_update
         FROM pr GROUP BY household_id),
fi AS (SELECT f.*, m.household_id FROM fact_finance f JOIN m USING (iin)
       WHERE f.opened_on <= DATE '{as_of}' AND (f.closed_on IS NULL OR f.closed_on > DATE '{as_of}')
       QUALIFY row_number() OVER (PARTITION BY f.source_record_id, m.household_id
                                  ORDER BY f.batch_id DESC, f.line_no DESC) = 1),
idle AS (SELECT household_id, count(*) AS idle_able_bodied_adults FROM m
         WHERE age >= 18 AND ((sex = 'M' AND age < 63) OR (sex = 'F' AND age < 61))
           AND iin NOT IN (SELECT iin FROM e)
           AND iin NOT IN (SELECT iin FROM d WHERE disability_group IN ('1', '2'))
         GROUP BY household_id),
fin AS (SELECT household_id,
          count(DISTINCT contract_id) FILTER (product IN ('consumer_loan', 'microloan'))
            AS non_mortgage_loans,
          sum(balance_tiyn) FILTER (product IN ('consumer_loan', 'microloan'))
            AS non_mortgage_debt_tiyn,
          sum(balance_tiyn) FILTER (product = 'deposit') AS deposits_tiyn,
          date_diff('day', max(updated_on), DATE '{as_of}') AS days_since_finance_update
        FROM fi GROUP BY household_id)
SELECT household_id, members, children_under_1, children_1_6, children_7_17, children_under_18,
       working_age_men, working_age_women, pensioners, region_code, settlement,
       coalesce(registered_unemployed, 0) AS registered_unemployed,
       coalesce(employed_members, 0) AS employed_members,
       coalesce(disabled_members, 0) AS disabled_members,
       coalesce(disabled_group_1, 0) AS disabled_group_1,
       coalesce(disabled_group_2, 0) AS disabled_group_2,
       coalesce(disabled_group_3, 0) AS disabled_group_3,
       coalesce(disabled_children, 0) AS disabled_children,
       coalesce(disabled_working_age_1_2, 0) AS disabled_working_age_1_2,
       working_age_men + working_age_women - coalesce(disabled_working_age_1_2, 0)
         AS able_bodied_adults,
       coalesce(idle_able_bodied_adults, 0) AS idle_able_bodied_adults,
       coalesce(income_quarter_tiyn, 0) AS income_quarter_tiyn,
       coalesce(income_wage_quarter_tiyn, 0) AS income_wage_quarter_tiyn,
       coalesce(income_pension_quarter_tiyn, 0) AS income_pension_quarter_tiyn,
       coalesce(income_benefit_quarter_tiyn, 0) AS income_benefit_quarter_tiyn,
       coalesce(income_self_employment_quarter_tiyn, 0) AS income_self_employment_quarter_tiyn,
       (2 * coalesce(income_quarter_tiyn, 0) + 3 * members) // nullif(6 * members, 0)
         AS per_capita_income_tiyn,
       coalesce(dwellings, 0) AS dwellings, coalesce(dwelling_area_m2, 0) AS dwelling_area_m2,
       round(coalesce(dwelling_area_m2, 0) / nullif(members, 0), 2)
         AS dwelling_area_per_person_m2,
       coalesce(land_plots, 0) AS land_plots, coalesce(land_area_m2, 0) AS land_area_m2,
       coalesce(vehicles, 0) AS vehicles,
       coalesce(non_mortgage_loans, 0) AS non_mortgage_loans,
       coalesce(non_mortgage_debt_tiyn, 0) AS non_mortgage_debt_tiyn,
       coalesce(deposits_tiyn, 0) AS deposits_tiyn,
       days_since_population_update, days_since_household_update, days_since_income_update,
       days_since_employment_update, days_since_property_update, days_since_disability_update,
       days_since_finance_update
FROM mem LEFT JOIN emp USING (household_id) LEFT JOIN dis USING (household_id)
     LEFT JOIN inc USING (household_id) LEFT JOIN prop USING (household_id)
     LEFT JOIN fin USING (household_id) LEFT JOIN idle USING (household_id)
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
        "output": out_path.read_text(),
    }


def compare(as_of: dt.date) -> dict:
    """Child process: load facts once, time the catalogue query and the hand-written one."""
    from qamqor.kit.db import get_engine
    from qamqor.kit.duck import compute_engine, lock_down
    from qamqor.profiles import catalogue as cat
    from qamqor.profiles import facts, relations

    engine = get_engine()
    with engine.connect() as conn:
        max_batch = facts.latest_batch_id(conn)
    catalogue = cat.load_catalogue()
    values = relations.run_values(as_of, cat.parameter_values(catalogue))
    start = relations.quarter(as_of)[0]
    with compute_engine("bench", on_disk=True) as con:
        mark = time.monotonic()
        facts.load_all(con, engine, max_batch)
        load = time.monotonic() - mark
        mark = time.monotonic()
        relations.create_relations(con, as_of, cat.parameter_values(catalogue))
        lock_down(con)
        con.execute(f"CREATE TEMP TABLE by_catalogue AS {cat.compile_features(catalogue, values)}")
        by_catalogue = time.monotonic() - mark
        mark = time.monotonic()
        sql = HANDWRITTEN.format(as_of=as_of.isoformat(), start=start.isoformat())
        con.execute(f"CREATE TEMP TABLE by_hand AS {sql}")
        by_hand = time.monotonic() - mark
        names = list(catalogue.features)
        differing = {
            name: con.execute(
                f"SELECT count(*) FROM by_catalogue c FULL JOIN by_hand h USING (household_id) "
                f"WHERE c.{name} IS DISTINCT FROM h.{name}"
            ).fetchall()[0][0]
            for name in names
        }
        households = con.execute("SELECT count(*) FROM by_hand").fetchall()[0][0]
    return {
        "households": households,
        "load_seconds": round(load, 1),
        "catalogue_seconds": round(by_catalogue, 1),
        "handwritten_seconds": round(by_hand, 1),
        "ratio": round(by_catalogue / by_hand, 2) if by_hand else None,
        "values_differing": {k: v for k, v in differing.items() if v},
    }


def report() -> str:
    """The measured table, in Markdown, from every ``results/profiles-*.json``."""
    lines = [
        "| households | database | first build | unchanged rebuild | quality run | peak RSS "
        "| catalogue query / hand-written | values differing |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path in sorted((ROOT / "benchmarks" / "results").glob("profiles-*.json")):
        r = json.loads(path.read_text())
        stages = {s["stage"]: s for s in r["stages"]}
        c = r["comparison"]
        phases = r["build"]["phases"]
        lines.append(
            f"| {c['households']:,} | {r['database']} "
            f"| {stages['build_first']['seconds']} s "
            f"({', '.join(f'{k} {v:.0f}' for k, v in phases.items())}) "
            f"| {stages['build_unchanged']['seconds']} s | {stages['quality_run']['seconds']} s "
            f"| {max(s['peak_rss_mib'] for s in r['stages']) / 1024:.1f} GiB "
            f"| {c['catalogue_seconds']} s / {c['handwritten_seconds']} s = {c['ratio']}× "
            f"| {sum(c['values_differing'].values())} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url")
    parser.add_argument("--report", action="store_true", help="print the results as Markdown")
    parser.add_argument("--as-of", default="2026-10-01")
    parser.add_argument("--label", default="")
    parser.add_argument("--compare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        print(report())
        return
    if not args.database_url:
        parser.error("--database-url is required")
    as_of = dt.date.fromisoformat(args.as_of)
    if args.compare_only:
        print(json.dumps(compare(as_of)))
        return
    out_dir = ROOT / "benchmarks" / "results"
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "qamqor-profiles-bench"
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "QAMQOR_DATABASE_URL": args.database_url, "QAMQOR_VAR_DIR": str(work)}
    from sqlalchemy import text

    from qamqor.kit.db import make_engine

    engine = make_engine(args.database_url)
    with engine.begin() as conn:  # start from no profiles and no issues: the first build
        for table in (
            "profile_head",
            "profile_version",
            "profile_build",
            "dq_issue_subject",
            "dq_issue",
            "dq_run",
        ):
            conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()
    date = ["--as-of", args.as_of]
    stages = [
        run_measured("build_first", [*QAMQOR, "profiles", "build", *date, "--json"], env, work),
        run_measured("build_unchanged", [*QAMQOR, "profiles", "build", *date, "--json"], env, work),
        run_measured("quality_run", [*QAMQOR, "quality", "run", *date, "--json"], env, work),
        run_measured(
            "catalogue_vs_handwritten",
            [
                sys.executable,
                __file__,
                "--database-url",
                args.database_url,
                "--as-of",
                args.as_of,
                "--compare-only",
            ],
            env,
            work,
        ),
    ]
    result = {
        "label": args.label,
        "database": args.database_url.split(":", 1)[0].split("+", 1)[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "stages": [{k: v for k, v in s.items() if k != "output"} for s in stages],
        "build": json.loads(stages[0]["output"]),
        "rebuild": json.loads(stages[1]["output"]),
        "quality": json.loads(stages[2]["output"]),
        "comparison": json.loads(stages[3]["output"]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"profiles-{args.label or 'run'}-{result['database']}.json"
    (out_dir / name).write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k in ("stages", "comparison")}, indent=2))


if __name__ == "__main__":
    main()
