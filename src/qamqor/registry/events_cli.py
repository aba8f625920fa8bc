"""``qamqor events ...``: push change events from a file (scripts, the demo) and list the inbox."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

events_app = typer.Typer(
    help="Registry change events: push them into the inbox, list it.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)


def _read_events(path: Path) -> tuple[list[tuple[int, Any]], list[int]]:
    """(line number, event) of every non-blank line, and the lines that are not JSON."""
    events: list[tuple[int, Any]] = []
    malformed: list[int] = []
    try:
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[bold red]error:[/] {path}: cannot read the file ({exc})", highlight=False)
        raise typer.Exit(code=1) from exc
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append((line_no, json.loads(line)))
        except ValueError:
            malformed.append(line_no)
    return events, malformed


@events_app.command("push")
def events_push(
    file: Annotated[Path, typer.Argument(help="JSON Lines: one event per line.")],
    source: Annotated[str, typer.Option("--source", help="The source registry sending them.")],
    lang: Annotated[str, typer.Option(help="Language of the reasons: ru, kk or en.")] = "en",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Push the events of a file through the same checks as the API; exit 1 if any is rejected.

    Each run of up to 1,000 events is one transaction, as one API call would be.
    """
    from qamqor.kit.db import session_scope
    from qamqor.kit.i18n import explain_reason
    from qamqor.registry.catalogue import sources
    from qamqor.registry.events import MAX_EVENTS, accept_events

    if source not in sources():
        err.print(
            f"[bold red]error:[/] unknown source registry {source!r}; known: "
            + ", ".join(sorted(sources())),
            highlight=False,
        )
        raise typer.Exit(code=1)
    events, malformed = _read_events(file)
    rows: list[dict[str, Any]] = [
        {
            "line": line_no,
            "event_id": None,
            "status": "rejected",
            "inbox_id": None,
            "reasons": ["malformed_json"],
        }
        for line_no in malformed
    ]
    for start in range(0, len(events), MAX_EVENTS):
        chunk = events[start : start + MAX_EVENTS]
        with session_scope() as session:
            results = accept_events(
                session, source, [event for _, event in chunk], dt.datetime.now(dt.UTC)
            )
        rows.extend(
            {
                "line": line_no,
                "event_id": r.event_id,
                "status": r.status,
                "inbox_id": r.inbox_id,
                "reasons": r.reasons,
            }
            for (line_no, _), r in zip(chunk, results, strict=True)
        )
    rows.sort(key=lambda row: row["line"])
    counts = {
        label: sum(row["status"] == status for row in rows)
        for label, status in (
            ("accepted", "accepted"),
            ("duplicates", "duplicate"),
            ("rejected", "rejected"),
        )
    }
    if as_json:
        for row in rows:
            row["texts"] = [explain_reason(code, lang) for code in row["reasons"]]
        print(json.dumps({**counts, "results": rows}, indent=2, ensure_ascii=False))
    else:
        console.print(
            f"{file.name} → {source}: {counts['accepted']:,} accepted, "
            f"{counts['duplicates']:,} duplicates, {counts['rejected']:,} rejected",
            highlight=False,
            soft_wrap=True,
        )
        for row in rows:
            if row["status"] == "rejected":
                texts = "; ".join(explain_reason(code, lang) for code in row["reasons"])
                console.print(
                    f"  line {row['line']} ({row['event_id'] or 'no event id'}): {texts}",
                    highlight=False,
                    soft_wrap=True,
                )
    if counts["rejected"]:
        raise typer.Exit(code=1)


@events_app.command("list")
def events_list(
    status: Annotated[
        str | None, typer.Option(help="Only this status: pending, applied or failed.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only this source registry.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List inbox events, newest first (payloads are not shown)."""
    from qamqor.kit.db import session_scope
    from qamqor.registry.events import list_events, pending_count

    with session_scope() as session:
        rows = list_events(session, status=status, source=source, limit=limit)
        pending = pending_count(session)
        items: list[dict[str, Any]] = [
            {
                "id": e.id,
                "source": e.source,
                "event_id": e.event_id,
                "type": e.type,
                "subject_iin": e.subject_iin,
                "occurred_at": e.occurred_at.isoformat(),
                "received_at": e.received_at.isoformat(),
                "status": e.status,
                "attempts": e.attempts,
                "error": e.error,
            }
            for e in rows
        ]
    if as_json:
        print(json.dumps({"pending": pending, "events": items}, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"Inbox: {len(items)} shown, {pending:,} pending in all")
    for name in (
        "id",
        "source",
        "event id",
        "type",
        "subject",
        "occurred (UTC)",
        "status",
        "tries",
    ):
        table.add_column(name)
    for item in items:
        table.add_row(
            str(item["id"]),
            item["source"],
            item["event_id"],
            item["type"],
            item["subject_iin"],
            item["occurred_at"][:16].replace("T", " "),
            item["status"] if not item["error"] else f"{item['status']}: {item['error']}",
            str(item["attempts"]),
        )
    console.print(table)
