"""``qamqor rules ...``: the published programs and their parameters."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

rules_app = typer.Typer(help="Published program rules: specs and parameters.", no_args_is_help=True)
console = Console()


@rules_app.command("check")
def rules_check(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date for the parameter values (default: today).")
    ] = None,
) -> None:
    """Parse and check every program spec and the parameters (sqlglot); exit 1 on any error."""
    from qamqor.rules.spec import load_parameters, load_programs

    day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    parameters = load_parameters()
    programs = load_programs()
    table = Table(title=f"{len(programs)} programs check; parameters as of {day.isoformat()}")
    for column in ("program", "unit", "criteria", "payment", "version"):
        table.add_column(column)
    for program in programs.values():
        table.add_row(
            program.id,
            program.unit,
            str(len(program.criteria)),
            f"{program.payment['channel']} / {program.payment['purpose']}",
            program.version(parameters, day)[:16],
        )
    console.print(table)
    values = Table(title="parameters in force")
    for column in ("parameter", "value", "from", "source"):
        values.add_column(column)
    for parameter in parameters.values():
        value = parameter.on(day)
        shown = f"{value.value / 100:,.2f} ₸" if parameter.unit == "tenge" else str(value.value)
        values.add_row(parameter.name, shown, value.start.isoformat(), value.source)
    console.print(values)
