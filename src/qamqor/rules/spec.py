"""Program specs (``programs/*.yaml``) and their dated parameters: loading and checking.

A spec is published data: criteria are boolean SQL over profile features and parameters, the
amount a numeric SQL expression, and both are checked with sqlglot before anything runs
(``kit/sqlcheck.py``: known names only, whitelisted functions, no sub-queries). Errors name the
file, the line and the criterion. A program version is the SHA-256 of its spec text and of the
parameter values it used on the reference date, so a decision can name exactly what decided it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import yaml
from sqlglot import exp

from qamqor.kit import sqlcheck
from qamqor.kit.errors import QamqorError
from qamqor.profiles.catalogue import load_catalogue

UNITS = ("household", "person")
CHANNELS = ("bank", "wallet")
PURPOSES = ("cash", "food", "medicine", "school_meals", "rehabilitation", "social_services")
# Figures of the whole population a rule may use, computed by the evaluator at run time.
POPULATION_FIGURES = ("median_per_capita_income_tiyn",)


class SpecError(QamqorError):
    """A program spec or the parameters file does not check; the message lists every problem."""


class _LineLoader(yaml.SafeLoader):
    """Keeps the line of every mapping, so an error can point at it."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


@dataclass(frozen=True)
class ParameterValue:
    start: dt.date
    value: int | Decimal
    source: str
    # per-region values (region code -> value) where a region's differs from ``value``
    regions: tuple[tuple[str, int | Decimal], ...] = ()


@dataclass(frozen=True)
class Parameter:
    name: str
    unit: str
    names: dict[str, str]
    values: tuple[ParameterValue, ...]

    def on(self, day: dt.date) -> ParameterValue:
        """The value in force on ``day``: the newest whose ``from`` is not after it."""
        valid = [v for v in self.values if v.start <= day]
        if not valid:
            raise SpecError(f"parameter {self.name} has no value in force on {day.isoformat()}")
        return max(valid, key=lambda v: v.start)


@dataclass(frozen=True)
class Criterion:
    id: str
    text: dict[str, str]
    sql: str
    line: int
    tree: exp.Expression = field(compare=False, repr=False)


@dataclass(frozen=True)
class Program:
    id: str
    names: dict[str, str]
    legal_basis: dict[str, Any]
    unit: str
    effective_from: dt.date
    effective_to: dt.date | None
    rounding: str
    derived: dict[str, str]
    criteria: tuple[Criterion, ...]
    amount_sql: str
    payment: dict[str, Any]
    origin: str
    text: str = field(repr=False)

    def parameters_used(self) -> set[str]:
        names: set[str] = set()
        trees = [c.tree for c in self.criteria] + [sqlcheck.parse(self.amount_sql)]
        trees += [sqlcheck.parse(sql) for sql in self.derived.values()]
        for tree in trees:
            names |= sqlcheck.columns_of(tree)
        return names

    def values_used(
        self,
        parameters: dict[str, Parameter],
        day: dt.date,
        figures: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """The parameter values (and population figures) this program uses on ``day``, as
        text so that decimals stay exact: ``{"mrp_tiyn": "432500", "x": {"value": ..,
        "regions": {code: ..}}}``."""
        return values_on(self.parameters_used(), parameters, day, figures)

    def version(
        self,
        parameters: dict[str, Parameter],
        day: dt.date,
        figures: Mapping[str, int] | None = None,
    ) -> str:
        """SHA-256 of the spec text and of the parameter values (and figures) it uses."""
        return version_of(self.text, self.values_used(parameters, day, figures))


def values_on(
    names: set[str],
    parameters: Mapping[str, Parameter],
    day: dt.date,
    figures: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The values of ``names`` in force on ``day`` (parameters, then population figures), as
    text so that decimals stay exact; a per-region value as {"value": .., "regions": {..}}."""
    used: dict[str, Any] = {}
    for name in sorted(names & set(parameters)):
        value = parameters[name].on(day)
        if value.regions:
            used[name] = {
                "value": str(value.value),
                "regions": {code: str(v) for code, v in value.regions},
            }
        else:
            used[name] = str(value.value)
    for name in sorted(names & set(POPULATION_FIGURES)):
        if figures is not None and name in figures:
            used[name] = str(figures[name])
    return used


def version_of(text: str, values: dict[str, Any]) -> str:
    digest = hashlib.sha256(text.encode("utf-8"))
    digest.update(json.dumps(values, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


def _date(value: Any, where: str, problems: list[str]) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        problems.append(f"{where}: {value!r} is not a date YYYY-MM-DD")
        return None


def _amount(raw: Any, unit: str) -> int | Decimal:
    """A parameter value as the rules use it: tenge become integer tiyn, the rest stay exact."""
    value = Decimal(str(raw))
    return int(value * 100) if unit == "tenge" else value


def parse_parameters(text: str, origin: str = "parameters.yaml") -> dict[str, Parameter]:
    data = yaml.load(text, Loader=_LineLoader)
    if not isinstance(data, dict) or not isinstance(data.get("parameters"), dict):
        raise SpecError(f"{origin}: expected a mapping with `parameters`")
    problems: list[str] = []
    out: dict[str, Parameter] = {}
    for name, spec in data["parameters"].items():
        if name == "__line__":
            continue
        where = f"{origin}:{spec.get('__line__', '?')}: parameter {name}"
        unit = spec.get("unit")
        if unit not in ("tenge", "share", "count", "years"):
            problems.append(f"{where}: unit must be tenge, share, count or years")
            continue
        if unit == "tenge" and not name.endswith("_tiyn"):
            problems.append(f"{where}: a money parameter is used in tiyn: name it *_tiyn")
        values = []
        for item in spec.get("values") or []:
            start = _date(item.get("from"), where, problems)
            if "value" not in item or not item.get("source"):
                problems.append(f"{where}: every value needs `value` and its legal `source`")
                continue
            value = _amount(item["value"], unit)
            regions = tuple(
                sorted(
                    (str(code), _amount(v, unit))
                    for code, v in (item.get("by_region") or {}).items()
                    if code != "__line__"
                )
            )
            if start is not None:
                values.append(ParameterValue(start, value, str(item["source"]), regions))
        if not values:
            problems.append(f"{where}: no values")
            continue
        names = {k: v for k, v in (spec.get("names") or {}).items() if k != "__line__"}
        out[name] = Parameter(name, unit, names, tuple(sorted(values, key=lambda v: v.start)))
    if problems:
        raise SpecError("the parameters do not check:\n  " + "\n  ".join(problems))
    return out


def _check_expression(
    sql: Any, where: str, known: set[str], boolean: bool, problems: list[str]
) -> exp.Expression | None:
    if not isinstance(sql, str) or not sql.strip():
        problems.append(f"{where}: needs an SQL expression")
        return None
    try:
        tree = sqlcheck.parse(sql)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None
    problems.extend(
        f"{where}: {error}" for error in sqlcheck.check(tree, columns=known, aggregate=False)
    )
    root = tree.unnest() if isinstance(tree, exp.Paren) else tree
    if boolean and not isinstance(root, sqlcheck.PREDICATES):
        problems.append(f"{where}: a criterion must be a condition (a comparison, AND, OR ...)")
    if not boolean and (
        isinstance(root, sqlcheck.PREDICATES) or (isinstance(root, exp.Literal) and root.is_string)
    ):
        problems.append(f"{where}: the amount must be a number, not a condition or text")
    return tree


def parse_program(text: str, parameters: dict[str, Parameter], origin: str) -> Program:
    data = yaml.load(text, Loader=_LineLoader)
    problems: list[str] = []
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a mapping")
    required = ("id", "names", "legal_basis", "unit", "effective", "rounding", "criteria")
    missing = [k for k in (*required, "amount", "payment") if k not in data]
    if missing:
        raise SpecError(f"{origin}: missing {', '.join(missing)}")
    head = f"{origin}:{data['__line__']}"
    if data["unit"] not in UNITS:
        problems.append(f"{head}: unit must be household or person")
    names = {k: str(v) for k, v in data["names"].items() if k != "__line__"}
    if not {"ru", "kk", "en"} <= set(names):
        problems.append(f"{head}: names need ru, kk and en")
    basis = {k: v for k, v in data["legal_basis"].items() if k != "__line__"}
    if not {"document", "article", "date"} <= set(basis):
        problems.append(f"{head}: legal_basis needs document, article and date")
    start = _date(data["effective"].get("from"), f"{head}: effective", problems)
    end = data["effective"].get("to")
    end_date = _date(end, f"{head}: effective", problems) if end else None
    payment = {k: v for k, v in data["payment"].items() if k != "__line__"}
    if payment.get("channel") not in CHANNELS:
        problems.append(f"{head}: payment channel must be bank or wallet")
    if payment.get("purpose") not in PURPOSES:
        problems.append(f"{head}: payment purpose must be one of {', '.join(PURPOSES)}")
    # the wallet's keys (qamqor.wallet.credits): when a credit expires, and whether the
    # citizen must activate it each month
    if payment.get("expiry") not in (None, "month_end"):
        problems.append(f"{head}: payment expiry must be month_end (or use expiry_months)")
    months = payment.get("expiry_months")
    if months is not None and not (isinstance(months, int) and months > 0):
        problems.append(f"{head}: payment expiry_months must be a positive whole number")
    if payment.get("activation") not in (None, "monthly"):
        problems.append(f"{head}: payment activation must be monthly when given")
    if payment.get("channel") != "wallet" and {"expiry", "expiry_months", "activation"} & set(
        payment
    ):
        problems.append(f"{head}: expiry and activation apply to wallet payments only")
    known = set(load_catalogue().features) | set(parameters) | set(POPULATION_FIGURES)
    derived: dict[str, str] = {}
    for name, sql in (data.get("derived") or {}).items():
        if name == "__line__":
            continue
        where = f"{origin}:{data['derived']['__line__']}: derived {name}"
        only_parameters = set(parameters) | set(POPULATION_FIGURES) | set(derived)
        _check_expression(sql, where, only_parameters, False, problems)
        derived[name] = str(sql)
    known |= set(derived)
    criteria: list[Criterion] = []
    seen: set[str] = set()
    for item in data["criteria"] or []:
        line = item.get("__line__", 0)
        cid = str(item.get("id") or "?")
        where = f"{origin}:{line}: criterion {cid}"
        if cid in seen:
            problems.append(f"{where}: the id is used twice")
        seen.add(cid)
        text_ = {k: str(v) for k, v in (item.get("text") or {}).items() if k != "__line__"}
        if not {"ru", "kk", "en"} <= set(text_):
            problems.append(f"{where}: text needs ru, kk and en")
        tree = _check_expression(item.get("sql"), where, known, True, problems)
        if tree is not None:
            criteria.append(Criterion(cid, text_, str(item["sql"]), line, tree))
    amount = data["amount"]
    _check_expression(
        amount.get("sql"), f"{origin}:{amount.get('__line__', '?')}: amount", known, False, problems
    )
    if problems:
        raise SpecError(f"program {data['id']} does not check:\n  " + "\n  ".join(problems))
    assert start is not None
    return Program(
        id=str(data["id"]),
        names=names,
        legal_basis=basis,
        unit=str(data["unit"]),
        effective_from=start,
        effective_to=end_date,
        rounding=str(data["rounding"]),
        derived=derived,
        criteria=tuple(criteria),
        amount_sql=str(amount["sql"]),
        payment=payment,
        origin=origin,
        text=text,
    )


def _programs_dir() -> Traversable:
    return resources.files("qamqor").joinpath("programs")


@cache
def load_parameters() -> dict[str, Parameter]:
    """The published parameters, read once per process (a new file needs a restart)."""
    text = _programs_dir().joinpath("parameters.yaml").read_text("utf-8")
    return parse_parameters(text, "programs/parameters.yaml")


@cache
def load_programs() -> dict[str, Program]:
    """Every published program; raises ``SpecError`` listing the problems of all of them."""
    parameters = load_parameters()
    programs: dict[str, Program] = {}
    problems: list[str] = []
    for entry in sorted(_programs_dir().iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml") or entry.name == "parameters.yaml":
            continue
        try:
            program = parse_program(entry.read_text("utf-8"), parameters, f"programs/{entry.name}")
        except SpecError as exc:
            problems.append(str(exc))
            continue
        if program.id in programs:
            problems.append(f"programs/{entry.name}: program id {program.id} is used twice")
        programs[program.id] = program
    if problems:
        raise SpecError("\n".join(problems))
    return programs
