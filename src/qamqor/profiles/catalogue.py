"""The feature catalogue (``features.yaml``): loading, checking with sqlglot, compiling to SQL.

A feature is one SQL aggregate over one relation (profiles/relations.py), or a scalar over
other features. ``compile_features`` turns the whole catalogue into one DuckDB query: a GROUP BY
per relation, joined on the household, then one layer per depth of derived features. That query
is the only implementation; one household and the whole country run it alike.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import yaml
from sqlglot import exp

from qamqor.kit import sqlcheck
from qamqor.kit.errors import QamqorError
from qamqor.profiles.relations import PARAMETER_COLUMNS, relations

UNITS = ("count", "tiyn", "m2", "days", "code", "years")
DERIVED = "features"


class CatalogueError(QamqorError):
    """The feature catalogue does not check; the message lists every problem."""


@dataclass(frozen=True)
class Parameter:
    name: str
    value: Any
    unit: str
    source: str


@dataclass(frozen=True)
class Feature:
    name: str
    names: dict[str, str]
    unit: str
    sources: tuple[str, ...]
    relation: str
    sql: str
    where: str | None
    empty: Any
    line: int
    tree: exp.Expression = field(compare=False, repr=False)
    condition: exp.Expression | None = field(compare=False, repr=False)

    @property
    def derived(self) -> bool:
        return self.relation == DERIVED

    def inputs(self) -> set[str]:
        """Features a derived feature is computed from."""
        return sqlcheck.columns_of(self.tree) if self.derived else set()

    def aggregate_sql(self, values: dict[str, Any]) -> str:
        tree = bind(self.tree, values)
        if self.condition is None:
            return sqlcheck.render(tree)
        return _with_filter(tree, bind(self.condition, values))

    def condition_sql(self, values: dict[str, Any]) -> str | None:
        return None if self.condition is None else sqlcheck.render(bind(self.condition, values))

    def describe(self, lang: str) -> str:
        return self.names.get(lang) or self.names["en"]


@dataclass(frozen=True)
class Catalogue:
    parameters: dict[str, Parameter]
    features: dict[str, Feature]
    digest: str  # SHA-256 of the catalogue text: a profile records which definitions made it

    def order(self) -> list[Feature]:
        """Relation features first, then derived ones in dependency order."""
        done: set[str] = set()
        out = [f for f in self.features.values() if not f.derived]
        done.update(f.name for f in out)
        pending = [f for f in self.features.values() if f.derived]
        while pending:
            ready = [f for f in pending if f.inputs() <= done]
            if not ready:
                names = ", ".join(f.name for f in pending)
                raise CatalogueError(f"derived features depend on each other in a cycle: {names}")
            out.extend(ready)
            done.update(f.name for f in ready)
            pending = [f for f in pending if f.name not in done]
        return out


def literal(value: Any) -> exp.Expression:
    """A parameter value as an SQL literal (a Decimal stays an exact decimal number)."""
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, Decimal):
        return exp.Literal.number(str(value))
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.build("DATE"))
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def bind(tree: exp.Expression, values: dict[str, Any]) -> exp.Expression:
    """The expression with every parameter replaced by its value as a literal.

    Parameters are constants of one run (the reference date, the pension ages); as literals
    they need no join and no GROUP BY, and the query shows the values it used.
    """

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name in values:
            return literal(values[node.name])
        return node

    return tree.copy().transform(swap)


def _with_filter(tree: exp.Expression, condition: exp.Expression) -> str:
    """``count(*)`` with ``where: age < 1`` becomes ``COUNT(*) FILTER (WHERE age < 1)``.

    Every aggregate in the expression gets the condition (ANDed with a FILTER it already has).
    """

    def add(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Filter):
            where = node.expression
            return exp.Filter(
                this=node.this, expression=exp.Where(this=exp.and_(condition.copy(), where.this))
            )
        if isinstance(node, sqlcheck.AGGREGATES) and not isinstance(node.parent, exp.Filter):
            return exp.Filter(this=node, expression=exp.Where(this=condition.copy()))
        return node

    return sqlcheck.render(tree.copy().transform(add))


def _line_numbers(text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("features:"):
            inside = True
        elif inside and line.startswith("  ") and not line.startswith("   ") and ":" in line:
            lines[line.strip().split(":")[0]] = number
    return lines


def parse_catalogue(text: str, origin: str = "features.yaml") -> Catalogue:
    """Load and check a catalogue text; raises ``CatalogueError`` listing every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{origin}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("features"), dict):
        raise CatalogueError(f"{origin}: expected a mapping with `parameters` and `features`")
    lines = _line_numbers(text)
    problems: list[str] = []
    parameters = {}
    for name, spec in (data.get("parameters") or {}).items():
        if not isinstance(spec, dict) or "value" not in spec:
            problems.append(f"{origin}: parameter {name}: needs a `value`")
            continue
        parameters[name] = Parameter(
            name, spec["value"], str(spec.get("unit", "")), str(spec.get("source", ""))
        )
    rels = relations()
    names = set(data["features"])
    features: dict[str, Feature] = {}
    for name, spec in data["features"].items():
        where = f"{origin}:{lines.get(name, '?')}: feature {name}"
        if not isinstance(spec, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        missing = [k for k in ("names", "unit", "sources", "from", "sql") if k not in spec]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
            continue
        relation = str(spec["from"])
        if relation != DERIVED and relation not in rels:
            known = ", ".join([*rels, DERIVED])
            problems.append(f"{where}: unknown relation {relation!r} (known: {known})")
            continue
        if spec["unit"] not in UNITS:
            problems.append(f"{where}: unit {spec['unit']!r} is not one of {', '.join(UNITS)}")
        if not all(lang in spec["names"] for lang in ("ru", "kk", "en")):
            problems.append(f"{where}: names need ru, kk and en")
        if relation == DERIVED:
            columns = (names - {name}) | set(parameters) | set(PARAMETER_COLUMNS)
        else:
            columns = set(rels[relation].columns) | set(parameters) | set(PARAMETER_COLUMNS)
        try:
            tree = sqlcheck.parse(str(spec["sql"]))
            condition = sqlcheck.parse(str(spec["where"])) if spec.get("where") else None
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        errors = sqlcheck.check(tree, columns=columns, aggregate=relation != DERIVED)
        if condition is not None:
            errors += sqlcheck.check(condition, columns=columns, aggregate=False)
            if relation == DERIVED:
                problems.append(f"{where}: `where` applies to relation features only")
        problems.extend(f"{where}: {error}" for error in errors)
        features[name] = Feature(
            name=name,
            names={k: str(v) for k, v in spec["names"].items()},
            unit=str(spec["unit"]),
            sources=tuple(spec["sources"]),
            relation=relation,
            sql=str(spec["sql"]),
            where=str(spec["where"]) if spec.get("where") else None,
            empty=spec.get("empty"),
            line=lines.get(name, 0),
            tree=tree,
            condition=condition,
        )
    if problems:
        raise CatalogueError("the feature catalogue does not check:\n  " + "\n  ".join(problems))
    catalogue = Catalogue(parameters, features, hashlib.sha256(text.encode("utf-8")).hexdigest())
    catalogue.order()  # raises on a cycle
    return catalogue


@cache
def load_catalogue() -> Catalogue:
    text = resources.files("qamqor.profiles").joinpath("features.yaml").read_text("utf-8")
    return parse_catalogue(text)


def parameter_values(catalogue: Catalogue) -> dict[str, Any]:
    return {name: p.value for name, p in catalogue.parameters.items()}


def compile_features(catalogue: Catalogue, values: dict[str, Any]) -> str:
    """One query: a row per ``target`` household with every feature as a column.

    ``values`` binds the parameters: the catalogue's own and the run's (``as_of``,
    ``quarter_start``, ``quarter_end``).
    """
    by_relation: dict[str, list[Feature]] = {}
    for feature in catalogue.features.values():
        if not feature.derived:
            by_relation.setdefault(feature.relation, []).append(feature)
    ctes = []
    joins = []
    selected = []
    for i, (relation, features) in enumerate(by_relation.items()):
        aggregates = ", ".join(f"{f.aggregate_sql(values)} AS {f.name}" for f in features)
        ctes.append(
            f"r{i} AS (SELECT household_id, {aggregates} FROM {relation} GROUP BY household_id)"
        )
        joins.append(f"LEFT JOIN r{i} USING (household_id)")
        for f in features:
            if f.empty is None:
                selected.append(f"r{i}.{f.name}")
            else:
                selected.append(f"coalesce(r{i}.{f.name}, {json.dumps(f.empty)}) AS {f.name}")
    base = (
        f"SELECT t.household_id, {', '.join(selected)} FROM target t {' '.join(joins)}"
        if selected
        else "SELECT household_id FROM target"
    )
    ctes.append(f"layer0 AS ({base})")
    # Derived features, layer by layer, so one may use another.
    done = {f.name for f in catalogue.features.values() if not f.derived}
    pending = [f for f in catalogue.order() if f.derived]
    depth = 0
    while pending:
        ready = [f for f in pending if f.inputs() <= done]
        exprs = ", ".join(f"{sqlcheck.render(bind(f.tree, values))} AS {f.name}" for f in ready)
        ctes.append(f"layer{depth + 1} AS (SELECT *, {exprs} FROM layer{depth})")
        done.update(f.name for f in ready)
        pending = [f for f in pending if f.name not in done]
        depth += 1
    ordered = ", ".join(f.name for f in catalogue.features.values())
    return f"WITH {', '.join(ctes)} SELECT household_id, {ordered} FROM layer{depth}"
