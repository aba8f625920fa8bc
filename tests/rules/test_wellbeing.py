"""Well-being levels: the published file checks, a broken one says where, households of every
level through the engine with hand-computed scores, unknowns, explanations."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from decimal import Decimal
from importlib import resources
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qamqor.kit.duck import compute_engine, lock_down
from qamqor.profiles.catalogue import load_catalogue
from qamqor.rules import engine as rules_engine
from qamqor.rules.population import create_input, input_columns
from qamqor.rules.spec import SpecError, load_parameters, load_programs
from qamqor.rules.wellbeing import (
    LEVELS,
    WellbeingBound,
    bind_wellbeing,
    explain_wellbeing,
    load_wellbeing,
    parse_wellbeing,
    rebind_wellbeing,
)

DAY = dt.date(2026, 10, 1)
# 35 % of this median is 35,000 tenge, below 70 % of the 2026 subsistence minimum (50,851 x 0.7 =
# 35,595.70 -> 35,596 tenge): the poverty line is 3,559,600 tiyn.
FIGURES = {"median_per_capita_income_tiyn": 10_000_000}
POVERTY_LINE_TIYN = 3_559_600
ORIGIN = "programs/wellbeing/levels.yaml"
TEXT = resources.files("qamqor").joinpath("programs", "wellbeing", "levels.yaml").read_text("utf-8")


def make_household(household_id: str, **changes: Any) -> dict[str, Any]:
    """A household of two working parents and a schoolchild, deprived in nothing, changed by
    ``changes`` (``None`` leaves a feature unknown; ``holds`` names held features)."""
    holds = changes.pop("holds", {})
    features: dict[str, Any] = {
        "region_code": "750000000",
        "members": 3,
        "children_under_18": 1,
        "children_7_17": 1,
        "pensioners": 0,
        "able_bodied_adults": 2,
        "employed_members": 2,
        "per_capita_income_tiyn": 20_000_000,
        "income_quarter_tiyn": 180_000_000,
        "dwellings": 1,
        "dwelling_area_per_person_m2": 25.0,
        "non_mortgage_loans": 0,
        "non_mortgage_debt_tiyn": 0,
        "disabled_group_1": 0,
        "disabled_group_2": 0,
        "disabled_children": 0,
    }
    features.update(changes)
    return {"household_id": household_id, "features": features, "holds": holds}


def bound_levels() -> WellbeingBound:
    return bind_wellbeing(load_wellbeing(), load_parameters(), DAY, FIGURES)


def evaluate(
    rows: Sequence[dict[str, Any]],
    bounds: Sequence[rules_engine.Evaluable] | None = None,
    detail: bool = True,
) -> list[dict[str, Any]]:
    """The engine over ``rows``; ``profile_input`` built as ``service.decide_rows`` builds it."""
    catalogue = load_catalogue()
    bounds = list(bounds) if bounds is not None else [bound_levels()]
    wanted = {"region_code", "members", "per_capita_income_tiyn"}
    for bound in bounds:
        wanted |= set(bound.features(catalogue))
    features = [f for f in catalogue.features if f in wanted]
    with compute_engine("wellbeing-test") as con:
        create_input(con, catalogue, features)
        columns = list(input_columns(catalogue, features))
        table = pa.table(
            {
                "household_id": [r["household_id"] for r in rows],
                "profile_version_id": [0 for _ in rows],
                "as_of": [DAY for _ in rows],
                "holds": [json.dumps(r["holds"], sort_keys=True) for r in rows],
                "held": [sorted(r["holds"]) for r in rows],
                **{f: [r["features"].get(f) for r in rows] for f in features},
            }
        )
        con.register("incoming", table)
        con.execute(f"INSERT INTO profile_input SELECT {', '.join(columns)} FROM incoming")
        con.unregister("incoming")
        lock_down(con)
        rules_engine.evaluate(con, bounds, catalogue, detail=detail)
        names = rules_engine.OUTPUT_COLUMNS if detail else rules_engine.LEAN_COLUMNS
        cursor = con.execute(
            f"SELECT {', '.join(names)} FROM decision_out ORDER BY household_id, program_id"
        )
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def parsed(detail: str) -> dict[str, Any]:
    return dict(json.loads(detail, parse_float=Decimal))


def line_of(text: str, needle: str) -> int:
    return text.splitlines().index(needle) + 1


# --- the file ------------------------------------------------------------------------------------


def test_the_published_levels_check_and_their_weights_sum_to_one() -> None:
    spec = load_wellbeing()
    assert spec.id == "wellbeing"
    assert [d.id for d in spec.dimensions] == [
        "economic",
        "social",
        "housing",
        "health",
        "education",
    ]
    assert [lv.id for lv in spec.levels] == list(LEVELS)
    assert spec.levels[3].names["ru"] == "Кризисный"
    bound = bound_levels()
    assert sum(bound.weight(i) for i in spec.indicators) == Decimal(1)
    # every dimension weighs 1/5, as Alkire and Foster's nested weights do
    for dimension in spec.dimensions:
        weights = [bound.weight(i) for i in spec.indicators if i.dimension == dimension.id]
        assert sum(weights) == Decimal("0.2"), dimension.id
    assert [(lv, str(v)) for lv, v in bound.cutoffs()] == [
        ("E", "0.5"),
        ("D", "0.34"),
        ("C", "0.2"),
        ("B", "0.1"),
    ]
    assert bound.values["median_per_capita_income_tiyn"] == "10000000"


def test_the_version_names_the_text_and_the_values() -> None:
    bound = bound_levels()
    assert rebind_wellbeing(bound.spec, DAY, dict(bound.values)).version == bound.version
    other = bind_wellbeing(bound.spec, load_parameters(), DAY, {"median_per_capita_income_tiyn": 1})
    assert other.version != bound.version
    with pytest.raises(ValueError, match="median_per_capita_income_tiyn"):
        bind_wellbeing(bound.spec, load_parameters(), DAY, {})


@pytest.mark.parametrize(
    ("old", "new", "line_of_needle", "message"),
    [
        (
            '{from: 2023-07-01, value: 0.05, source: "Qamqor, after Alkire & Foster (2011): a '
            "quarter of the economic dimension's 1/5; confirm with the Ministry\"}",
            '{from: 2023-07-01, value: 0.05, source: "x"}\n      - {from: 2026-01-01, value: 0, '
            'source: "y"}',
            "  weight_income_poverty:",
            "parameters: the weights sum to 0.95 on 2026-01-01, not 1",
        ),
        (
            "deprived: dwellings = 0",
            "deprived: no_such_feature = 0",
            "      - id: no_dwelling",
            "indicator no_dwelling: unknown column or parameter 'no_such_feature'",
        ),
        (
            "deprived: dwellings = 0",
            "deprived: dwellings + 1",
            "      - id: no_dwelling",
            "indicator no_dwelling: a criterion must be a condition",
        ),
        (
            "weight: weight_no_dwelling",
            "weight: mrp_tiyn",
            "      - id: no_dwelling",
            "indicator no_dwelling: weight 'mrp_tiyn' is not a parameter of this file",
        ),
        (
            "value: 0.34,",
            "value: 0.2,",
            "  weight_income_poverty:",
            "parameters: the level cut-offs (0.1, 0.2, 0.2, 0.5) on 2023-07-01 must rise",
        ),
        (
            'en: "Income at or below the poverty line"}',
            "}",
            "      - id: income_poverty",
            "indicator income_poverty: names need ru, kk and en",
        ),
    ],
)
def test_a_broken_file_says_file_line_indicator_and_why(
    old: str, new: str, line_of_needle: str, message: str
) -> None:
    assert old in TEXT
    broken = TEXT.replace(old, new, 1)
    with pytest.raises(SpecError) as refused:
        parse_wellbeing(broken, load_parameters(), ORIGIN)
    assert f"{ORIGIN}:{line_of(broken, line_of_needle)}: {message}" in str(refused.value)


def test_weights_that_do_not_sum_to_one_are_refused_from_the_start() -> None:
    broken = TEXT.replace("value: 0.20, source", "value: 0.25, source", 1)
    with pytest.raises(SpecError, match=r"the weights sum to 1.05 on 2023-07-01, not 1"):
        parse_wellbeing(broken, load_parameters(), ORIGIN)


# --- households of every level -------------------------------------------------------------------

POOR = {"per_capita_income_tiyn": 3_000_000, "income_quarter_tiyn": 27_000_000}
LONE_PENSIONER = {
    "members": 1,
    "children_under_18": 0,
    "children_7_17": 0,
    "pensioners": 1,
    "able_bodied_adults": 0,
    "employed_members": 0,
}
# (household, changes, level, score, the indicators deprived)
HOUSEHOLDS: list[tuple[str, dict[str, Any], str, str, set[str]]] = [
    ("a0", {}, "A", "0", set()),
    # a consumer loan of 7 months' income: debt weighs 0.05, under B's 0.1
    (
        "a1",
        {"non_mortgage_loans": 1, "non_mortgage_debt_tiyn": 420_000_000},
        "A",
        "0.05",
        {"debt_burden"},
    ),
    ("b0", LONE_PENSIONER, "B", "0.1", {"lone_pensioner"}),
    # a pensioner alone with a group 2 disability: 0.1 + 0.1 reaches C's 0.2
    (
        "c0",
        {**LONE_PENSIONER, "disabled_group_2": 1},
        "C",
        "0.2",
        {"lone_pensioner", "severe_disability"},
    ),
    # income at the poverty line with a schoolchild: 0.1 + 0.2
    (
        "c1",
        {"per_capita_income_tiyn": POVERTY_LINE_TIYN},
        "C",
        "0.3",
        {"income_poverty", "school_children_poor"},
    ),
    # ... and no one working although two could: + 0.05 = 0.35, over AF's k = 1/3
    (
        "d0",
        {**POOR, "employed_members": 0},
        "D",
        "0.35",
        {"income_poverty", "no_earner", "school_children_poor"},
    ),
    # ... and no dwelling and a disabled child: + 0.1 + 0.1 = 0.55
    (
        "e0",
        {
            **POOR,
            "employed_members": 0,
            "dwellings": 0,
            "dwelling_area_per_person_m2": 0.0,
            "disabled_children": 1,
        },
        "E",
        "0.55",
        {"income_poverty", "no_earner", "no_dwelling", "disabled_child", "school_children_poor"},
    ),
]


def test_households_of_every_level_with_their_scores() -> None:
    spec = load_wellbeing()
    rows = evaluate([make_household(h, **changes) for h, changes, *_ in HOUSEHOLDS])
    assert [r["household_id"] for r in rows] == [h for h, *_ in HOUSEHOLDS]
    for row, (household, _, level, score, deprived) in zip(rows, HOUSEHOLDS, strict=True):
        detail = parsed(row["detail"])
        assert row["status"] == level, household
        assert detail["score_min"] == detail["score_max"] == Decimal(score), household
        flagged = {i.id for i, v in zip(spec.indicators, detail["indicators"], strict=True) if v}
        assert flagged == deprived, household
        assert None not in detail["indicators"]
        assert row["program_id"] == "wellbeing" and row["amount_tiyn"] is None
        assert row["program_version"] == bound_levels().version
        assert detail["derived"] == {"poverty_line_tiyn": POVERTY_LINE_TIYN}
        expected = hashlib.sha256(f"{level}||{row['detail']}".encode()).hexdigest()
        assert row["content_sha256"] == expected


def test_one_tiyn_above_the_poverty_line_is_not_poor() -> None:
    [row] = evaluate([make_household("x", per_capita_income_tiyn=POVERTY_LINE_TIYN + 1)])
    assert row["status"] == "A"


# --- unknowns ------------------------------------------------------------------------------------

CONTESTED = {"per_capita_income_tiyn": ["contested:7"]}


def test_an_unknown_that_could_change_the_level_needs_review() -> None:
    # the income is held: poverty and the schoolchild indicator are unknown, 0 .. 0.3 spans A-C
    [row] = evaluate([make_household("r", holds=CONTESTED, **POOR)])
    detail = parsed(row["detail"])
    assert row["status"] == "needs_review"
    assert (detail["score_min"], detail["score_max"]) == (Decimal("0"), Decimal("0.3"))
    assert detail["indicators"][0] is None and detail["indicators"][-1] is None
    # the held value stays in the explanation, with the reason it was not used
    assert detail["values"]["per_capita_income_tiyn"] == 3_000_000
    assert detail["held"] == [{"f": "per_capita_income_tiyn", "why": ["contested:7"]}]


def test_an_unknown_that_could_not_change_the_level_leaves_it_decided() -> None:
    # no dwelling and a group 1 disability: 0.2 (C); the unknown income adds at most 0.1 (no
    # children, so the school indicator is FALSE whatever the income): still C
    changes = {
        "children_under_18": 0,
        "children_7_17": 0,
        "members": 2,
        "dwellings": 0,
        "dwelling_area_per_person_m2": None,  # unknown, but FALSE AND unknown is FALSE
        "disabled_group_1": 1,
        "per_capita_income_tiyn": None,
    }
    [row] = evaluate([make_household("k", **changes)])
    detail = parsed(row["detail"])
    assert row["status"] == "C"
    assert (detail["score_min"], detail["score_max"]) == (Decimal("0.2"), Decimal("0.3"))
    spec = load_wellbeing()
    unknown = [
        i.id for i, v in zip(spec.indicators, detail["indicators"], strict=True) if v is None
    ]
    assert unknown == ["income_poverty"]


# --- explanations --------------------------------------------------------------------------------


def test_the_explanation_names_deprivations_and_what_would_lower_the_level() -> None:
    bound = bound_levels()
    [row] = evaluate([make_household("d0", **POOR, employed_members=0)])
    explained = explain_wellbeing(json.loads(row["detail"]), bound, "en")
    assert (explained["level"], explained["level_name"]) == ("D", "Crisis")
    assert explained["score_min"] == explained["score_max"] == "0.35"
    assert [(d["id"], d["dimension"], d["weight"]) for d in explained["deprived"]] == [
        ("income_poverty", "economic", "0.1"),
        ("no_earner", "economic", "0.05"),
        ("school_children_poor", "education", "0.2"),
    ]
    # without the poverty (0.25) or the joblessness (0.30) it would be C; without the
    # schoolchild indicator (0.15), B
    assert [(w["id"], w["level"]) for w in explained["would_be"]] == [
        ("income_poverty", "C"),
        ("no_earner", "C"),
        ("school_children_poor", "B"),
    ]
    assert explained["would_be"][2]["sentence"] == (
        "Would be level B (Satisfactory) if this were not the case: School-age children in poverty"
    )
    in_russian = explain_wellbeing(json.loads(row["detail"]), bound, "ru")
    assert in_russian["level_name"] == "Кризисный"
    assert in_russian["deprived"][0]["dimension_name"] == "Экономическое положение"
    in_kazakh = explain_wellbeing(json.loads(row["detail"]), bound, "kk")
    assert in_kazakh["level_name"] == "Дағдарыстық"


def test_a_deprivation_whose_removal_keeps_the_level_is_not_offered() -> None:
    bound = bound_levels()
    # lone pensioner with a group 2 disability and a loan of 7 months' income: 0.25 (C); without
    # the loan 0.2, still C
    changes = {
        **LONE_PENSIONER,
        "disabled_group_2": 1,
        "non_mortgage_loans": 1,
        "non_mortgage_debt_tiyn": 420_000_000,
    }
    [row] = evaluate([make_household("c", **changes)])
    explained = explain_wellbeing(json.loads(row["detail"]), bound, "en")
    assert explained["level"] == "C"
    assert [w["id"] for w in explained["would_be"]] == ["lone_pensioner", "severe_disability"]
    assert {w["level"] for w in explained["would_be"]} == {"B"}


def test_the_explanation_of_a_household_under_review_lists_the_unknowns() -> None:
    bound = bound_levels()
    [row] = evaluate([make_household("r", holds=CONTESTED, **POOR)])
    explained = explain_wellbeing(json.loads(row["detail"]), bound, "ru")
    assert explained["level"] is None
    assert explained["level_name"].startswith("Требует проверки")
    assert explained["possible_levels"] == ["A", "B", "C"]
    assert [u["id"] for u in explained["unknown"]] == ["income_poverty", "school_children_poor"]
    assert explained["would_be"] == []


# --- with the programs, and without detail -------------------------------------------------------


def test_the_levels_run_in_one_query_with_the_programs_and_lean() -> None:
    asp = rules_engine.bind(load_programs()["asp"], load_parameters(), DAY, FIGURES)
    households = [make_household(h, **changes) for h, changes, *_ in HOUSEHOLDS]
    rows = evaluate(households, [asp, bound_levels()])
    by_program = {(r["household_id"], r["program_id"]): r["status"] for r in rows}
    assert by_program[("d0", "wellbeing")] == "D"
    assert by_program[("a0", "asp")] == "ineligible"
    lean = evaluate(households, [bound_levels()], detail=False)
    assert [(r["household_id"], r["status"]) for r in lean] == [
        (h, level) for h, _, level, *_ in HOUSEHOLDS
    ]
    assert all(r["amount_tiyn"] is None for r in lean)


# --- invariant: the query's level is the level of its own scores ---------------------------------

counts = st.one_of(st.none(), st.integers(min_value=0, max_value=3))
random_household = st.fixed_dictionaries(
    {
        "members": st.one_of(st.none(), st.integers(min_value=1, max_value=6)),
        "children_under_18": counts,
        "children_7_17": counts,
        "pensioners": counts,
        "able_bodied_adults": counts,
        "employed_members": counts,
        "per_capita_income_tiyn": st.one_of(st.none(), st.integers(0, 10_000_000)),
        "income_quarter_tiyn": st.one_of(st.none(), st.integers(0, 100_000_000)),
        "dwellings": counts,
        "dwelling_area_per_person_m2": st.one_of(st.none(), st.sampled_from([0.0, 14.99, 15.0])),
        "non_mortgage_loans": counts,
        "non_mortgage_debt_tiyn": st.one_of(st.none(), st.integers(0, 500_000_000)),
        "disabled_group_1": counts,
        "disabled_group_2": counts,
        "disabled_children": counts,
    }
)


# the autouse settings fixture is per test, not per example: harmless here
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(random_household, min_size=1, max_size=20))
def test_the_level_is_the_level_of_the_scores(households: list[dict[str, Any]]) -> None:
    bound = bound_levels()
    rows = evaluate([make_household(f"h{n:02}", **h) for n, h in enumerate(households)])
    for row in rows:
        detail = parsed(row["detail"])
        explained = explain_wellbeing(json.loads(row["detail"]), bound, "en")
        assert Decimal(explained["score_min"]) == detail["score_min"]
        assert Decimal(explained["score_max"]) == detail["score_max"]
        assert detail["score_min"] <= detail["score_max"]
        low, high = bound.level_of(detail["score_min"]), bound.level_of(detail["score_max"])
        assert row["status"] == (low if low == high else "needs_review")
