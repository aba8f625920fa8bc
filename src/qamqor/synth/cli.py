"""``qamqor synth``: write a synthetic population's registry extracts, truth and manifest."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from qamqor.synth import DEFECT_CLASSES, generate, parse_format_override
from qamqor.synth.writers import FormatSpec


def _parse_rates(items: list[str], no_defects: bool) -> dict[str, float]:
    rates: dict[str, float] = dict.fromkeys(DEFECT_CLASSES, 0.0) if no_defects else {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in DEFECT_CLASSES:
            raise typer.BadParameter(
                f"expected NAME=RATE with NAME one of {', '.join(DEFECT_CLASSES)}; got {item!r}",
                param_hint="--defect-rate",
            )
        try:
            rates[name] = float(value)
        except ValueError:
            raise typer.BadParameter(
                f"{value!r} is not a number", param_hint="--defect-rate"
            ) from None
    return rates


def synth(
    households: int = typer.Option(
        20_000, "--households", "-n", min=1, help="Households to generate (Kazakhstan: 6,200,000)."
    ),
    seed: int = typer.Option(
        1, "--seed", help="Random seed; the same seed gives byte-identical files."
    ),
    out: Path = typer.Option(
        Path("var/synth"), "--out", help="Output directory (extracts, truth/, manifest.json)."
    ),
    as_of: str = typer.Option(
        "2026-10-01",
        "--as-of",
        help="Extract date (YYYY-MM-DD); a fixed default keeps runs reproducible.",
    ),
    income_months: int = typer.Option(
        3, "--income-months", min=1, help="Monthly income rows for this many months before --as-of."
    ),
    defect_rate: list[str] = typer.Option(
        [], "--defect-rate", help="NAME=RATE, repeatable: share of candidates given that defect."
    ),
    no_defects: bool = typer.Option(
        False, "--no-defects", help="Inject no defects (clean extracts)."
    ),
    format: list[str] = typer.Option(
        [],
        "--format",
        help="SOURCE=FORMAT[:ENCODING[:DELIMITER[:DATES]]], e.g. income=csv:utf-8:;",
    ),
    chunk_households: int = typer.Option(
        20_000, "--chunk", min=1, help="Households per chunk; bounds memory."
    ),
) -> None:
    """Generate a synthetic national population and its registry extracts, with defects logged."""
    try:
        as_of_date = dt.date.fromisoformat(as_of)
    except ValueError:
        raise typer.BadParameter(
            f"{as_of!r} is not a YYYY-MM-DD date", param_hint="--as-of"
        ) from None
    formats: dict[str, FormatSpec] = {}
    for item in format:
        try:
            source, spec = parse_format_override(item)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--format") from None
        formats[source] = spec
    rates = _parse_rates(defect_rate, no_defects)
    console = Console()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("households", total=households)
        try:
            summary = generate(
                out,
                households,
                seed,
                as_of=as_of_date,
                income_months=income_months,
                defect_rates=rates,
                formats=formats,
                chunk_households=chunk_households,
                progress=lambda done: bar.update(task, completed=done),
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    table = Table(title=f"{summary.households:,} households, {summary.persons:,} people in {out}")
    table.add_column("source / defect")
    table.add_column("rows", justify="right")
    for source, rows in summary.rows.items():
        table.add_row(source, f"{rows:,}")
    table.add_section()
    for name, count in summary.defects.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    rate = summary.households / summary.seconds if summary.seconds else 0.0
    console.print(f"{summary.seconds:,.1f} s ({rate:,.0f} households/s)")
