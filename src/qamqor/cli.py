"""The ``qamqor`` command: one sub-command group per concern."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from qamqor.audit.cli import app as audit_app
from qamqor.kit.errors import QamqorError
from qamqor.privacy.cli import accounts_app, privacy_app
from qamqor.privacy.crypto_cli import keys_app, retention_app
from qamqor.proactive.cli import offers_app
from qamqor.proactive.worker_cli import demo_birth_command, worker_command
from qamqor.profiles.cli import profiles_app, quality_app
from qamqor.registry.events_cli import events_app
from qamqor.rules.cli import (
    decide_command,
    decisions_app,
    explain_command,
    rules_app,
    simulate_command,
)
from qamqor.wallet.cli import wallet_app

app = typer.Typer(
    help="Qamqor: proactive, targeted social protection.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The system-of-record database: schema migrations.", no_args_is_help=True)
batches_app = typer.Typer(
    help="Ingested registry batches and their rejections.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(batches_app, name="batches")
app.add_typer(events_app, name="events")
app.add_typer(offers_app, name="offers")
app.add_typer(wallet_app, name="wallet")
app.add_typer(profiles_app, name="profiles")
app.add_typer(quality_app, name="quality")
app.add_typer(rules_app, name="rules")
app.add_typer(decisions_app, name="decisions")
app.command("decide")(decide_command)
app.command("explain")(explain_command)
app.command("simulate")(simulate_command)
app.command("worker")(worker_command)
app.command("demo-birth")(demo_birth_command)
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.add_typer(retention_app, name="retention")
app.add_typer(accounts_app, name="accounts")
app.add_typer(privacy_app, name="privacy")

console = Console()
err = Console(stderr=True)


def _advance(progress: Progress, task: TaskID, name: str, phase: str, rows: int) -> None:
    progress.update(task, description=f"{phase} {name}", completed=rows)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=1)


# --- db ------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the schema to the latest (or given) revision."""
    from qamqor.kit import migrate
    from qamqor.kit.db import get_engine

    migrate.upgrade(revision=revision)
    console.print(
        f"database {get_engine().url.render_as_string(hide_password=True)} "
        f"at revision {migrate.current_revision()}"
    )


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision the database is at."""
    from qamqor.kit import migrate

    console.print(migrate.current_revision() or "empty (run `qamqor db upgrade`)")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision, e.g. base.")],
) -> None:
    """Migrate the schema down to an older revision (drops data of newer tables)."""
    from qamqor.kit import migrate

    migrate.downgrade(revision=revision)
    console.print(f"at revision {migrate.current_revision() or 'base'}")


# --- synth ---------------------------------------------------------------------------------


def _register_synth() -> None:
    from qamqor.synth.cli import synth

    app.command("synth")(synth)


_register_synth()


# --- ingest --------------------------------------------------------------------------------


@app.command("ingest")
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Extract files, or directories holding a manifest.json."),
    ],
    source: Annotated[
        str | None,
        typer.Option(help="Source registry code; by default inferred from the columns."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON report per batch.")
    ] = False,
) -> None:
    """Ingest registry extracts: every row becomes a fact or a rejection with its reasons."""
    from qamqor.registry.ingest import expand_paths, ingest_files

    try:
        targets = expand_paths(paths)
    except QamqorError as exc:
        raise _fail(str(exc)) from exc
    failures = 0
    reports = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=as_json or not err.is_terminal,
    ) as progress:
        tasks = {
            path: progress.add_task(f"waiting {path.name}", total=None) for path, *_ in targets
        }
        outcomes = ingest_files(
            [(path, source or manifest_source, entry) for path, manifest_source, entry in targets],
            progress=lambda path, phase, rows: _advance(
                progress, tasks[path], path.name, phase, rows
            ),
        )
        for path, outcome in outcomes:
            progress.remove_task(tasks[path])
            if isinstance(outcome, QamqorError):
                failures += 1
                err.print(f"[bold red]error:[/] {outcome}", highlight=False)
                if as_json:
                    print(json.dumps({"file": str(path), "status": "error", "error": str(outcome)}))
                continue
            reports.append(outcome)
            if as_json:
                print(json.dumps(outcome.to_dict(), ensure_ascii=False))
    if not as_json and reports:
        table = Table(title="Ingest")
        for name in (
            "file",
            "source",
            "batch",
            "status",
            "read",
            "facts",
            "rejected",
            "dupes",
            "s",
        ):
            table.add_column(
                name,
                justify="right"
                if name in ("read", "facts", "rejected", "dupes", "s", "batch")
                else "left",
            )
        for r in reports:
            table.add_row(
                Path(r.file).name,
                r.source,
                str(r.batch_id),
                r.status,
                f"{r.rows_read:,}",
                f"{r.facts:,}",
                f"{r.rejections:,}",
                f"{r.duplicates:,}",
                f"{r.seconds:.1f}",
            )
        console.print(table)
        reasons: dict[str, int] = {}
        for r in reports:
            for code, n in r.rejection_reasons.items():
                reasons[code] = reasons.get(code, 0) + n
        if reasons:
            console.print(
                "rejections by reason: "
                + ", ".join(
                    f"{code} {n:,}" for code, n in sorted(reasons.items(), key=lambda x: -x[1])
                )
            )
    if failures:
        raise typer.Exit(code=1)


# --- batches -------------------------------------------------------------------------------


@batches_app.command("list")
def batches_list(
    source: Annotated[str | None, typer.Option(help="Only this source registry.")] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """List ingested batches, newest first."""
    from qamqor.kit.db import session_scope
    from qamqor.registry import service

    with session_scope() as session:
        rows, total = service.list_batches(session, source=source, offset=offset, limit=limit)
        table = Table(title=f"Batches {offset + 1}–{offset + len(rows)} of {total}")
        for name in ("id", "source", "file", "read", "facts", "rejected", "dupes", "received"):
            table.add_column(name)
        for b in rows:
            table.add_row(
                str(b.id),
                b.source,
                b.file_name,
                f"{b.rows_read:,}",
                f"{b.facts:,}",
                f"{b.rejections:,}",
                f"{b.duplicates:,}",
                f"{b.received_at:%Y-%m-%d %H:%M}",
            )
    console.print(table)


@batches_app.command("rejections")
def batches_rejections(
    batch_id: int,
    reason: Annotated[str | None, typer.Option(help="Only rejections citing this reason.")] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    lang: Annotated[str, typer.Option(help="Language of the explanations: ru, kk or en.")] = "en",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a batch's rejected rows: line, record id, reasons and the raw row."""
    from qamqor.kit.db import session_scope
    from qamqor.kit.i18n import explain_reason
    from qamqor.registry import service

    with session_scope() as session:
        try:
            rows, total = service.list_rejections(
                session, batch_id, reason=reason, offset=offset, limit=limit
            )
        except QamqorError as exc:
            raise _fail(str(exc)) from exc
        items = [
            {
                "line_no": r.line_no,
                "source_record_id": r.source_record_id,
                "reasons": r.reasons.split(),
                "explanations": [explain_reason(c, lang) for c in r.reasons.split()],
                "raw": r.raw,
            }
            for r in rows
        ]
    if as_json:
        print(json.dumps({"total": total, "items": items}, ensure_ascii=False))
        return
    table = Table(title=f"Rejections of batch {batch_id}: {len(items)} of {total}")
    for name in ("line", "record", "reasons", "raw"):
        table.add_column(name, overflow="fold")
    for item in items:
        table.add_row(
            str(item["line_no"]),
            str(item["source_record_id"] or ""),
            "; ".join(str(x) for x in item["explanations"]),  # type: ignore[union-attr]
            str(item["raw"]),
        )
    console.print(table)


# --- serve ---------------------------------------------------------------------------------


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (QAMQOR_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (QAMQOR_PORT).")] = None,
) -> None:
    """Run the API server (OpenAPI docs at /docs, health at /healthz)."""
    import uvicorn

    from qamqor.kit.settings import get_settings
    from qamqor.web.app import create_app

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    console.print(f"Qamqor API on http://{host}:{port}/  (docs: http://{host}:{port}/docs)")
    uvicorn.run(create_app(), host=host, port=port, log_level="info")


def main() -> None:
    try:
        app()
    except QamqorError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
