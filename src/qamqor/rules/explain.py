"""Explanations of decisions in Russian, Kazakh and English, built from the decision's detail.

An explanation recomputes nothing about the household: it reads the detail the decision query
wrote (criteria results, the values compared, thresholds, held values) and puts it in words.
The only reasoning it adds is the counterfactual of a failed threshold ("eligible if the
per-capita income were at most 35 596 ₸"), and it says "eligible if" only when that is true:
every other criterion met and every other part of the failed criterion known to hold.

Money is shown from integer tiyn with integer arithmetic; digits are grouped with a thin space
(U+2009) in every language, the decimal separator is the locale's (Babel's CLDR data).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.numbers import get_decimal_symbol, get_minus_sign_symbol
from sqlglot import exp

from qamqor.kit import sqlcheck
from qamqor.kit.i18n import LANGUAGES, normalise_language, translate
from qamqor.profiles.catalogue import Catalogue, Feature
from qamqor.quality.checks import Check, load_checks
from qamqor.registry import catalogue as registry_catalogue
from qamqor.rules import engine as rules_engine
from qamqor.rules.spec import Criterion, Program

THIN_SPACE = "\u2009"
TENGE_SIGN = "₸"
RESULTS = {True: "met", False: "not_met", None: "unknown"}
MARKS = {"met": "✓", "not_met": "✗", "unknown": "?"}
# units whose values are whole numbers: "> 0" reads better as "at least 1"
INTEGER_UNITS = ("count", "days", "years")
PLURAL_FORMS = ("one", "few", "many", "other")
BOUND_KEYS = {
    "<=": "rules.cf.at_most",
    "<": "rules.cf.below",
    ">=": "rules.cf.at_least",
    ">": "rules.cf.more_than",
    "=": "rules.cf.equal_to",
    "<>": "rules.cf.other_than",
}
COMPARE = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "<>": operator.ne,
}
STATUS_KEYS = {
    "eligible": "rules.status.eligible",
    "ineligible": "rules.status.ineligible",
    "needs_review": "rules.status.needs_review",
}
# Every message id this module uses; tests check each exists in the three catalogues.
KEYS = (
    *STATUS_KEYS.values(),
    *BOUND_KEYS.values(),
    "rules.cf.clause",
    "rules.cf.and",
    "rules.cf.eligible_if",
    "rules.cf.criterion_if",
    "rules.summary.eligible",
    "rules.summary.eligible_monthly",
    "rules.summary.ineligible",
    "rules.summary.needs_review",
    "rules.unknown.missing",
    "rules.unknown.data_quality",
    "rules.unknown.data_quality_value",
    "rules.unknown.contested",
    "rules.unknown.contested_value",
    "rules.unknown.source.one",
    "rules.unknown.source.other",
    "rules.value.unknown",
    "rules.value.held",
    "rules.unit.m2",
    *(f"rules.unit.days.{form}" for form in PLURAL_FORMS),
    *(f"rules.unit.years.{form}" for form in PLURAL_FORMS),
    "rules.heading.criteria",
    "rules.heading.unknown",
    "rules.heading.legal_basis",
    "rules.heading.required",
    "rules.quote",
    "rules.list_separator",
)


# --- numbers ---------------------------------------------------------------------------------


def _grouped(whole: int) -> str:
    return f"{whole:,}".replace(",", THIN_SPACE)


def load_locale_data() -> None:
    """Load Babel's data for every language now (a pickle per locale, 30-90 ms each on first
    use): the worker calls it at start, so the first offer in each language does not wait."""
    for lang in LANGUAGES:
        Locale.parse(lang).plural_form(1)
        get_decimal_symbol(lang)
        get_minus_sign_symbol(lang)


def format_tenge(tiyn: int, lang: str) -> str:
    """``3_559_570`` -> ``35 595,70 ₸`` (ru, kk) or ``35 595.70 ₸`` (en); whole tenge show no
    fraction. Only an int is accepted: a float amount would already be inexact."""
    if isinstance(tiyn, bool) or not isinstance(tiyn, int):
        raise TypeError(f"an amount in tiyn must be an int, not {type(tiyn).__name__}")
    lang = normalise_language(lang)
    whole, fraction = divmod(abs(tiyn), 100)
    text = _grouped(whole)
    if fraction:
        text += f"{get_decimal_symbol(lang)}{fraction:02d}"
    sign = get_minus_sign_symbol(lang) if tiyn < 0 else ""
    return f"{sign}{text} {TENGE_SIGN}"


def _number(value: int | Decimal | float, lang: str) -> str:
    number = value if isinstance(value, int) else Decimal(str(value))
    if isinstance(number, int):
        text = _grouped(abs(number))
    else:
        whole, _, fraction = format(abs(number), "f").partition(".")
        fraction = fraction.rstrip("0")
        text = _grouped(int(whole)) + (get_decimal_symbol(lang) + fraction if fraction else "")
    return (get_minus_sign_symbol(lang) if number < 0 else "") + text


def _plural_form(value: int | Decimal | float, lang: str) -> str:
    form = Locale.parse(lang).plural_form(value)
    return form if form in PLURAL_FORMS else "other"


def format_value(value: Any, unit: str, lang: str) -> str:
    """A feature's value in words of its unit: counts, tiyn (as tenge), m², days, years, codes."""
    lang = normalise_language(lang)
    if value is None:
        return translate("rules.value.unknown", lang)
    if unit == "code" or isinstance(value, str | bool):
        return str(value)
    if unit == "tiyn":
        tiyn = Decimal(str(value))
        if tiyn == tiyn.to_integral_value():
            return format_tenge(int(tiyn), lang)
        # a computed threshold may fall between two tiyn: shown as it is, never rounded
        return f"{_number(tiyn / 100, lang)} {TENGE_SIGN}"
    text = _number(value, lang)
    if unit == "m2":
        return translate("rules.unit.m2", lang, value=text)
    if unit in ("days", "years"):
        return translate(f"rules.unit.{unit}.{_plural_form(value, lang)}", lang, value=text)
    return text


def _as_int(value: Any) -> int:
    """A whole number from the detail's JSON (BIGINT arrives as int, DECIMAL maybe as float)."""
    if isinstance(value, int):
        return value
    number = Decimal(str(value))
    if number != number.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of tiyn")
    return int(number)


def _decimal(value: Any) -> Any:
    """Numbers as Decimal so comparisons are exact; text stays text."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    return Decimal(str(value))


# --- thresholds and counterfactuals ----------------------------------------------------------


def _integer_bound(op: str, value: Any, unit: str) -> tuple[str, Any]:
    """The same condition said in whole numbers where the feature only has whole values:
    ``> 0`` on a count is ``>= 1``, ``<= 35 595.7`` on tiyn is ``<= 35 595``."""
    number = _decimal(value)
    if not isinstance(number, Decimal) or unit not in (*INTEGER_UNITS, "tiyn"):
        return op, value
    whole = number == number.to_integral_value()
    floor = int(number.to_integral_value(rounding="ROUND_FLOOR"))
    ceiling = int(number.to_integral_value(rounding="ROUND_CEILING"))
    if unit in INTEGER_UNITS and op == "<":
        return "<=", floor - 1 if whole else floor
    if unit in INTEGER_UNITS and op == ">":
        return ">=", ceiling + 1 if whole else ceiling
    if op in ("<=", "<") and not whole:
        return "<=", floor
    if op in (">=", ">") and not whole:
        return ">=", ceiling
    return op, int(number) if whole else value


def _bound_text(op: str, value: Any, feature: Feature, lang: str) -> str:
    op, value = _integer_bound(op, value, feature.unit)
    return translate(BOUND_KEYS[op], lang, value=format_value(value, feature.unit, lang))


def _compare(op: str, left: Any, right: Any) -> bool | None:
    """SQL's comparison: NULL on either side is unknown, and so is text against a number."""
    left, right = _decimal(left), _decimal(right)
    if left is None or right is None or isinstance(left, str) != isinstance(right, str):
        return None
    return bool(COMPARE[op](left, right))


class _Unknowable(Exception):
    """A conjunct uses something an explanation does not have (a parameter, a function)."""


def _evaluate(node: exp.Expression, env: Mapping[str, Any]) -> Any:
    """SQL three-valued evaluation of a small subset: columns, numbers, + - *, comparisons,
    AND, OR, NOT. Enough to tell whether the other parts of a failed criterion hold; anything
    else raises ``_Unknowable`` and the explanation offers no counterfactual."""
    if isinstance(node, exp.Paren):
        return _evaluate(node.this, env)
    if isinstance(node, exp.Column) and not node.table:
        if node.name not in env:
            raise _Unknowable(node.name)
        return _decimal(env[node.name])
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else Decimal(node.this)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Not):
        inner = _evaluate(node.this, env)
        return None if inner is None else not inner
    if isinstance(node, exp.And | exp.Or):
        left, right = _evaluate(node.this, env), _evaluate(node.expression, env)
        decisive = isinstance(node, exp.Or)  # TRUE decides an OR, FALSE an AND
        if decisive in (left, right):
            return decisive
        return None if None in (left, right) else not decisive
    if isinstance(node, exp.Add | exp.Sub | exp.Mul):
        left, right = _evaluate(node.this, env), _evaluate(node.expression, env)
        if left is None or right is None:
            return None
        if isinstance(node, exp.Add):
            return left + right
        return left - right if isinstance(node, exp.Sub) else left * right
    op = rules_engine.COMPARISONS.get(type(node))
    if op is not None:
        return _compare(op, _evaluate(node.this, env), _evaluate(node.expression, env))
    raise _Unknowable(type(node).__name__)


def _inline_name(feature: Feature, lang: str) -> str:
    """A feature's name inside a sentence: lower-cased in English ("per-capita income"),
    quoted in Russian and Kazakh, where case endings would otherwise have to agree."""
    name = feature.describe(lang)
    if lang == "en" and name[1:2].islower():
        name = name[:1].lower() + name[1:]
    return translate("rules.quote", lang, text=name)


# --- the explanation -------------------------------------------------------------------------


class _Context:
    """What every part of one explanation reads: the detail, the catalogue, the language."""

    def __init__(
        self,
        decision: Mapping[str, Any],
        program: Program,
        catalogue: Catalogue,
        lang: str,
        checks: Mapping[str, Check],
    ) -> None:
        self.detail: Mapping[str, Any] = decision["detail"]
        self.program = program
        self.catalogue = catalogue
        self.lang = lang
        self.checks = checks
        self.values: Mapping[str, Any] = self.detail.get("values") or {}
        self.holds: dict[str, list[str]] = {
            h["f"]: [str(w) for w in h["why"]] for h in self.detail.get("held") or []
        }
        self.results: list[bool | None] = list(self.detail["criteria"])
        # As the rules saw them: a held value is NULL (unknown).
        self.effective = {
            name: None if name in self.holds else value for name, value in self.values.items()
        }
        self.effective.update(self.detail.get("derived") or {})
        # The detail lists thresholds in the engine's order (its t_i is found[i]). A threshold's
        # feature-free side is a node of the program's own tree whose parent is the conjunct,
        # so a conjunct, by identity, finds its threshold and the value it had here. The
        # program must be the version that decided, or the two lists do not zip.
        found = rules_engine.thresholds(program, catalogue)
        values = [row[3] for row in self.detail.get("thresholds") or []]
        self.thresholds: dict[int, tuple[rules_engine.Threshold, Any]] = {
            id(t.tree.parent): (t, value) for t, value in zip(found, values, strict=True)
        }

    def features_of(self, tree: exp.Expression) -> list[str]:
        """The catalogue features an expression reads, in the order it names them."""
        names = sqlcheck.columns_of(tree) & set(self.catalogue.features)
        ordered = (c.name for c in tree.find_all(exp.Column, bfs=False) if c.name in names)
        return list(dict.fromkeys(ordered))

    def value_entry(self, name: str) -> dict[str, Any]:
        feature = self.catalogue.features[name]
        value = self.values.get(name)
        return {
            "feature": name,
            "name": feature.describe(self.lang),
            "value": value,
            "value_text": format_value(value, feature.unit, self.lang),
            "held": name in self.holds,
        }


def explain(
    decision: Mapping[str, Any],
    program: Program,
    catalogue: Catalogue,
    lang: str,
    checks: Mapping[str, Check] | None = None,
) -> dict[str, Any]:
    """The decision in words: every criterion with the values it compared, what is unknown and
    why, and a one- or two-sentence summary. ``decision`` has program_id, status, amount_tiyn
    and the parsed ``detail``; ``checks`` names the data-quality checks (default: the
    published ones). The result is JSON-able."""
    lang = normalise_language(lang)
    context = _Context(
        decision, program, catalogue, lang, load_checks() if checks is None else checks
    )
    status = str(decision["status"])
    criteria = [_criterion(context, i, c) for i, c in enumerate(program.criteria)]
    unknown = _unknown(context, status)
    amount = decision.get("amount_tiyn")
    explanation = {
        "lang": lang,
        "program": {"id": program.id, "name": program.names.get(lang) or program.names["en"]},
        "status": status,
        "status_text": translate(STATUS_KEYS[status], lang),
        "amount_tiyn": amount,
        "amount_text": None if amount is None else format_tenge(_as_int(amount), lang),
        "criteria": criteria,
        "unknown": unknown,
        "legal_basis": {k: str(v) for k, v in program.legal_basis.items()},
    }
    explanation["summary"] = _summary(context, explanation)
    return explanation


def _criterion(context: _Context, index: int, criterion: Criterion) -> dict[str, Any]:
    lang = context.lang
    result = context.results[index]
    thresholds = []
    for conjunct in rules_engine.conjuncts(criterion.tree):
        if id(conjunct) not in context.thresholds:
            continue
        found, value = context.thresholds[id(conjunct)]
        feature = context.catalogue.features[found.feature]
        thresholds.append(
            {
                "feature": found.feature,
                "op": found.op,
                "value": value,
                "value_text": format_value(value, feature.unit, lang),
                "required": _bound_text(found.op, value, feature, lang),
            }
        )
    return {
        "id": criterion.id,
        "text": criterion.text.get(lang) or criterion.text["en"],
        "result": RESULTS[result],
        "values": [context.value_entry(f) for f in context.features_of(criterion.tree)],
        "thresholds": thresholds,
        "counterfactual": _counterfactual(context, index, criterion) if result is False else None,
    }


def _counterfactual(context: _Context, index: int, criterion: Criterion) -> str | None:
    """What would meet a failed criterion, when the only failing parts are thresholds and
    every other part is known to hold; None when the explanation cannot be sure."""
    failing: list[tuple[str, str, Any]] = []
    for conjunct in rules_engine.conjuncts(criterion.tree):
        if id(conjunct) in context.thresholds:
            found, value = context.thresholds[id(conjunct)]
            holds = _compare(found.op, context.effective.get(found.feature), value)
            if holds is False:
                failing.append((found.feature, found.op, value))
                continue
        else:
            try:
                holds = _evaluate(conjunct, context.effective)
            except _Unknowable:
                return None
        if holds is not True:
            return None
    if not failing:
        return None
    lang = context.lang
    clauses = []
    for name, op, value in failing:
        feature = context.catalogue.features[name]
        bound = _bound_text(op, value, feature, lang)
        clauses.append(
            translate("rules.cf.clause", lang, name=_inline_name(feature, lang), bound=bound)
        )
    condition = f" {translate('rules.cf.and', lang)} ".join(clauses)
    others_met = all(r is True for i, r in enumerate(context.results) if i != index)
    key = "rules.cf.eligible_if" if others_met else "rules.cf.criterion_if"
    return translate(key, lang, condition=condition)


def _unknown(context: _Context, status: str) -> list[dict[str, Any]]:
    """Every feature that an unknown criterion reads and the rules could not use (missing or
    held); with a needs_review decision whose amount is unknown, the amount's features too."""
    names: list[str] = []
    for criterion, result in zip(context.program.criteria, context.results, strict=True):
        if result is None:
            names.extend(context.features_of(criterion.tree))
    if status == "needs_review" and context.detail.get("amount") is None:
        names.extend(context.features_of(sqlcheck.parse(context.program.amount_sql)))
    out = []
    for name in dict.fromkeys(names):
        if name in context.holds or context.values.get(name) is None:
            out.append(_unknown_entry(context, name))
    return out


def _unknown_entry(context: _Context, name: str) -> dict[str, Any]:
    lang = context.lang
    entry = context.value_entry(name)
    feature = context.catalogue.features[name]
    why = context.holds.get(name, [])
    contests = [w.split(":", 1)[1] for w in why if w.startswith("contested:")]
    check_ids = [w for w in why if not w.startswith("contested:")]
    checks = [
        {"id": c, "name": context.checks[c].describe(lang) if c in context.checks else c}
        for c in check_ids
    ]
    sources = registry_catalogue.sources()
    registries = [
        {"code": code, "name": sources[code].names[lang] if code in sources else code}
        for code in feature.sources
    ]
    reason = "contested" if contests else "data_quality" if check_ids else "missing"
    known = entry["value"] is not None
    key = {
        ("missing", False): "rules.unknown.missing",
        ("data_quality", False): "rules.unknown.data_quality",
        ("data_quality", True): "rules.unknown.data_quality_value",
        ("contested", False): "rules.unknown.contested",
        ("contested", True): "rules.unknown.contested_value",
    }[(reason, known)]
    quoted = translate("rules.quote", lang, text=entry["name"])
    separator = translate("rules.list_separator", lang)
    text = translate(
        key,
        lang,
        name=quoted,
        value=entry["value_text"],
        checks=separator.join(c["name"] for c in checks),
    )
    source_key = (
        "rules.unknown.source.one" if len(registries) == 1 else "rules.unknown.source.other"
    )
    text += " " + translate(source_key, lang, registries="; ".join(r["name"] for r in registries))
    return {
        **entry,
        "registries": registries,
        "reason": reason,
        "checks": checks,
        "contests": contests,
        "text": text,
    }


def _summary(context: _Context, explanation: Mapping[str, Any]) -> str:
    lang = context.lang
    status = explanation["status"]
    separator = translate("rules.list_separator", lang)
    if status == "eligible":
        monthly = context.program.payment.get("frequency") == "monthly"
        key = "rules.summary.eligible_monthly" if monthly else "rules.summary.eligible"
        return translate(key, lang, amount=explanation["amount_text"])
    if status == "ineligible":
        failed = [c for c in explanation["criteria"] if c["result"] == "not_met"]
        text = translate(
            "rules.summary.ineligible", lang, criteria=separator.join(c["text"] for c in failed)
        )
        hints = [c["counterfactual"] for c in failed if c["counterfactual"]]
        return f"{text} {hints[0]}" if len(failed) == 1 and hints else text
    names = [translate("rules.quote", lang, text=u["name"]) for u in explanation["unknown"]]
    return translate("rules.summary.needs_review", lang, names=separator.join(names) or "—")


# --- plain text ------------------------------------------------------------------------------


def render_text(explanation: Mapping[str, Any]) -> str:
    """The explanation as plain text for the terminal (``qamqor explain``)."""
    lang = explanation["lang"]
    lines = [
        f"{explanation['program']['name']}: {explanation['status_text']}",
        explanation["summary"],
        "",
        translate("rules.heading.criteria", lang),
    ]
    for criterion in explanation["criteria"]:
        lines.append(f"  {MARKS[criterion['result']]} {criterion['text']}")
        required = {t["feature"]: t["required"] for t in criterion["thresholds"]}
        for value in criterion["values"]:
            shown = value["value_text"]
            if value["held"]:
                shown = translate("rules.value.held", lang, value=shown)
            line = f"      {value['name']}: {shown}"
            if value["feature"] in required:
                heading = translate("rules.heading.required", lang)
                line += f" ({heading}: {required[value['feature']]})"
            lines.append(line)
        if criterion["counterfactual"]:
            lines.append(f"      → {criterion['counterfactual']}")
    if explanation["unknown"]:
        lines += ["", translate("rules.heading.unknown", lang)]
        lines += [f"  ? {u['text']}" for u in explanation["unknown"]]
    basis = explanation["legal_basis"]
    parts = [basis[k] for k in ("document", "article", "date") if basis.get(k)]
    lines += ["", f"{translate('rules.heading.legal_basis', lang)}: {', '.join(parts)}"]
    return "\n".join(lines)
