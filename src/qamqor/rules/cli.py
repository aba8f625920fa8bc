"""``qamqor rules ...``: the published programs and their parameters."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

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


decisions_app = typer.Typer(
    help="Stored decisions: list, show, replay; values under appeal.", no_args_is_help=True
)


def _tenge(tiyn: int | None) -> str:
    if tiyn is None:
        return "—"
    whole, part = divmod(abs(int(tiyn)), 100)
    sign = "-" if int(tiyn) < 0 else ""
    return f"{sign}{whole:,}".replace(",", "\u2009") + (f".{part:02d}" if part else "") + " ₸"


def _json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def decide_command(
    program: Annotated[
        list[str] | None, typer.Option("--program", "-p", help="Only this program (repeatable).")
    ] = None,
    household: Annotated[
        list[str] | None,
        typer.Option("--household", help="Only this household (repeatable); default: all."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Decide every program for every household's current profile; store what changed."""
    from qamqor.kit.db import get_engine
    from qamqor.profiles.cli import _run_with_progress
    from qamqor.rules.service import decide

    report = _run_with_progress(
        lambda p: decide(get_engine(), program or None, household or None, p)
    )
    if as_json:
        _json(report.to_dict())
        return
    table = Table(
        title=f"decision run {report.run_id}: {report.households:,} households, "
        f"{report.written:,} decisions written ({report.seconds:.1f} s)"
    )
    for column in ("program", "eligible", "needs review", "ineligible", "monthly amount"):
        table.add_column(column, justify="left" if column == "program" else "right")
    for program_id, totals in report.totals.items():
        if program_id == "wellbeing":
            continue
        table.add_row(
            program_id,
            f"{totals.get('eligible', 0):,}",
            f"{totals.get('needs_review', 0):,}",
            f"{totals.get('ineligible', 0):,}",
            _tenge(totals.get("amount_tiyn")),
        )
    console.print(table)
    levels = report.totals.get("wellbeing")
    if levels:
        shown = ", ".join(f"{k} {levels.get(k, 0):,}" for k in ("A", "B", "C", "D", "E"))
        console.print(f"well-being levels: {shown}; needs review {levels['needs_review']:,}")


@decisions_app.command("list")
def decisions_list(
    household: Annotated[str | None, typer.Option(help="Only this household.")] = None,
    program: Annotated[str | None, typer.Option(help="Only this program.")] = None,
    status: Annotated[
        str | None, typer.Option(help="eligible, ineligible or needs_review.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Stored decisions, newest first."""
    from qamqor.kit.db import session_scope
    from qamqor.rules.service import list_decisions

    with session_scope() as session:
        rows = list_decisions(session, household, program, status, limit, offset)
        table = Table(title=f"{len(rows)} decisions (offset {offset})")
        for column in ("id", "household", "program", "as of", "status", "amount", "decided at"):
            table.add_column(column)
        for d in rows:
            table.add_row(
                str(d.id),
                d.household_id,
                d.program_id,
                d.as_of.isoformat(),
                d.status,
                _tenge(d.amount_tiyn),
                d.decided_at.isoformat(timespec="seconds"),
            )
    console.print(table)


@decisions_app.command("show")
def decisions_show(
    decision_id: Annotated[int, typer.Argument(help="The decision id.")],
    lang: Annotated[str, typer.Option(help="ru, kk or en.")] = "en",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One stored decision, explained."""
    from qamqor.kit.db import session_scope
    from qamqor.rules.service import stored_decision

    with session_scope() as session:
        decision = stored_decision(session, decision_id)
    _print_explained(decision, lang, as_json)


@decisions_app.command("replay")
def decisions_replay(
    decision_id: Annotated[int, typer.Argument(help="The decision id.")],
) -> None:
    """Recompute a stored decision from its profile version, program text and parameter values;
    exit 1 unless it matches byte for byte."""
    from qamqor.kit.db import get_engine
    from qamqor.rules.service import replay

    result = replay(get_engine(), decision_id)
    if result.matches:
        console.print(
            f"decision {decision_id}: replayed, identical "
            f"(sha256 {result.recomputed['content_sha256'][:16]}…)"
        )
        return
    err = Console(stderr=True)
    err.print(f"[bold red]decision {decision_id} does not replay identically[/]")
    for key in result.stored:
        if result.stored[key] != result.recomputed[key]:
            err.print(f"  {key}: stored {result.stored[key]!r}")
            err.print(f"  {key}: now    {result.recomputed[key]!r}")
    raise typer.Exit(code=1)


@decisions_app.command("contest")
def decisions_contest(
    household: Annotated[str, typer.Argument(help="The household.")],
    feature: Annotated[str, typer.Argument(help="The profile feature under appeal.")],
    reason: Annotated[str, typer.Option(help="Why the value is contested.")],
    opened_by: Annotated[str, typer.Option(help="Who records it.")] = "operator",
) -> None:
    """Put a profile value under appeal: rules treat it as unknown until it is resolved."""
    from qamqor.kit.db import session_scope
    from qamqor.rules.service import contest_value

    with session_scope() as session:
        row = contest_value(session, household, feature, reason, opened_by)
        console.print(f"contested value {row.id}: {household} {feature} is now held")


@decisions_app.command("resolve")
def decisions_resolve(
    contest_id: Annotated[int, typer.Argument(help="The contested value's id.")],
) -> None:
    """Resolve a contested value: rules use the profile's value again."""
    from qamqor.kit.db import session_scope
    from qamqor.rules.service import resolve_contest

    with session_scope() as session:
        row = resolve_contest(session, contest_id)
        console.print(f"contested value {row.id} resolved")


def explain_command(
    household: Annotated[str, typer.Argument(help="The household.")],
    program: Annotated[str, typer.Option("--program", "-p", help="The program.")],
    lang: Annotated[str, typer.Option(help="ru, kk or en.")] = "en",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Decide one program for one household now (the decision is stored) and explain it:
    every criterion with its values, what would change it, and what is unknown."""
    from qamqor.kit.db import get_engine, session_scope
    from qamqor.rules.service import decide, head_decision

    decide(get_engine(), [program], [household])
    with session_scope() as session:
        decision = head_decision(session, household, program)
    _print_explained(decision, lang, as_json)


def _print_explained(decision: dict[str, Any], lang: str, as_json: bool) -> None:
    from qamqor.kit.db import session_scope
    from qamqor.kit.i18n import normalise_language
    from qamqor.rules.explain import render_text
    from qamqor.rules.service import explain_decision
    from qamqor.rules.wellbeing import render_wellbeing_text

    with session_scope() as session:
        explanation = explain_decision(session, decision, lang)
    if as_json:
        _json(explanation)
    elif decision["program_id"] == "wellbeing":
        typer.echo(render_wellbeing_text(explanation, normalise_language(lang)))
    else:
        typer.echo(render_text(explanation))


def simulate_command(
    program: Annotated[str, typer.Argument(help="The program.")],
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="name=value or name@REGION=value; money in tenge, shares as decimals.",
        ),
    ] = None,
    changed: Annotated[
        int, typer.Option(help="Also list this many changed households (largest change first).")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The whole population under the changed values against today's; nothing is written."""
    from qamqor.kit.db import get_engine
    from qamqor.profiles.cli import _run_with_progress
    from qamqor.rules.simulate import simulate

    result = _run_with_progress(
        lambda p: simulate(get_engine(), program, sets or [], changed_limit=changed, progress=p)
    )
    if as_json:
        _json(result)
        return
    total = result["total"]
    changes = ", ".join(
        f"{c['name']}{'@' + c['region'] if c['region'] else ''}={c['value']}"
        for c in result["changes"]
    )
    table = Table(
        title=f"{program}: {changes or 'no change'} — {result['households']:,} households "
        f"({result['seconds']:.2f} s)"
    )
    for column in ("", "today", "changed", "difference"):
        table.add_column(column, justify="right")
    rows = [
        ("households covered", "households_before", "households_after", False),
        ("people covered", "people_before", "people_after", False),
        ("monthly cost", "monthly_before_tiyn", "monthly_after_tiyn", True),
        ("yearly cost", "yearly_before_tiyn", "yearly_after_tiyn", True),
        ("needs review", "needs_review_before", "needs_review_after", False),
    ]
    for label, before, after, money in rows:
        b, a = total[before], total[after]
        show = _tenge if money else (lambda v: f"{v:,}")
        table.add_row(label, show(b), show(a), show(a - b))
    console.print(table)
    console.print(
        f"gainers {total['gainers']:,} (+{_tenge(total['gained_tiyn'])} a month), "
        f"losers {total['losers']:,} (−{_tenge(total['lost_tiyn'])} a month)"
    )
    regions = Table(title="by region and urban/rural")
    for column in ("", "covered today", "covered changed", "monthly change", "gainers", "losers"):
        regions.add_column(column, justify="right")
    for group in result["by_region"] + result["by_settlement"]:
        regions.add_row(
            group["key"],
            f"{group['households_before']:,}",
            f"{group['households_after']:,}",
            _tenge(group["monthly_change_tiyn"]),
            f"{group['gainers']:,}",
            f"{group['losers']:,}",
        )
    console.print(regions)
    for item in result.get("changed_households", {}).get("items", []):
        console.print(
            f"  {item['household_id']} ({item['region_code']}): {item['status_before']} "
            f"{_tenge(item['before_tiyn'])} → {item['status_after']} {_tenge(item['after_tiyn'])}"
        )
