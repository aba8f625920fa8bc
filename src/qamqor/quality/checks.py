"""Data-quality checks (``checks.yaml``): loading, checking, and running them in DuckDB.

The checks run over the same relations as the features (profiles/relations.py), in the same
engine, in the same run: the quality flags a profile carries are the findings of the very facts
its values came from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from importlib import resources

import duckdb
import sqlglot
import yaml
from sqlglot import exp

from qamqor.kit.errors import QamqorError
from qamqor.profiles.catalogue import Catalogue
from qamqor.profiles.relations import quarter
from qamqor.registry import catalogue as registry_catalogue

DIMENSIONS = ("validity", "completeness", "consistency", "timeliness")
SEVERITIES = ("error", "warning", "info")
# Relations and helper tables a check may read (see checks.yaml).
READABLE = {
    "member",
    "income",
    "employment",
    "property",
    "disability",
    "finance",
    "person",
    "membership",
    "latest_household",
    "latest_income",
    "latest_employment",
    "latest_property",
    "latest_disability",
    "latest_finance",
    "params",
    "months",
    "sources",
}
FINDING_COLUMNS = ("key", "iin", "household_id", "detail")


class CheckError(QamqorError):
    """A check definition is wrong; the message says which and why."""


@dataclass(frozen=True)
class Check:
    id: str
    names: dict[str, str]
    dimension: str
    severity: str
    owner: str  # a source registry code, or "*" = the registry the finding's key names
    taints: tuple[str, ...]
    sql: str

    @property
    def per_source(self) -> bool:
        return self.owner == "*"

    def tainted_features(self, catalogue: Catalogue) -> list[str]:
        if self.severity == "info":
            return []
        out: list[str] = []
        for item in self.taints:
            if item.startswith("source:"):
                source = item.split(":", 1)[1]
                out.extend(f.name for f in catalogue.features.values() if source in f.sources)
            else:
                out.append(item)
        return sorted(set(out))

    def describe(self, lang: str) -> str:
        return self.names.get(lang) or self.names["en"]


def parse_checks(text: str, catalogue: Catalogue, origin: str = "checks.yaml") -> dict[str, Check]:
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("checks"), dict):
        raise CheckError(f"{origin}: expected a mapping with `checks`")
    sources = set(registry_catalogue.sources())
    problems: list[str] = []
    checks: dict[str, Check] = {}
    for name, spec in data["checks"].items():
        where = f"{origin}: check {name}"
        missing = [
            k for k in ("names", "dimension", "severity", "owner", "taints", "sql") if k not in spec
        ]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
            continue
        if spec["dimension"] not in DIMENSIONS:
            problems.append(f"{where}: dimension must be one of {', '.join(DIMENSIONS)}")
        if spec["severity"] not in SEVERITIES:
            problems.append(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
        if spec["owner"] != "*" and spec["owner"] not in sources:
            problems.append(f"{where}: owner {spec['owner']!r} is not a source registry")
        for item in spec["taints"]:
            if item.startswith("source:"):
                if item.split(":", 1)[1] not in sources:
                    problems.append(f"{where}: taints unknown source {item}")
            elif item not in catalogue.features:
                problems.append(f"{where}: taints unknown feature {item!r}")
        try:
            tree = sqlglot.parse_one(spec["sql"], read="duckdb")
        except sqlglot.errors.ParseError as exc:
            problems.append(f"{where}: cannot parse: {exc.errors[0]['description']}")
            continue
        if not isinstance(tree, exp.Select):
            problems.append(f"{where}: sql must be one SELECT")
            continue
        ctes = {c.alias for c in tree.find_all(exp.CTE)}
        unknown = {t.name for t in tree.find_all(exp.Table)} - READABLE - ctes
        if unknown:
            problems.append(f"{where}: reads unknown tables {', '.join(sorted(unknown))}")
        if [s.alias_or_name for s in tree.selects] != list(FINDING_COLUMNS):
            problems.append(f"{where}: must select exactly {', '.join(FINDING_COLUMNS)}")
        checks[name] = Check(
            id=name,
            names={k: str(v) for k, v in spec["names"].items()},
            dimension=spec["dimension"],
            severity=spec["severity"],
            owner=spec["owner"],
            taints=tuple(spec["taints"]),
            sql=spec["sql"],
        )
    if problems:
        raise CheckError("the quality checks do not check:\n  " + "\n  ".join(problems))
    return checks


@cache
def load_checks() -> dict[str, Check]:
    from qamqor.profiles.catalogue import load_catalogue

    text = resources.files("qamqor.quality").joinpath("checks.yaml").read_text("utf-8")
    return parse_checks(text, load_catalogue())


def prepare_context(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    last_received: dict[str, dt.date | None],
    now: dt.date,
) -> None:
    """The helper tables checks read besides the relations: ``months`` and ``sources``."""
    start, end = quarter(as_of)
    months = []
    month = start
    while month < end:
        following = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        months.append((month, following - dt.timedelta(days=1)))
        month = following
    con.execute("CREATE OR REPLACE TEMP TABLE months (month DATE, month_end DATE)")
    con.executemany("INSERT INTO months VALUES (?, ?)", [list(m) for m in months])
    con.execute(
        "CREATE OR REPLACE TEMP TABLE sources "
        "(code VARCHAR, cadence_days INTEGER, last_received_on DATE, now DATE)"
    )
    registries = registry_catalogue.sources()
    con.executemany(
        "INSERT INTO sources VALUES (?, ?, ?, ?)",
        [[code, s.cadence_days, last_received.get(code), now] for code, s in registries.items()],
    )


def run_checks(
    con: duckdb.DuckDBPyConnection, checks: dict[str, Check], *, whole_population: bool
) -> dict[str, int]:
    """Fill ``finding`` (check_id, key, iin, household_id, detail, region_code, owner).

    A run over some households keeps only findings about them; a whole-population run keeps all,
    including findings about a source registry as a whole (``owner: "*"``).
    """
    con.execute(
        "CREATE OR REPLACE TEMP TABLE finding (check_id VARCHAR, key VARCHAR, iin VARCHAR, "
        "household_id VARCHAR, detail VARCHAR, owner VARCHAR)"
    )
    ran: list[str] = []
    for check in checks.values():
        if check.per_source and not whole_population:
            continue
        ran.append(check.id)
        owner = "f.key" if check.per_source else f"'{check.owner}'"
        # A whole-population run keeps every finding, also about a person whose household no
        # longer has a living member (income paid after the death of someone who lived alone).
        scope = (
            "TRUE" if whole_population else "f.household_id IN (SELECT household_id FROM target)"
        )
        con.execute(
            f"INSERT INTO finding SELECT DISTINCT '{check.id}', f.key, f.iin, f.household_id, "
            f"f.detail, {owner} FROM ({check.sql}) f WHERE {scope}"
        )
    # what each check found, counted once for all (a statement per check cost a worker's
    # cycle 4 ms)
    found = dict(
        con.execute(
            "SELECT check_id, count(DISTINCT key) FROM finding GROUP BY check_id"
        ).fetchall()
    )
    counts = {check_id: int(found.get(check_id, 0)) for check_id in ran}
    con.execute(
        "CREATE OR REPLACE TEMP TABLE finding AS SELECT f.*, "
        "coalesce(m.region_code, s.region_code) AS region_code FROM finding f "
        "LEFT JOIN (SELECT DISTINCT ON (household_id) household_id, region_code FROM member "
        "ORDER BY household_id, relation <> 'head') m USING (household_id) "
        "LEFT JOIN person s USING (iin)"
    )
    return counts
