"""Evaluating programs in DuckDB: one SQL query per program over a table of profiles.

The same query runs for one household, a micro-batch and the whole country; only the number
of rows in ``profile_input`` differs. Each program is *bound* to a day first: parameters (and
population figures) become literals, a per-region parameter becomes a ``CASE`` on the
household's region, and derived values are inlined.

Three-valued logic is SQL's own. A feature the profile does not know is NULL; so is a feature
that a data-quality check taints or that the citizen contests (it is *held*): the criterion
over it is then NULL (unknown) unless the rest of the expression decides it anyway. A decision
is ``ineligible`` only when some criterion is FALSE on known values; with no FALSE and some
unknown it is ``needs_review``, naming the held or missing features and their registries.

Money is integer tiyn: parameters are integers or exact decimals, and the amount is rounded
half away from zero (half up, amounts being positive) to the tiyn and cast to BIGINT; each
spec states its own rounding in the expression.

Each decision's ``detail`` is a JSON text built by the query itself, with the criteria
results, the values compared (as the profile holds them, held or not), derived values,
thresholds and held values. ``content_sha256`` hashes status, amount and detail: equal hashes
are equal decisions, which is how writes are skipped and replays are checked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import duckdb
from sqlglot import exp

from qamqor.kit import sqlcheck
from qamqor.profiles.catalogue import Catalogue, literal
from qamqor.rules.spec import POPULATION_FIGURES, Parameter, Program, version_of

COMPARISONS: dict[type[exp.Expression], str] = {
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.EQ: "=",
    exp.NEQ: "<>",
}
FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "<>": "<>"}
STATUSES = ("eligible", "ineligible", "needs_review")
# the columns every decision query returns, in this order
OUTPUT_COLUMNS = (
    "household_id",
    "profile_version_id",
    "as_of",
    "program_id",
    "program_version",
    "status",
    "amount_tiyn",
    "detail",
    "content_sha256",
)
LEAN_COLUMNS = ("household_id", "program_id", "status", "amount_tiyn")


@dataclass(frozen=True)
class Threshold:
    """A conjunct ``feature <op> expression`` whose other side holds no feature."""

    criterion: str
    feature: str
    op: str
    tree: exp.Expression


@dataclass(frozen=True)
class Bound:
    """A program with the values it decides with on one day."""

    program: Program
    day: dt.date
    values: dict[str, Any]  # as Program.values_used: text, exact
    version: str

    @property
    def id(self) -> str:
        return self.program.id

    @property
    def text(self) -> str:
        return self.program.text

    def features(self, catalogue: Catalogue) -> list[str]:
        return features_used(self.program, catalogue)

    def compile(self, catalogue: Catalogue, source: str, detail: bool) -> str:
        return compile_program(self, catalogue, source, detail)


class Evaluable(Protocol):
    """What ``evaluate`` runs: a program bound to a day, or the well-being classification."""

    @property
    def id(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def day(self) -> dt.date: ...

    @property
    def values(self) -> dict[str, Any]: ...

    @property
    def version(self) -> str: ...

    def features(self, catalogue: Catalogue) -> list[str]: ...

    def compile(self, catalogue: Catalogue, source: str, detail: bool) -> str: ...


def bind(
    program: Program,
    parameters: dict[str, Parameter],
    day: dt.date,
    figures: Mapping[str, int] | None = None,
) -> Bound:
    values = program.values_used(parameters, day, figures)
    missing = program.parameters_used() & set(POPULATION_FIGURES) - set(values)
    if missing:
        raise ValueError(f"program {program.id} needs the population figures {sorted(missing)}")
    return Bound(program, day, values, version_of(program.text, values))


def rebind(program: Program, day: dt.date, values: dict[str, Any]) -> Bound:
    """A program bound to stored values (a replay, a simulation's changed parameters)."""
    return Bound(program, day, values, version_of(program.text, values))


def figures_needed(programs: Iterable[Program]) -> set[str]:
    return {n for p in programs for n in p.parameters_used() & set(POPULATION_FIGURES)}


def features_used(program: Program, catalogue: Catalogue) -> list[str]:
    """The profile features the program reads, in catalogue order."""
    names: set[str] = set()
    for criterion in program.criteria:
        names |= sqlcheck.columns_of(criterion.tree)
    names |= sqlcheck.columns_of(sqlcheck.parse(program.amount_sql))
    return [f for f in catalogue.features if f in names]


def thresholds(program: Program, catalogue: Catalogue) -> list[Threshold]:
    """Every conjunct of every criterion that compares one feature with a feature-free side:
    the places where a counterfactual ("eligible if income were at most ...") exists."""
    out: list[Threshold] = []
    features = set(catalogue.features)
    for criterion in program.criteria:
        for conjunct in conjuncts(criterion.tree):
            op = COMPARISONS.get(type(conjunct))
            if op is None:
                continue
            left, right = conjunct.this, conjunct.expression
            if _is_feature(left, features) and not sqlcheck.columns_of(right) & features:
                out.append(Threshold(criterion.id, left.name, op, right))
            elif _is_feature(right, features) and not sqlcheck.columns_of(left) & features:
                out.append(Threshold(criterion.id, right.name, FLIPPED[op], left))
    return out


def conjuncts(tree: exp.Expression) -> list[exp.Expression]:
    """The parts of a top-level AND (parentheses looked through); else the condition itself."""
    node = tree
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return conjuncts(node.this) + conjuncts(node.expression)
    return [node]


def _is_feature(node: exp.Expression, features: set[str]) -> bool:
    return isinstance(node, exp.Column) and not node.table and node.name in features


def _value(text: str) -> int | Decimal:
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() and "." not in text else number


def substitute(
    tree: exp.Expression, derived: Mapping[str, str], values: Mapping[str, Any]
) -> exp.Expression:
    """Parameters as literals (per-region ones as a CASE on region_code), derived inlined."""

    def swap(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Column) or node.table:
            return node
        name = node.name
        if name in derived:
            inner = substitute(sqlcheck.parse(derived[name]), derived, values)
            if name.endswith("_tiyn"):
                inner = exp.cast(inner, exp.DataType.build("BIGINT"))
            return exp.Paren(this=inner)
        if name not in values:
            return node
        value = values[name]
        if isinstance(value, str):
            return literal(_value(value))
        case = exp.Case(this=exp.column("region_code"))
        for code, regional in value["regions"].items():
            case = case.when(exp.Literal.string(code), literal(_value(regional)))
        return case.else_(literal(_value(value["value"])))

    return tree.copy().transform(swap)


def render_derived(bound: Bound, name: str) -> str:
    """A derived value of the bound program as SQL of literals (e.g. the poverty line)."""
    return _sql(exp.column(name), bound)


def _sql(tree: exp.Expression, bound: Bound) -> str:
    return sqlcheck.render(substitute(tree, bound.program.derived, bound.values))


def _quote(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def compile_program(
    bound: Bound, catalogue: Catalogue, source: str = "profile_input", detail: bool = True
) -> str:
    """One SELECT producing ``OUTPUT_COLUMNS`` for every row of ``source``.

    ``source`` has household_id, profile_version_id, as_of, a column per feature, ``holds``
    (JSON: feature -> reasons) and ``held`` (VARCHAR[]: the held features). Without
    ``detail`` only household_id, program_id, status and amount_tiyn come out: what a
    simulation compares, without building an explanation for every household.
    """
    program = bound.program
    used = features_used(program, catalogue)
    criteria = [f"({_sql(c.tree, bound)}) AS c_{i}" for i, c in enumerate(program.criteria)]
    amount = f"CAST(round({_sql(sqlcheck.parse(program.amount_sql), bound)}) AS BIGINT)"
    found = thresholds(program, catalogue)
    limits = [f"({_sql(t.tree, bound)}) AS t_{i}" for i, t in enumerate(found)]
    derived = [
        f"({_sql(exp.column(name), bound)}) AS d_{i}" for i, name in enumerate(program.derived)
    ]
    # held or missing features are NULL for the rules; the raw value stays for explanations
    effective = ", ".join(
        f"CASE WHEN list_contains(held, {_quote(f)}) THEN NULL ELSE {f} END AS {f}" for f in used
    )
    raw = ", ".join(f"{f} AS r_{i}" for i, f in enumerate(used))
    raw_names = ", ".join(f"r_{i}" for i in range(len(used)))
    inner_cols = ", ".join([*criteria, f"{amount} AS amount_raw", *limits, *derived])
    region = "" if "region_code" in used else ", region_code"
    any_false = " OR ".join(f"c_{i} IS FALSE" for i in range(len(program.criteria))) or "FALSE"
    any_null = " OR ".join(f"c_{i} IS NULL" for i in range(len(program.criteria))) or "FALSE"
    values_json = ", ".join(f"{_quote(f)}, r_{i}" for i, f in enumerate(used))
    held_json = ", ".join(
        f"{{'f': {_quote(f)}, 'why': json_extract(holds, {_quote('$.' + f)})}}" for f in used
    )
    thresholds_json = ", ".join(
        f"json_array({_quote(t.criterion)}, {_quote(t.feature)}, {_quote(t.op)}, t_{i})"
        for i, t in enumerate(found)
    )
    derived_json = ", ".join(f"{_quote(n)}, d_{i}" for i, n in enumerate(program.derived))
    criteria_json = ", ".join(f"c_{i}" for i in range(len(program.criteria)))
    decided = f"""
            SELECT *, CASE WHEN {any_false} THEN 'ineligible'
                           WHEN {any_null} OR amount_raw IS NULL THEN 'needs_review'
                           ELSE 'eligible' END AS status
            FROM (
              SELECT household_id, profile_version_id, as_of, holds, {raw_names}, {inner_cols}
              FROM (SELECT household_id, profile_version_id, as_of, holds{region}, {raw},
                           {effective}
                    FROM {source} WHERE as_of = DATE '{bound.day.isoformat()}')
            )"""
    if not detail:
        return f"""
        SELECT household_id, {_quote(program.id)} AS program_id, status,
               CASE WHEN status = 'eligible' THEN amount_raw END AS amount_tiyn
        FROM ({decided})"""
    return f"""
        SELECT household_id, profile_version_id, as_of,
               {_quote(program.id)} AS program_id, {_quote(bound.version)} AS program_version,
               status, CASE WHEN status = 'eligible' THEN amount_raw END AS amount_tiyn, detail,
               sha256(status || '|' || coalesce(CAST(amount_raw AS VARCHAR), '') || '|'
                      || detail) AS content_sha256
        FROM (
          SELECT *, CAST(json_object(
                   'criteria', json_array({criteria_json}),
                   'amount', amount_raw,
                   'values', json_object({values_json}),
                   'derived', json_object({derived_json}),
                   'thresholds', json_array({thresholds_json}),
                   'held', to_json(list_filter([{held_json}], lambda h: h.why IS NOT NULL))
                 ) AS VARCHAR) AS detail
          FROM ({decided})
        )
    """


def evaluate(
    con: duckdb.DuckDBPyConnection,
    bounds: Iterable[Evaluable],
    catalogue: Catalogue,
    source: str = "profile_input",
    target: str = "decision_out",
    detail: bool = True,
) -> None:
    """Fill ``target`` with the decisions of every bound program over ``source``."""
    queries = [b.compile(catalogue, source, detail) for b in bounds]
    if not queries:
        names = OUTPUT_COLUMNS if detail else LEAN_COLUMNS
        columns = ", ".join(f"NULL AS {c}" for c in names)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT {columns} WHERE FALSE")
        return
    con.execute(f"CREATE OR REPLACE TEMP TABLE {target} AS " + " UNION ALL ".join(queries))
