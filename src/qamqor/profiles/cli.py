"""``qamqor profiles ...`` and ``qamqor quality ...``: build, show, check, run, report."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

profiles_app = typer.Typer(
    help="Household profiles: features over registry facts, versioned.", no_args_is_help=True
)
quality_app = typer.Typer(
    help="Data quality: cross-registry checks, issues, scorecards.", no_args_is_help=True
)
console = Console()

AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Reference date YYYY-MM-DD (default: today). Income is the quarter before it.",
    ),
]


def _as_of(value: str | None) -> dt.date:
    if value is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date YYYY-MM-DD", param_hint="--as-of"
        ) from None


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _run_with_progress(work: Any) -> Any:
    with _progress() as progress:
        task = progress.add_task("starting", total=None)

        def report(phase: str, done: int, total: int | None) -> None:
            progress.update(task, description=phase, completed=done, total=total)

        return work(report)


@profiles_app.command("check")
def profiles_check() -> None:
    """Parse and check every feature definition and quality check (sqlglot); exit 1 if any fails."""
    from qamqor.profiles.catalogue import load_catalogue
    from qamqor.quality.checks import load_checks

    catalogue = load_catalogue()
    checks = load_checks()
    console.print(
        f"{len(catalogue.features)} features and {len(checks)} quality checks check "
        f"(catalogue {catalogue.digest[:12]})"
    )


@profiles_app.command("build")
def profiles_build(
    as_of: AsOf = None,
    household: Annotated[
        list[str] | None, typer.Option("--household", help="Only these households (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Build the profile of every household (or some), with quality checks; version on change."""
    from qamqor.kit.db import get_engine
    from qamqor.profiles.builder import build

    date = _as_of(as_of)
    report = _run_with_progress(lambda p: build(get_engine(), date, household or None, p))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return
    console.print(
        f"build {report.build_id} as of {report.as_of}: {report.households:,} households, "
        f"{report.changed:,} new versions, {report.unchanged:,} unchanged; quality issues "
        f"opened {report.issues_opened:,}, closed {report.issues_closed:,} "
        f"({report.seconds:.1f} s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in report.phases.items())
        + ")"
    )


@profiles_app.command("show")
def profiles_show(
    household: Annotated[str, typer.Argument(help="Household id.")],
    version: Annotated[int | None, typer.Option(help="A version (default: current).")] = None,
    sources: Annotated[
        bool, typer.Option("--sources", help="List the registry facts behind every value.")
    ] = False,
    lang: Annotated[str, typer.Option(help="ru, kk or en.")] = "en",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """A household's profile: every feature, its quality flags, and optionally its sources."""
    from qamqor.kit.db import get_engine, session_scope
    from qamqor.profiles.catalogue import load_catalogue
    from qamqor.profiles.schemas import profile_document

    with session_scope() as session:
        document = profile_document(
            get_engine(), session, household, version, with_sources=sources or as_json, lang=lang
        )
    if as_json:
        print(json.dumps(document, indent=2, ensure_ascii=False, default=str))
        return
    catalogue = load_catalogue()
    table = Table(title=f"{household} — version {document['version']} as of {document['as_of']}")
    table.add_column("feature")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("quality")
    if sources:
        table.add_column("sources")
    for item in document["features"]:
        row = [
            catalogue.features[item["name"]].describe(lang),
            "—" if item["value"] is None else str(item["value"]),
            item["unit"],
            ", ".join(item["quality"]),
        ]
        if sources:
            row.append(
                "; ".join(
                    f"{s['source']} {s['record_id']} (batch {s['batch_id']})"
                    for s in item["sources"]
                )
            )
        table.add_row(*row)
    console.print(table)


@profiles_app.command("history")
def profiles_history(household: Annotated[str, typer.Argument(help="Household id.")]) -> None:
    """Every version of a household's profile and what changed in each."""
    from qamqor.kit.db import session_scope
    from qamqor.profiles.service import changes, history

    with session_scope() as session:
        versions = history(session, household)
        previous = None
        for v in versions:
            diff = changes(previous, v)
            shown = ", ".join(f"{k}: {a} → {b}" for k, (a, b) in list(diff.items())[:8])
            more = f" (+{len(diff) - 8} more)" if len(diff) > 8 else ""
            console.print(f"v{v.version} as of {v.as_of} (build {v.build_id}): {shown}{more}")
            previous = v


@quality_app.command("run")
def quality_run(
    as_of: AsOf = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run every data-quality check over the whole population; open and close issues."""
    from qamqor.kit.db import get_engine
    from qamqor.quality.tasks import run_quality

    date = _as_of(as_of)
    report = _run_with_progress(lambda p: run_quality(get_engine(), date, p))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"quality run {report['run_id']} as of {report['as_of']}")
    table.add_column("check")
    table.add_column("findings", justify="right")
    for check, count in report["findings"].items():
        table.add_row(check, f"{count:,}")
    console.print(table)
    console.print(
        f"issues opened {report['opened']:,}, refreshed {report['refreshed']:,}, "
        f"closed {report['closed']:,} ({report['seconds']:.1f} s)"
    )


@quality_app.command("report")
def quality_report(
    by: Annotated[str, typer.Option(help="source or region.")] = "source",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """The quality scorecard per source registry or per region."""
    from qamqor.kit.db import session_scope
    from qamqor.quality.service import scorecard

    if by not in ("source", "region"):
        raise typer.BadParameter("must be source or region", param_hint="--by")
    with session_scope() as session:
        rows = scorecard(session, by)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"data quality by {by}")
    for column in ("key", "validity", "completeness", "consistency", "timeliness"):
        table.add_column(column, justify="right" if column != "key" else "left")
    table.add_column("open: error / warning / info", justify="right")
    for row in rows:
        issues = row["open_issues"]
        table.add_row(
            row["key"],
            *(
                "—" if row[c] is None else f"{row[c]:.2%}"
                for c in ("validity", "completeness", "consistency", "timeliness")
            ),
            f"{issues['error']:,} / {issues['warning']:,} / {issues['info']:,}",
        )
    console.print(table)


@quality_app.command("issues")
def quality_issues(
    check: Annotated[str | None, typer.Option(help="Only this check.")] = None,
    owner: Annotated[str | None, typer.Option(help="Only issues this registry owns.")] = None,
    household: Annotated[str | None, typer.Option(help="Only issues about this household.")] = None,
    status: Annotated[str, typer.Option(help="open, closed or all.")] = "open",
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    lang: Annotated[str, typer.Option(help="ru, kk or en.")] = "en",
) -> None:
    """List data-quality issues."""
    from qamqor.kit.db import session_scope
    from qamqor.quality.checks import load_checks
    from qamqor.quality.service import list_issues

    checks = load_checks()
    with session_scope() as session:
        total, issues = list_issues(
            session,
            status=None if status == "all" else status,
            check_id=check,
            owner=owner,
            household_id=household,
            limit=limit,
        )
    table = Table(title=f"{total:,} {status} issues")
    for column in ("id", "check", "severity", "owner", "key", "detail", "status"):
        table.add_column(column)
    for i in issues:
        name = checks[i.check_id].describe(lang) if i.check_id in checks else i.check_id
        table.add_row(str(i.id), name, i.severity, i.owner, i.key, i.detail, i.status)
    console.print(table)


@quality_app.command("truth")
def quality_truth(
    truth: Annotated[
        str, typer.Argument(help="The synth output directory (holds truth/defects.parquet).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Recall and precision of ingest and quality checks against synth's injected defects."""
    from pathlib import Path

    from qamqor.kit.db import session_scope
    from qamqor.quality.truth import evaluate

    with session_scope() as session:
        result = evaluate(session, Path(truth))
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title="injected defects found (recall) and findings that are defects (precision)")
    for column in ("defect class", "caught by", "injected", "found", "recall"):
        table.add_column(
            column, justify="left" if column in ("defect class", "caught by") else "right"
        )
    for row in result["recall"]:
        table.add_row(
            row["defect"],
            row["caught_by"],
            f"{row['injected']:,}",
            f"{row['found']:,}",
            f"{row['recall']:.2%}" if row["recall"] is not None else "—",
        )
    console.print(table)
    table = Table()
    for column in ("check", "findings", "explained by a defect", "precision"):
        table.add_column(column, justify="left" if column == "check" else "right")
    for row in result["precision"]:
        table.add_row(
            row["check"],
            f"{row['findings']:,}",
            f"{row['true']:,}",
            f"{row['precision']:.2%}" if row["precision"] is not None else "—",
        )
    console.print(table)
    console.print(
        f"overall: recall {result['overall']['recall']:.2%}, "
        f"precision {result['overall']['precision']:.2%}"
    )
