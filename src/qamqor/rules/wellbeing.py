"""Well-being levels of the Digital Family Map: every household at level A-E, by its deprivations.

The method is Alkire and Foster's counting approach. ``programs/wellbeing/levels.yaml`` lists
five dimensions and their indicators; each indicator is a boolean SQL expression ("deprived")
over profile features and parameters, with a weight, and the weights sum to 1. A household's
score c is the sum of the weights of the indicators it is deprived in; its level is the highest
whose cut-off c reaches.

Unknown stays unknown, as in the programs: an indicator over a NULL (missing or held) feature is
NULL unless the rest of the expression decides it. The score is then a range: ``score_min``
counts only the indicators known to be TRUE, ``score_max`` adds the unknown ones. When both ends
fall in the same level the household has that level; otherwise it ``needs_review``, since the
unknown values could change it.

Evaluation shares the engine with the programs (``engine.evaluate``): a ``WellbeingBound`` is an
``Evaluable`` whose query returns the same columns, with the level as ``status`` and no amount.
Weights, cut-offs and scores are decimals throughout, never binary floats.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from importlib import resources
from itertools import pairwise
from typing import Any

import yaml
from sqlglot import exp

from qamqor.kit import sqlcheck
from qamqor.kit.i18n import translate
from qamqor.profiles.catalogue import Catalogue, load_catalogue
from qamqor.rules.engine import _quote, substitute
from qamqor.rules.spec import (
    POPULATION_FIGURES,
    Parameter,
    SpecError,
    _check_expression,
    _date,
    _LineLoader,
    load_parameters,
    parse_parameters,
    values_on,
    version_of,
)

ORIGIN = "programs/wellbeing/levels.yaml"
LEVELS = ("A", "B", "C", "D", "E")
NEEDS_REVIEW = "needs_review"
LANGUAGES = ("ru", "kk", "en")
# Fixed phrases of explanations; everything else comes from the YAML. To move to the Babel
# catalogues with the rest of the interface.
# every fixed phrase, in the Babel catalogues (locale/*/LC_MESSAGES/messages.po)
KEYS = (
    "rules.wellbeing.needs_review",
    "rules.wellbeing.would_be",
    "rules.wellbeing.title",
    "rules.wellbeing.score",
    "rules.wellbeing.deprived",
    "rules.wellbeing.unknown",
    "rules.wellbeing.none",
)


@dataclass(frozen=True)
class Indicator:
    id: str
    dimension: str
    names: dict[str, str]
    text: dict[str, str]
    sql: str
    weight: str  # the parameter holding its weight
    line: int
    tree: exp.Expression = field(compare=False, repr=False)


@dataclass(frozen=True)
class Dimension:
    id: str
    names: dict[str, str]
    indicators: tuple[str, ...]


@dataclass(frozen=True)
class Level:
    id: str
    names: dict[str, str]
    cutoff: str | None  # the parameter holding the lowest score of the level; None for A


@dataclass(frozen=True)
class WellbeingSpec:
    id: str
    names: dict[str, str]
    basis: dict[str, str]
    effective_from: dt.date
    derived: dict[str, str]
    parameters: dict[str, Parameter]  # its own: weights, cut-offs, deprivation norms
    dimensions: tuple[Dimension, ...]
    indicators: tuple[Indicator, ...]
    levels: tuple[Level, ...]
    origin: str
    text: str = field(repr=False)

    def parameters_used(self) -> set[str]:
        """Names the indicators and derived values read, plus every weight and cut-off."""
        names: set[str] = set()
        for indicator in self.indicators:
            names |= sqlcheck.columns_of(indicator.tree)
        for sql in self.derived.values():
            names |= sqlcheck.columns_of(sqlcheck.parse(sql))
        names |= {i.weight for i in self.indicators}
        names |= {lv.cutoff for lv in self.levels if lv.cutoff}
        return names

    def values_used(
        self,
        parameters: Mapping[str, Parameter],
        day: dt.date,
        figures: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """As ``Program.values_used``: the values in force on ``day``, as text."""
        every = {**parameters, **self.parameters}
        return values_on(self.parameters_used(), every, day, figures)


# --- parsing and checking ----------------------------------------------------------------------


def _languages(raw: Any, where: str, what: str, problems: list[str]) -> dict[str, str]:
    found = {str(k): str(v) for k, v in (raw or {}).items() if k != "__line__"}
    if not set(LANGUAGES) <= set(found):
        problems.append(f"{where}: {what} need ru, kk and en")
    return found


def _check_share(
    name: Any,
    what: str,
    where: str,
    own: dict[str, Parameter],
    problems: list[str],
) -> str | None:
    """A weight or cut-off: one of the file's own parameters, a share, the same everywhere."""
    if not isinstance(name, str) or name not in own:
        problems.append(f"{where}: {what} {name!r} is not a parameter of this file")
        return None
    parameter = own[name]
    if parameter.unit != "share":
        problems.append(f"{where}: {what} {name} must have unit share")
    for value in parameter.values:
        if value.regions:
            problems.append(f"{where}: {what} {name} may not differ by region")
        if not 0 <= value.value <= 1:
            problems.append(f"{where}: {what} {name} is {value.value}, not within 0..1")
    return name


def _dates(own: dict[str, Parameter], names: list[str], start: dt.date) -> list[dt.date]:
    """The days on which any of ``names`` changes, from ``start`` on: where sums can change."""
    days = {v.start for n in names for v in own[n].values if v.start > start}
    return [start, *sorted(days)]


def _check_weights(
    own: dict[str, Parameter],
    weights: list[str],
    cutoffs: list[str],
    start: dt.date,
    where: str,
    problems: list[str],
) -> None:
    for day in _dates(own, [*weights, *cutoffs], start):
        try:
            total = sum((Decimal(own[w].on(day).value) for w in weights), Decimal(0))
            limits = [Decimal(own[c].on(day).value) for c in cutoffs]
        except SpecError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if total != 1:
            problems.append(f"{where}: the weights sum to {total} on {day.isoformat()}, not 1")
        if limits and (limits[0] <= 0 or any(a >= b for a, b in pairwise(limits))):
            shown = ", ".join(str(v) for v in limits)
            problems.append(
                f"{where}: the level cut-offs ({shown}) on {day.isoformat()} must rise from above 0"
            )


def _parse_levels(
    raw: list[Any], origin: str, head: str, own: dict[str, Parameter], problems: list[str]
) -> list[Level]:
    if [str(item.get("id")) for item in raw] != list(LEVELS):
        problems.append(f"{head}: levels must be {', '.join(LEVELS)} in this order")
    levels: list[Level] = []
    for item in raw:
        where = f"{origin}:{item.get('__line__', '?')}: level {item.get('id')}"
        names = _languages(item.get("names"), where, "names", problems)
        cutoff = item.get("from")
        if str(item.get("id")) == LEVELS[0]:
            if cutoff is not None:
                problems.append(f"{where}: the lowest level has no cut-off")
        else:
            cutoff = _check_share(cutoff, "cut-off", where, own, problems)
        levels.append(Level(str(item.get("id")), names, cutoff))
    return levels


def _parse_dimensions(
    raw: list[Any],
    origin: str,
    own: dict[str, Parameter],
    known: set[str],
    problems: list[str],
) -> tuple[list[Dimension], list[Indicator]]:
    dimensions: list[Dimension] = []
    indicators: list[Indicator] = []
    seen: set[str] = set()
    for dim in raw:
        dim_id = str(dim.get("id") or "?")
        where = f"{origin}:{dim.get('__line__', '?')}: dimension {dim_id}"
        dim_names = _languages(dim.get("names"), where, "names", problems)
        if not dim.get("indicators"):
            problems.append(f"{where}: no indicators")
        ids: list[str] = []
        for item in dim.get("indicators") or []:
            line = item.get("__line__", 0)
            iid = str(item.get("id") or "?")
            where = f"{origin}:{line}: indicator {iid}"
            if iid in seen:
                problems.append(f"{where}: the id is used twice")
            seen.add(iid)
            ids.append(iid)
            names = _languages(item.get("names"), where, "names", problems)
            text = _languages(item.get("text"), where, "text", problems)
            weight = _check_share(item.get("weight"), "weight", where, own, problems)
            tree = _check_expression(item.get("deprived"), where, known, True, problems)
            if tree is not None and weight is not None:
                indicators.append(
                    Indicator(
                        id=iid,
                        dimension=dim_id,
                        names=names,
                        text=text,
                        sql=str(item["deprived"]),
                        weight=weight,
                        line=line,
                        tree=tree,
                    )
                )
        dimensions.append(Dimension(dim_id, dim_names, tuple(ids)))
    return dimensions, indicators


def parse_wellbeing(
    text: str, parameters: dict[str, Parameter], origin: str = ORIGIN
) -> WellbeingSpec:
    """Parse and check the levels file against the published ``parameters``; raises
    ``SpecError`` listing every problem with its line."""
    data = yaml.load(text, Loader=_LineLoader)
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a mapping")
    required = ("id", "names", "basis", "effective", "parameters", "levels", "dimensions")
    missing = [k for k in required if k not in data]
    if missing:
        raise SpecError(f"{origin}: missing {', '.join(missing)}")
    head = f"{origin}:{data['__line__']}"
    problems: list[str] = []
    names = _languages(data["names"], head, "names", problems)
    basis = {str(k): str(v) for k, v in (data["basis"] or {}).items() if k != "__line__"}
    if not {"method", "levels", "indicators"} <= set(basis):
        problems.append(f"{head}: basis needs method, levels and indicators")
    start = _date((data["effective"] or {}).get("from"), f"{head}: effective", problems)

    try:
        own = parse_parameters(text, origin)
    except SpecError as exc:
        problems.extend(str(exc).split("\n  ")[1:])
        own = {}
    section = data["parameters"] if isinstance(data["parameters"], dict) else {}
    where_parameters = f"{origin}:{section.get('__line__', '?')}: parameters"
    clash = sorted(set(own) & set(parameters))
    if clash:
        problems.append(f"{where_parameters}: {', '.join(clash)} already in parameters.yaml")

    every = {**parameters, **own}
    derived: dict[str, str] = {}
    for name, sql in (data.get("derived") or {}).items():
        if name == "__line__":
            continue
        where = f"{origin}:{data['derived']['__line__']}: derived {name}"
        only_parameters = set(every) | set(POPULATION_FIGURES) | set(derived)
        _check_expression(sql, where, only_parameters, False, problems)
        derived[name] = str(sql)
    known = set(load_catalogue().features) | set(every) | set(POPULATION_FIGURES) | set(derived)

    levels = _parse_levels(data["levels"] or [], origin, head, own, problems)
    dimensions, indicators = _parse_dimensions(
        data["dimensions"] or [], origin, own, known, problems
    )
    if start is not None and not problems:
        weights = [i.weight for i in indicators]
        cutoffs = [lv.cutoff for lv in levels if lv.cutoff]
        _check_weights(own, weights, cutoffs, start, where_parameters, problems)
    if problems:
        raise SpecError(f"well-being levels {data['id']} do not check:\n  " + "\n  ".join(problems))
    assert start is not None
    return WellbeingSpec(
        id=str(data["id"]),
        names=names,
        basis=basis,
        effective_from=start,
        derived=derived,
        parameters=own,
        dimensions=tuple(dimensions),
        indicators=tuple(indicators),
        levels=tuple(levels),
        origin=origin,
        text=text,
    )


def load_wellbeing(parameters: dict[str, Parameter] | None = None) -> WellbeingSpec:
    """The published levels (read once per process), or checked against ``parameters``."""
    if parameters is None:
        return _published()
    path = resources.files("qamqor").joinpath("programs", "wellbeing", "levels.yaml")
    return parse_wellbeing(path.read_text("utf-8"), parameters)


@cache
def _published() -> WellbeingSpec:
    path = resources.files("qamqor").joinpath("programs", "wellbeing", "levels.yaml")
    return parse_wellbeing(path.read_text("utf-8"), load_parameters())


# --- binding -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WellbeingBound:
    """The levels with the values they classify with on one day (an ``engine.Evaluable``)."""

    spec: WellbeingSpec
    day: dt.date
    values: dict[str, Any]  # as Program.values_used: text, exact
    version: str

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def text(self) -> str:
        return self.spec.text

    def features(self, catalogue: Catalogue) -> list[str]:
        names: set[str] = set()
        for indicator in self.spec.indicators:
            names |= sqlcheck.columns_of(indicator.tree)
        return [f for f in catalogue.features if f in names]

    def weight(self, indicator: Indicator) -> Decimal:
        return Decimal(self.values[indicator.weight])

    def cutoffs(self) -> list[tuple[str, Decimal]]:
        """(level, lowest score) from the highest level down; the lowest level has none."""
        return [
            (lv.id, Decimal(self.values[lv.cutoff]))
            for lv in reversed(self.spec.levels)
            if lv.cutoff
        ]

    def level_of(self, score: Decimal) -> str:
        return next((lv for lv, lowest in self.cutoffs() if score >= lowest), LEVELS[0])

    def compile(self, catalogue: Catalogue, source: str, detail: bool) -> str:
        return compile_wellbeing(self, catalogue, source, detail)


def bind_wellbeing(
    spec: WellbeingSpec,
    parameters: dict[str, Parameter],
    day: dt.date,
    figures: Mapping[str, int] | None = None,
) -> WellbeingBound:
    values = spec.values_used(parameters, day, figures)
    missing = spec.parameters_used() & set(POPULATION_FIGURES) - set(values)
    if missing:
        raise ValueError(f"the well-being levels need the population figures {sorted(missing)}")
    return WellbeingBound(spec, day, values, version_of(spec.text, values))


def rebind_wellbeing(spec: WellbeingSpec, day: dt.date, values: dict[str, Any]) -> WellbeingBound:
    """The levels bound to stored values (a replay, a simulation's changed parameters)."""
    return WellbeingBound(spec, day, values, version_of(spec.text, values))


# --- the query ---------------------------------------------------------------------------------


def _sql(tree: exp.Expression, bound: WellbeingBound) -> str:
    return sqlcheck.render(substitute(tree, bound.spec.derived, bound.values))


def compile_wellbeing(
    bound: WellbeingBound,
    catalogue: Catalogue,
    source: str = "profile_input",
    detail: bool = True,
) -> str:
    """One SELECT producing the engine's ``OUTPUT_COLUMNS`` (``LEAN_COLUMNS`` without
    ``detail``) for every row of ``source``: the level (or needs_review) as ``status``, a NULL
    amount, and in ``detail`` the indicators (true/false/null, in file order), the score range,
    the values read, the derived values and the held values."""
    spec = bound.spec
    used = bound.features(catalogue)
    weights = [bound.weight(i) for i in spec.indicators]
    scale = max([2, *(-int(w.as_tuple().exponent) for w in weights)])
    indicators = [f"({_sql(i.tree, bound)}) AS i_{n}" for n, i in enumerate(spec.indicators)]
    derived = [f"({_sql(exp.column(name), bound)}) AS d_{n}" for n, name in enumerate(spec.derived)]
    effective = ", ".join(
        f"CASE WHEN list_contains(held, {_quote(f)}) THEN NULL ELSE {f} END AS {f}" for f in used
    )
    raw = ", ".join(f"{f} AS r_{n}" for n, f in enumerate(used))
    raw_names = ", ".join(f"r_{n}" for n in range(len(used)))
    region = "" if "region_code" in used else ", region_code"
    # the sure score counts the TRUE indicators; the highest possible one the unknown too
    score_min = " + ".join(f"CASE WHEN i_{n} THEN {w} ELSE 0 END" for n, w in enumerate(weights))
    score_max = " + ".join(
        f"CASE WHEN i_{n} IS NOT FALSE THEN {w} ELSE 0 END" for n, w in enumerate(weights)
    )
    score_type = f"DECIMAL(9, {scale})"

    def level(score: str) -> str:
        steps = " ".join(
            f"WHEN {score} >= {lowest} THEN {_quote(lv)}" for lv, lowest in bound.cutoffs()
        )
        return f"CASE {steps} ELSE {_quote(LEVELS[0])} END"

    decided = f"""
            SELECT *, CASE WHEN level_min = level_max THEN level_min
                           ELSE {_quote(NEEDS_REVIEW)} END AS status
            FROM (
              SELECT *, {level("score_min")} AS level_min, {level("score_max")} AS level_max
              FROM (
                SELECT *, CAST({score_min} AS {score_type}) AS score_min,
                       CAST({score_max} AS {score_type}) AS score_max
                FROM (
                  SELECT household_id, profile_version_id, as_of, holds, {raw_names},
                         {", ".join([*indicators, *derived])}
                  FROM (SELECT household_id, profile_version_id, as_of, holds{region}, {raw},
                               {effective}
                        FROM {source} WHERE as_of = DATE '{bound.day.isoformat()}')
                )
              )
            )"""
    if not detail:
        return f"""
        SELECT household_id, {_quote(spec.id)} AS program_id, status,
               CAST(NULL AS BIGINT) AS amount_tiyn
        FROM ({decided})"""
    values_json = ", ".join(f"{_quote(f)}, r_{n}" for n, f in enumerate(used))
    held_json = ", ".join(
        f"{{'f': {_quote(f)}, 'why': json_extract(holds, {_quote('$.' + f)})}}" for f in used
    )
    derived_json = ", ".join(f"{_quote(name)}, d_{n}" for n, name in enumerate(spec.derived))
    indicators_json = ", ".join(f"i_{n}" for n in range(len(spec.indicators)))
    return f"""
        SELECT household_id, profile_version_id, as_of,
               {_quote(spec.id)} AS program_id, {_quote(bound.version)} AS program_version,
               status, CAST(NULL AS BIGINT) AS amount_tiyn, detail,
               sha256(status || '|' || '' || '|' || detail) AS content_sha256
        FROM (
          SELECT *, CAST(json_object(
                   'indicators', json_array({indicators_json}),
                   'score_min', score_min,
                   'score_max', score_max,
                   'values', json_object({values_json}),
                   'derived', json_object({derived_json}),
                   'held', to_json(list_filter([{held_json}], lambda h: h.why IS NOT NULL))
                 ) AS VARCHAR) AS detail
          FROM ({decided})
        )
    """


# --- explaining --------------------------------------------------------------------------------


def explain_wellbeing(detail: dict[str, Any], bound: WellbeingBound, lang: str) -> dict[str, Any]:
    """A household's level in words of ``lang``: the deprivations, the unknowns and, below A,
    each deprivation whose absence alone would lower the level.

    Takes the bound levels (not just the spec) because weights and cut-offs are dated: the
    explanation must use the values the decision used (``rebind_wellbeing`` for a stored one).
    Scores are recomputed here in decimals from the indicators, not read back from the JSON.
    With unknown indicators the level after removing a deprivation is the highest it could be.
    """
    if lang not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    spec = bound.spec
    dimensions = {d.id: d for d in spec.dimensions}
    names = {lv.id: lv.names[lang] for lv in spec.levels}
    results: list[bool | None] = detail["indicators"]

    def described(indicator: Indicator) -> dict[str, Any]:
        return {
            "id": indicator.id,
            "name": indicator.names[lang],
            "text": indicator.text[lang],
            "dimension": indicator.dimension,
            "dimension_name": dimensions[indicator.dimension].names[lang],
            "weight": str(bound.weight(indicator)),
        }

    deprived = [i for i, r in zip(spec.indicators, results, strict=True) if r is True]
    unknown = [i for i, r in zip(spec.indicators, results, strict=True) if r is None]
    score_min = sum((bound.weight(i) for i in deprived), Decimal(0))
    score_max = score_min + sum((bound.weight(i) for i in unknown), Decimal(0))
    low, high = bound.level_of(score_min), bound.level_of(score_max)
    level = low if low == high else None
    would_be: list[dict[str, Any]] = []
    if level is not None and level != LEVELS[0]:
        for indicator in deprived:
            lower = bound.level_of(score_max - bound.weight(indicator))
            if LEVELS.index(lower) < LEVELS.index(level):
                sentence = translate(
                    "rules.wellbeing.would_be",
                    lang,
                    level=lower,
                    name=names[lower],
                    indicator=indicator.names[lang],
                )
                would_be.append({"id": indicator.id, "level": lower, "sentence": sentence})
    return {
        "level": level,
        "level_name": names[level]
        if level is not None
        else translate("rules.wellbeing.needs_review", lang),
        "possible_levels": list(LEVELS[LEVELS.index(low) : LEVELS.index(high) + 1]),
        "score_min": str(score_min),
        "score_max": str(score_max),
        "deprived": [described(i) for i in deprived],
        "unknown": [described(i) for i in unknown],
        "would_be": would_be,
    }


def render_wellbeing_text(explanation: dict[str, Any], lang: str) -> str:
    """A plain-text rendering of ``explain_wellbeing`` for the command line."""
    level = explanation["level"]
    head = translate("rules.wellbeing.title", lang)
    lines = [f"{head}: {level + ' — ' if level else ''}{explanation['level_name']}"]
    lines.append(
        translate(
            "rules.wellbeing.score",
            lang,
            low=explanation["score_min"],
            high=explanation["score_max"],
        )
    )
    for key, mark in (("deprived", "✗"), ("unknown", "?")):
        lines.append(translate(f"rules.wellbeing.{key}", lang))
        items = explanation[key]
        if not items:
            lines.append(f"  {translate('rules.wellbeing.none', lang)}")
        for item in items:
            lines.append(f"  {mark} {item['dimension_name']}: {item['name']} ({item['weight']})")
    lines.extend(f"  → {w['sentence']}" for w in explanation["would_be"])
    return "\n".join(lines)
