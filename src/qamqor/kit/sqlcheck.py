"""Checking untrusted SQL expressions with sqlglot before DuckDB ever sees them.

Feature definitions (and, later, program criteria) are SQL written by analysts. They may use
only the columns and parameters they are given and a short list of functions; sub-queries,
table functions (``read_csv``), ``SELECT`` and anything else sqlglot parses are refused. What runs
is sqlglot's own rendering of the checked tree, so the text DuckDB sees is the text checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

AGGREGATES: tuple[type[exp.Expression], ...] = (
    exp.Count,
    exp.Sum,
    exp.Min,
    exp.Max,
    exp.Avg,
    exp.AnyValue,
    exp.CountIf,
)
SCALAR_FUNCTIONS: tuple[type[exp.Expression], ...] = (
    exp.Coalesce,
    exp.Nullif,
    exp.Round,
    exp.Abs,
    exp.Floor,
    exp.Ceil,
    exp.Greatest,
    exp.Least,
    exp.DateDiff,
    exp.Year,
    exp.Month,
    exp.If,
    exp.Case,
    exp.Cast,
)
# The nodes a condition (a criterion, a filter) may have at its root.
PREDICATES: tuple[type[exp.Expression], ...] = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Between,
    exp.In,
    exp.Is,
    exp.And,
    exp.Or,
    exp.Not,
    exp.Boolean,
)
OPERATORS: tuple[type[exp.Expression], ...] = (
    *PREDICATES,
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Null,
    exp.Paren,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.IntDiv,
    exp.Mod,
    exp.Neg,
    exp.Filter,
    exp.Where,
    exp.Distinct,
    exp.DataType,
    exp.Var,
    exp.Tuple,
)
ALLOWED = AGGREGATES + SCALAR_FUNCTIONS + OPERATORS


@dataclass(frozen=True)
class ExpressionError:
    """One thing wrong with an expression, in words a rule author can act on."""

    message: str

    def __str__(self) -> str:
        return self.message


def parse(sql: str) -> exp.Expression:
    """Parse one expression in DuckDB's dialect; raises ``ValueError`` with sqlglot's reason."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as exc:
        first = exc.errors[0]["description"] if exc.errors else str(exc)
        raise ValueError(f"cannot parse {sql!r}: {first}") from None
    if tree is None:
        raise ValueError("empty expression")
    assert isinstance(tree, exp.Expression)
    return tree


def check(
    tree: exp.Expression,
    *,
    columns: Iterable[str],
    aggregate: bool | None,
) -> list[ExpressionError]:
    """What is wrong with ``tree``: unknown columns, refused constructs, aggregation misuse.

    ``aggregate=True`` demands an aggregate (a feature over a relation), ``False`` forbids one
    (a feature over other features, a criterion), ``None`` allows either.
    """
    known = set(columns)
    errors: list[ExpressionError] = []
    for node in tree.walk():
        if isinstance(node, exp.Star) and isinstance(node.parent, exp.Count):
            continue
        if not isinstance(node, ALLOWED):
            if isinstance(node, exp.Anonymous):
                what = f"function {node.name}()"
            elif isinstance(node, exp.Func):
                what = f"function {node.sql_name().lower()}()"
            else:
                what = f"{type(node).__name__} ({node.sql(dialect='duckdb')[:40]})"
            errors.append(ExpressionError(f"{what} is not allowed"))
            continue
        if isinstance(node, exp.Column):
            if node.table:
                errors.append(ExpressionError(f"{node.sql()}: qualified names are not allowed"))
            elif node.name not in known:
                errors.append(ExpressionError(f"unknown column or parameter {node.name!r}"))
    has_aggregate = any(isinstance(n, AGGREGATES) for n in tree.walk())
    if aggregate is True and not has_aggregate:
        errors.append(ExpressionError("must aggregate the relation (count, sum, min, max ...)"))
    if aggregate is False and has_aggregate:
        errors.append(ExpressionError("may not aggregate here"))
    if aggregate is True:
        for node in tree.find_all(*AGGREGATES):
            if node.find_ancestor(*AGGREGATES) is not None:
                errors.append(ExpressionError(f"nested aggregate {node.sql(dialect='duckdb')}"))
    return errors


def columns_of(tree: exp.Expression) -> set[str]:
    return {c.name for c in tree.find_all(exp.Column)}


def render(tree: exp.Expression) -> str:
    return tree.sql(dialect="duckdb")
