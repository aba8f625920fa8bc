"""A parameter with per-region values: each household's rules read its own region's value."""

from __future__ import annotations

import datetime as dt

from qamqor.rules.service import decide_rows
from qamqor.rules.spec import load_parameters, parse_parameters

REGIONAL = """
parameters:
  subsistence_minimum_tiyn:
    names: {ru: "ПМ", kk: "ЕТКД", en: "Subsistence minimum"}
    unit: tenge
    values:
      - from: 2026-01-01
        value: 50851
        source: "test: national value"
        by_region: {"47": 60000}
"""


def test_a_regional_value_applies_to_households_of_that_region_only() -> None:
    parameters = {**load_parameters(), **parse_parameters(REGIONAL, "test.yaml")}
    features = {
        "members": 2,
        "per_capita_income_tiyn": 4_000_000,
        "idle_able_bodied_adults": 0,
        "non_mortgage_loans": 0,
    }
    rows = [
        {"household_id": "astana", "features": {**features, "region_code": "71"}},
        {"household_id": "mangystau", "features": {**features, "region_code": "47"}},
    ]
    decided = decide_rows(
        rows,
        dt.date(2026, 10, 1),
        ["asp"],
        figures={"median_per_capita_income_tiyn": 8_000_000},
        parameters=parameters,
    )
    by_household = {d["household_id"]: d for d in decided}
    # national: 70 % x 50,851 = 35,595.70 -> 35,596 ₸ < 40,000 ₸: not poor
    assert by_household["astana"]["status"] == "ineligible"
    assert by_household["astana"]["detail"]["derived"]["poverty_line_tiyn"] == 3_559_600
    # Mangystau: 70 % x 60,000 = 42,000 ₸; (42,000 - 40,000) x 2 = 4,000 ₸
    assert by_household["mangystau"]["status"] == "eligible"
    assert by_household["mangystau"]["amount_tiyn"] == 400_000
    assert by_household["mangystau"]["detail"]["derived"]["poverty_line_tiyn"] == 4_200_000


def test_regional_values_are_part_of_the_program_version() -> None:
    from qamqor.rules.spec import load_programs

    asp = load_programs()["asp"]
    national = load_parameters()
    regional = {**national, **parse_parameters(REGIONAL, "test.yaml")}
    day = dt.date(2026, 10, 1)
    figures = {"median_per_capita_income_tiyn": 8_000_000}
    assert asp.version(national, day, figures) != asp.version(regional, day, figures)
    assert asp.values_used(regional, day, figures)["subsistence_minimum_tiyn"] == {
        "value": "5085100",
        "regions": {"47": "6000000"},
    }
