"""Rule expressions are untrusted: the checker refuses a file read, and should one slip past it,
the locked DuckDB the rules run in refuses it too."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import duckdb
import pytest
from sqlglot import exp

from qamqor.kit.duck import compute_engine, lock_down
from qamqor.profiles.catalogue import load_catalogue
from qamqor.rules import engine as rules_engine
from qamqor.rules.population import create_input
from qamqor.rules.spec import SpecError, load_parameters, load_programs, parse_program


def test_the_checker_refuses_a_rule_that_reads_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n1\n")
    text = load_programs()["disabled_child"].text.replace(
        "sql: disabled_children > 0",
        f"sql: disabled_children > (SELECT count(*) FROM read_csv('{secret}'))",
    )
    where = r"disabled_child\.yaml:1[0-9]: criterion has_disabled_child"
    with pytest.raises(SpecError, match=where):
        parse_program(text, load_parameters(), "programs/disabled_child.yaml")


def test_the_locked_engine_refuses_it_even_past_the_checker(tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n1\n")
    program = load_programs()["disabled_child"]
    sneaky = exp.GT(
        this=exp.column("disabled_children"),
        expression=exp.Anonymous(this="read_csv", expressions=[exp.Literal.string(str(secret))]),
    )
    bad = dataclasses.replace(
        program, criteria=(dataclasses.replace(program.criteria[0], tree=sneaky),)
    )
    catalogue = load_catalogue()
    bound = rules_engine.bind(bad, load_parameters(), dt.date(2026, 10, 1))
    with compute_engine("safety") as con:
        create_input(con, catalogue, ["disabled_children", "region_code"])
        lock_down(con)
        with pytest.raises(duckdb.Error, match=r"(?i)disabled|permission"):
            rules_engine.evaluate(con, [bound], catalogue)
