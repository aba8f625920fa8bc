"""Program specs and parameters: the published ones check; a broken one says where and why."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from qamqor.cli import app
from qamqor.rules.spec import SpecError, load_parameters, load_programs, parse_program

GOOD = """\
id: test_program
names: {ru: а, kk: ә, en: a}
legal_basis: {document: Social Code, article: "1", date: 2023-04-20}
unit: household
effective: {from: 2023-07-01}
rounding: integer tiyn
criteria:
  - id: poor
    text: {ru: а, kk: ә, en: a}
    sql: per_capita_income_tiyn < subsistence_minimum_tiyn
amount:
  sql: mrp_tiyn * members
payment: {channel: wallet, purpose: food, frequency: monthly}
"""


def test_the_published_programs_and_parameters_check() -> None:
    programs = load_programs()
    assert {"asp", "asp_child_payment", "food_voucher", "large_family", "disabled_child"} <= set(
        programs
    )
    assert programs["food_voucher"].payment["channel"] == "wallet"
    parameters = load_parameters()
    # the published values, in tiyn, on the dates they came into force
    assert parameters["mrp_tiyn"].on(dt.date(2025, 6, 1)).value == 393_200
    assert parameters["mrp_tiyn"].on(dt.date(2026, 10, 1)).value == 432_500
    assert parameters["subsistence_minimum_tiyn"].on(dt.date(2026, 1, 1)).value == 5_085_100
    assert parameters["subsistence_minimum_tiyn"].on(dt.date(2025, 12, 31)).value == 4_622_800
    assert parameters["poverty_line_share"].on(dt.date(2026, 1, 1)).value == Decimal("0.70")
    with pytest.raises(SpecError, match="no value in force"):
        parameters["mrp_tiyn"].on(dt.date(2020, 1, 1))


def test_a_version_names_the_spec_and_the_parameter_values_it_used() -> None:
    parameters = load_parameters()
    asp = load_programs()["asp"]
    v2025 = asp.version(parameters, dt.date(2025, 10, 1))
    v2026 = asp.version(parameters, dt.date(2026, 10, 1))
    assert v2025 != v2026  # the subsistence minimum changed
    assert asp.version(parameters, dt.date(2026, 3, 1)) == v2026
    edited = parse_program(asp.text + "\n# a comment\n", parameters, "asp.yaml")
    assert edited.version(parameters, dt.date(2026, 10, 1)) != v2026


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "per_capita_income_tiyn < subsistence_minimum_tiyn",
            "no_such_feature > 0",
            "programs/x.yaml:8: criterion poor: unknown column or parameter 'no_such_feature'",
        ),
        (
            "per_capita_income_tiyn < subsistence_minimum_tiyn",
            "members + 1",
            "criterion poor: a criterion must be a condition",
        ),
        ("mrp_tiyn * members", "members > 2", "amount: the amount must be a number"),
        (
            "per_capita_income_tiyn < subsistence_minimum_tiyn",
            "members < (SELECT count(*) FROM read_csv('/etc/passwd'))",
            "is not allowed",
        ),
        ("mrp_tiyn * members", "sum(members)", "may not aggregate"),
        ("channel: wallet", "channel: cash", "payment channel must be bank or wallet"),
        ("per_capita_income_tiyn < subsistence_minimum_tiyn", "members <", "cannot parse"),
    ],
)
def test_a_broken_spec_says_file_line_criterion_and_why(old: str, new: str, message: str) -> None:
    assert old in GOOD
    with pytest.raises(SpecError) as refused:
        parse_program(GOOD.replace(old, new), load_parameters(), "programs/x.yaml")
    assert message in str(refused.value)


def test_the_good_example_checks() -> None:
    program = parse_program(GOOD, load_parameters(), "programs/x.yaml")
    assert [c.id for c in program.criteria] == ["poor"]
    assert program.parameters_used() >= {"mrp_tiyn", "subsistence_minimum_tiyn", "members"}


def test_rules_check_command() -> None:
    result = CliRunner().invoke(app, ["rules", "check", "--as-of", "2026-10-01"])
    assert result.exit_code == 0, result.output
    assert "5 programs check" in result.output and "4,325.00" in result.output
