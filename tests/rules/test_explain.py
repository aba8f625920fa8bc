"""Explanations of decisions: money and values in words, real decisions explained in ru/kk/en."""

from __future__ import annotations

import datetime as dt
import json
import re
import string
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st

from qamqor.kit.i18n import LANGUAGES
from qamqor.profiles.catalogue import load_catalogue
from qamqor.rules import service
from qamqor.rules.explain import KEYS, explain, format_tenge, format_value, render_text
from qamqor.rules.service import decide_rows
from qamqor.rules.spec import load_parameters, load_programs, parse_program

T = "\u2009"  # THIN SPACE: the digit group separator
DAY = dt.date(2026, 10, 1)
# 35 % of this median is 35 000 tenge, below 70 % of the subsistence minimum (35 596 tenge)
FIGURES = {"median_per_capita_income_tiyn": 10_000_000}
POVERTY_LINE = f"35{T}596 ₸"


def make_household(household_id: str, holds: dict[str, list[str]] | None = None, **changes: Any):
    """Four members, 20 000 tenge a month each, no able-bodied adult idle, no loans."""
    features = {
        "members": 4,
        "per_capita_income_tiyn": 2_000_000,
        "idle_able_bodied_adults": 0,
        "non_mortgage_loans": 0,
        "children_1_6": 1,
        "disabled_children": 0,
    }
    features.update(changes)
    return {
        "household_id": household_id,
        "features": {k: v for k, v in features.items() if v is not None},
        "holds": holds or {},
    }


@pytest.fixture(scope="module")
def decisions() -> dict[tuple[str, str], dict[str, Any]]:
    rows = [
        make_household("eligible"),
        make_household("poor_enough_not", per_capita_income_tiyn=4_000_000),
        make_household("two_fail", per_capita_income_tiyn=4_000_000, non_mortgage_loans=2),
        make_household(
            "idle_and_rich", per_capita_income_tiyn=4_000_000, idle_able_bodied_adults=1
        ),
        make_household(
            "rich_idle_unknown", per_capita_income_tiyn=4_000_000, idle_able_bodied_adults=None
        ),
        make_household("held", holds={"idle_able_bodied_adults": ["deceased_member"]}),
        make_household("missing_income", per_capita_income_tiyn=None),
        make_household(
            "contested", disabled_children=1, holds={"disabled_children": ["contested:17"]}
        ),
    ]
    programs = ["asp", "asp_child_payment", "disabled_child"]
    out = decide_rows(rows, DAY, programs=programs, figures=FIGURES)
    return {(d["household_id"], d["program_id"]): d for d in out}


def explained(decisions: dict, household: str, program: str, lang: str) -> dict[str, Any]:
    decision = decisions[(household, program)]
    return explain(decision, load_programs()[program], load_catalogue(), lang)


def criterion(explanation: dict[str, Any], criterion_id: str) -> dict[str, Any]:
    return next(c for c in explanation["criteria"] if c["id"] == criterion_id)


# --- money and values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tiyn", "lang", "text"),
    [
        (3_559_600, "ru", f"35{T}596 ₸"),
        (3_559_600, "en", f"35{T}596 ₸"),
        (3_559_570, "ru", f"35{T}595,70 ₸"),
        (3_559_570, "kk", f"35{T}595,70 ₸"),
        (3_559_570, "en", f"35{T}595.70 ₸"),
        (5, "ru", "0,05 ₸"),
        (0, "ru", "0 ₸"),
        (0, "en", "0 ₸"),
        (99_900, "en", "999 ₸"),
        (100_000, "en", f"1{T}000 ₸"),
        (-3_559_570, "ru", f"-35{T}595,70 ₸"),
        (-50, "en", "-0.50 ₸"),
        # beyond a float's 53 bits: exact only with integer arithmetic
        (123_456_789_012_345_678_89, "ru", f"123{T}456{T}789{T}012{T}345{T}678,89 ₸"),
        (3_559_570, "ru-RU", f"35{T}595,70 ₸"),
    ],
)
def test_format_tenge(tiyn: int, lang: str, text: str) -> None:
    assert format_tenge(tiyn, lang) == text


def test_format_tenge_groups_with_a_thin_space_only() -> None:
    shown = format_tenge(3_559_600, "ru")
    assert shown[2] == "\u2009"
    assert "\xa0" not in shown and "," not in format_tenge(123_456_789_00, "en")


def test_format_tenge_refuses_inexact_amounts() -> None:
    with pytest.raises(TypeError):
        format_tenge(35595.7, "ru")  # type: ignore[arg-type]


@given(st.integers(min_value=-(10**20), max_value=10**20), st.sampled_from(LANGUAGES))
def test_format_tenge_reads_back_to_the_same_tiyn(tiyn: int, lang: str) -> None:
    shown = format_tenge(tiyn, lang)
    assert shown.endswith(" ₸")
    number = shown.removesuffix(" ₸").replace(T, "").replace(",", ".")
    assert set(number) <= set(string.digits + ".-")
    assert Decimal(number) * 100 == tiyn


@pytest.mark.parametrize(
    ("value", "unit", "lang", "text"),
    [
        (1234, "count", "ru", f"1{T}234"),
        (0, "count", "en", "0"),
        (54.5, "m2", "ru", "54,5 м²"),
        (54.5, "m2", "en", "54.5 m²"),
        (1, "days", "ru", "1 день"),
        (3, "days", "ru", "3 дня"),
        (5, "days", "ru", "5 дней"),
        (21, "days", "ru", "21 день"),
        (1, "days", "en", "1 day"),
        (2, "days", "en", "2 days"),
        (2, "days", "kk", "2 күн"),
        (11, "years", "ru", "11 лет"),
        ("711210000", "code", "ru", "711210000"),
        (2_000_000, "tiyn", "en", f"20{T}000 ₸"),
        # a computed threshold between two tiyn is shown exactly, not rounded
        (3_500_000.5, "tiyn", "ru", f"35{T}000,005 ₸"),
        (None, "count", "ru", "нет данных"),
        (None, "tiyn", "en", "unknown"),
    ],
)
def test_format_value(value: Any, unit: str, lang: str, text: str) -> None:
    assert format_value(value, unit, lang) == text


# --- real decisions --------------------------------------------------------------------------


def test_an_eligible_asp_shows_its_monthly_amount(decisions: dict) -> None:
    en = explained(decisions, "eligible", "asp", "en")
    # (35 596 - 20 000) tenge x 4 members
    assert en["status"] == "eligible"
    assert en["amount_tiyn"] == 6_238_400
    assert en["amount_text"] == f"62{T}384 ₸"
    assert en["summary"] == f"Eligible: 62{T}384 ₸ a month."
    assert [c["result"] for c in en["criteria"]] == ["met", "met", "met"]
    assert en["unknown"] == []
    assert explained(decisions, "eligible", "asp", "ru")["summary"] == (
        f"Имеет право на выплату: 62{T}384 ₸ в месяц."
    )
    assert explained(decisions, "eligible", "asp", "kk")["summary"] == (
        f"Төлемге құқығы бар: айына 62{T}384 ₸."
    )
    # 1.5 MRP for the one child aged 1-6: 6 487.50 tenge, a fraction shown as such
    child = explained(decisions, "eligible", "asp_child_payment", "ru")
    assert child["amount_text"] == f"6{T}487,50 ₸"


def test_an_eligible_explanation_carries_values_thresholds_and_legal_basis(
    decisions: dict,
) -> None:
    en = explained(decisions, "eligible", "asp", "en")
    income = criterion(en, "income_below_poverty_line")
    assert income["values"] == [
        {
            "feature": "per_capita_income_tiyn",
            "name": "Per-capita monthly income (over the quarter)",
            "value": 2_000_000,
            "value_text": f"20{T}000 ₸",
            "held": False,
        }
    ]
    assert income["thresholds"] == [
        {
            "feature": "per_capita_income_tiyn",
            "op": "<=",
            "value": 3_559_600,
            "value_text": POVERTY_LINE,
            "required": f"at most {POVERTY_LINE}",
        }
    ]
    assert income["counterfactual"] is None
    work = criterion(en, "able_bodied_take_part_in_employment")
    assert [v["feature"] for v in work["values"]] == ["idle_able_bodied_adults"]
    assert en["legal_basis"]["date"] == "2023-04-20"
    assert en["program"] == {"id": "asp", "name": "Targeted social assistance (ASP)"}
    assert json.loads(json.dumps(en)) == en


@pytest.mark.parametrize(
    ("lang", "sentence"),
    [
        (
            "en",
            "Eligible if per-capita monthly income (over the quarter) were at most "
            f"{POVERTY_LINE}.",
        ),
        (
            "ru",
            "Право на выплату возникло бы, если бы показатель «Среднедушевой доход в месяц "
            f"(за квартал)» был не более {POVERTY_LINE}.",
        ),
        (
            "kk",
            "Егер «Жан басына шаққандағы айлық орташа табыс (тоқсан бойынша)» көрсеткіші "
            f"ең көбі {POVERTY_LINE} болса, төлемге құқық туындар еді.",
        ),
    ],
)
def test_an_asp_refused_by_income_says_what_income_would_qualify(
    decisions: dict, lang: str, sentence: str
) -> None:
    explanation = explained(decisions, "poor_enough_not", "asp", lang)
    assert explanation["status"] == "ineligible"
    assert explanation["amount_text"] is None
    income = criterion(explanation, "income_below_poverty_line")
    assert income["result"] == "not_met"
    assert income["counterfactual"] == sentence
    assert sentence in explanation["summary"]
    assert income["text"] in explanation["summary"]
    assert all(c["counterfactual"] is None for c in explanation["criteria"] if c is not income)


def test_with_two_criteria_failing_each_says_only_what_would_meet_it(decisions: dict) -> None:
    en = explained(decisions, "two_fail", "asp", "en")
    assert criterion(en, "income_below_poverty_line")["counterfactual"] == (
        "This criterion would be met if per-capita monthly income (over the quarter) were "
        f"at most {POVERTY_LINE}."
    )
    assert criterion(en, "no_non_mortgage_loans")["counterfactual"] == (
        "This criterion would be met if non-mortgage loans were equal to 0."
    )
    assert "Eligible if" not in en["summary"]
    # one criterion failing on two thresholds: both are named, and that would qualify
    family = criterion(explained(decisions, "two_fail", "asp_child_payment", "en"), "asp_family")
    assert family["counterfactual"] == (
        "Eligible if per-capita monthly income (over the quarter) were at most "
        f"{POVERTY_LINE} and non-mortgage loans were equal to 0."
    )


def test_the_idle_count_is_a_threshold_a_counterfactual_names(decisions: dict) -> None:
    # income and the one idle adult both fail "asp_family": meeting both would qualify
    family = criterion(
        explained(decisions, "idle_and_rich", "asp_child_payment", "en"), "asp_family"
    )
    assert family["result"] == "not_met"
    assert family["counterfactual"] == (
        f"Eligible if per-capita monthly income (over the quarter) were at most {POVERTY_LINE} "
        "and able-bodied adults neither working nor in employment measures were equal to 0."
    )
    # with the idle count unknown, income alone may not be enough: no "eligible if"
    family = criterion(
        explained(decisions, "rich_idle_unknown", "asp_child_payment", "en"), "asp_family"
    )
    assert family["result"] == "not_met"
    assert family["counterfactual"] is None


# The published programs compare each feature with a number; this one keeps the work condition
# as first written, features against features: a part with no threshold to name.
FEATURES_AGAINST_FEATURES = """
id: asp_family_old_work_condition
names: {ru: "Проверка", kk: "Тексеру", en: "Check"}
legal_basis: {document: "tests", article: "tests", date: 2023-04-20}
unit: household
effective: {from: 2023-07-01}
rounding: "integer tiyn"
derived:
  poverty_line_tiyn: >-
    greatest(round(poverty_line_share * subsistence_minimum_tiyn, -2),
             round(median_income_share * median_per_capita_income_tiyn, -2))
criteria:
  - id: asp_family
    text: {ru: "Семья получает АСП", kk: "Отбасы АӘК алады", en: "The family receives ASP"}
    sql: >-
      per_capita_income_tiyn <= poverty_line_tiyn
      and able_bodied_adults <= employed_members + registered_unemployed
amount:
  sql: mrp_tiyn * members
payment: {channel: wallet, purpose: food, frequency: monthly}
"""


def test_no_counterfactual_when_a_part_without_a_threshold_also_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    program = parse_program(FEATURES_AGAINST_FEATURES, load_parameters(), "tests")
    monkeypatch.setattr(service, "load_programs", lambda: {program.id: program})
    rich = {"members": 4, "per_capita_income_tiyn": 4_000_000, "non_mortgage_loans": 0}
    rows = [
        # three able-bodied adults, only two occupied: income alone would not meet it
        {
            "household_id": "idle",
            "features": rich
            | {"able_bodied_adults": 3, "employed_members": 1, "registered_unemployed": 1},
        },
        # both able-bodied adults occupied: income alone would
        {
            "household_id": "occupied",
            "features": rich
            | {"able_bodied_adults": 2, "employed_members": 1, "registered_unemployed": 1},
        },
    ]
    decided = {d["household_id"]: d for d in decide_rows(rows, DAY, figures=FIGURES)}
    catalogue = load_catalogue()
    idle = criterion(explain(decided["idle"], program, catalogue, "en"), "asp_family")
    assert (idle["result"], idle["counterfactual"]) == ("not_met", None)
    occupied = criterion(explain(decided["occupied"], program, catalogue, "en"), "asp_family")
    assert (occupied["result"], occupied["counterfactual"]) == (
        "not_met",
        f"Eligible if per-capita monthly income (over the quarter) were at most {POVERTY_LINE}.",
    )


def test_a_count_above_zero_reads_as_at_least_one(decisions: dict) -> None:
    disabled = explained(decisions, "eligible", "disabled_child", "en")
    assert disabled["status"] == "ineligible"
    (only,) = disabled["criteria"]
    assert only["thresholds"][0]["required"] == "at least 1"
    assert only["counterfactual"] == "Eligible if children with a disability were at least 1."


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_held_value_needs_review_and_names_the_disability_registry(
    decisions: dict, lang: str
) -> None:
    explanation = explained(decisions, "held", "asp", lang)
    assert explanation["status"] == "needs_review"
    assert criterion(explanation, "able_bodied_take_part_in_employment")["result"] == "unknown"
    (unknown,) = explanation["unknown"]
    assert unknown["feature"] == "idle_able_bodied_adults"
    assert unknown["reason"] == "data_quality"
    # held, yet known: shown as the registry has it, a held 0 not taken for a missing value
    assert (unknown["value"], unknown["value_text"]) == (0, "0")
    assert [r["code"] for r in unknown["registries"]] == [
        "household",
        "population",
        "employment",
        "disability",
    ]
    disability = unknown["registries"][3]["name"]
    assert disability in unknown["text"]
    assert unknown["checks"][0]["id"] == "deceased_member"
    assert unknown["checks"][0]["name"] in unknown["text"]
    assert unknown["name"] in explanation["summary"]
    not_a_refusal = {"en": "this is not a refusal", "ru": "это не отказ", "kk": "бас тарту емес"}
    assert not_a_refusal[lang] in explanation["summary"]


def test_held_and_missing_values_are_told_apart(decisions: dict) -> None:
    held = explained(decisions, "held", "asp", "en")["unknown"][0]
    assert held["text"].startswith(
        "Able-bodied adults neither working nor in employment measures: the registry says 0, "
        "but the record"
    )
    missing = explained(decisions, "missing_income", "asp", "ru")
    (income,) = missing["unknown"]
    assert income["reason"] == "missing"
    assert income["value"] is None and income["value_text"] == "нет данных"
    assert "income" in [r["code"] for r in income["registries"]]
    assert income["text"].startswith("«Среднедушевой доход в месяц (за квартал)»: данных пока нет")
    contested = explained(decisions, "contested", "disabled_child", "en")
    assert contested["status"] == "needs_review"
    (child,) = contested["unknown"]
    assert (child["reason"], child["contests"], child["checks"]) == ("contested", ["17"], [])
    assert [r["code"] for r in child["registries"]] == ["disability"]
    assert child["text"].startswith("Children with a disability: the registry says 1, but")


def test_render_text_marks_each_criterion(decisions: dict) -> None:
    refused = render_text(explained(decisions, "poor_enough_not", "asp", "en"))
    lines = refused.splitlines()
    assert lines[0] == "Targeted social assistance (ASP): Not eligible"
    assert "  ✗ Per-capita income for the quarter does not exceed the poverty line" in lines
    assert "  ✓ No loans other than a mortgage" in lines
    assert f"40{T}000 ₸ (required: at most {POVERTY_LINE})" in refused
    held = render_text(explained(decisions, "held", "asp", "ru"))
    assert "  ? Трудоспособные члены семьи работают или участвуют в мерах занятости" in held
    assert (
        "Трудоспособные, которые не работают и не участвуют в мерах занятости: 0 (на проверке)"
        in held
    )
    assert held.splitlines()[-1].startswith("Правовое основание: Social Code")


# --- the messages ----------------------------------------------------------------------------


def _messages(lang: str) -> dict[str, str]:
    path = resources.files("qamqor").joinpath(f"locale/{lang}/LC_MESSAGES/messages.po")
    with path.open("rb") as handle:
        return {str(m.id): str(m.string) for m in read_po(handle, locale=lang) if m.id}


def test_every_message_the_explanations_use_exists_in_every_language() -> None:
    source = resources.files("qamqor.rules").joinpath("explain.py").read_text("utf-8")
    literal_keys = set(re.findall(r"\"(rules\.[a-z0-9_.]+)\"", source))
    assert literal_keys <= set(KEYS), "a key used in explain.py is missing from KEYS"
    assert len(KEYS) == len(set(KEYS))
    catalogues = {lang: _messages(lang) for lang in LANGUAGES}
    fields = string.Formatter()
    for key in KEYS:
        placeholders = set()
        for lang, messages in catalogues.items():
            assert messages.get(key), f"{key} has no {lang} text"
            placeholders.add(frozenset(f for _, f, _, _ in fields.parse(messages[key]) if f))
        assert len(placeholders) == 1, f"{key}: the languages use different placeholders"
