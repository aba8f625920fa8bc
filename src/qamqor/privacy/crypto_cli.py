"""``qamqor keys`` (field-encryption keyring) and ``qamqor retention`` (retention runs).

Every change of the keyring and every retention run leaves an entry in the audit log (ids,
counts and hashes; never a key or a value).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeRemainingColumn
from rich.table import Table

from qamqor.kit.errors import QamqorError

keys_app = typer.Typer(
    help="Field encryption keys: list, add, rotate (re-encrypt everything), retire.",
    no_args_is_help=True,
)
retention_app = typer.Typer(
    help="Retention: anonymise personal data past its category's period.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def _fail(exc: QamqorError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=False)
    return typer.Exit(code=1)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A bar per table or category, on stderr and only on a terminal."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done, total=total)

        yield advance


def _audit(kind: str, payload: dict[str, Any]) -> int:
    from qamqor.audit import service as audit
    from qamqor.kit.db import session_scope

    with session_scope() as session:
        return audit.append(session, kind, None, payload)


# --- keys ----------------------------------------------------------------------------------


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Keys with their status and how many stored values each one seals."""
    from qamqor.kit.db import get_engine
    from qamqor.privacy import fields, keyring

    try:
        ring = keyring.load(create=True)
        usage = fields.usage_by_key(get_engine())
    except QamqorError as exc:
        raise _fail(exc) from exc
    rows = [
        {
            "id": key.id,
            "status": "retired"
            if key.retired
            else ("active" if key.id == ring.active_id else "kept"),
            "created_at": key.created_at.isoformat(),
            "retired_at": key.retired_at.isoformat() if key.retired_at else None,
            "values": usage.get(key.id, 0),
        }
        for key in sorted(ring.keys.values(), key=lambda k: (k.created_at, k.id))
    ]
    unknown = {k: n for k, n in usage.items() if k not in ring.keys}
    if as_json:
        print(json.dumps({"keyring": str(ring.path), "keys": rows, "unknown_keys": unknown}))
        return
    table = Table(title=f"Keyring {ring.path}")
    for name in ("id", "status", "created", "retired", "values"):
        table.add_column(name, justify="right" if name == "values" else "left")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["status"]),
            str(row["created_at"]),
            str(row["retired_at"] or ""),
            f"{row['values']:,}",
        )
    console.print(table)
    for key_id, n in unknown.items():
        err.print(f"[bold red]{n:,} values use key {key_id}, which is not in this keyring[/]")


@keys_app.command("new")
def keys_new() -> None:
    """Add a key and make it the active one; values sealed so far stay under their keys."""
    from qamqor.privacy import keyring

    try:
        key = keyring.add_key(activate=True)
        _audit("keyring", {"event": "new_key", "key_id": key.id})
    except QamqorError as exc:
        raise _fail(exc) from exc
    console.print(f"key {key.id} is now active (`qamqor keys rotate --resume` re-encrypts)")


@keys_app.command("rotate")
def keys_rotate(
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="No new key: re-encrypt what is not yet under the active one."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make a new active key and re-encrypt every encrypted value under it, in batches."""
    from qamqor.kit.db import get_engine
    from qamqor.privacy import fields

    try:
        with _progress(as_json) as advance:
            if resume:
                report = fields.reencrypt(get_engine(), progress=advance)
            else:
                report = fields.rotate(get_engine(), progress=advance)
        _audit(
            "keyring",
            {
                "event": "resume_rotation" if resume else "rotate",
                "key_id": report.key_id,
                "reencrypted": report.reencrypted,
                "remaining": report.remaining,
            },
        )
    except QamqorError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(
            json.dumps(
                {
                    "key_id": report.key_id,
                    "reencrypted": report.reencrypted,
                    "remaining": report.remaining,
                    "seconds": report.seconds,
                }
            )
        )
    else:
        done = ", ".join(f"{name} {n:,}" for name, n in report.reencrypted.items())
        console.print(
            f"active key {report.key_id}; re-encrypted {done} in {report.seconds:.1f} s",
            highlight=False,
        )
    if report.remaining:
        left = ", ".join(f"{name} {n:,}" for name, n in report.remaining.items())
        err.print(
            f"values written meanwhile under an older key: {left}; run "
            "`qamqor keys rotate --resume`",
            highlight=False,
        )
        raise typer.Exit(code=1)


@keys_app.command("retire")
def keys_retire(
    key_id: Annotated[str, typer.Argument(help="Id of the key, e.g. k3f9a1c0d2e4b.")],
) -> None:
    """Delete a key's material; refused while any stored value still uses the key."""
    from qamqor.kit.db import get_engine
    from qamqor.privacy import fields

    try:
        key = fields.retire_key(get_engine(), key_id)
        _audit("keyring", {"event": "retire", "key_id": key.id})
    except QamqorError as exc:
        raise _fail(exc) from exc
    console.print(f"key {key.id} retired: its material is deleted from the keyring")


# --- retention -----------------------------------------------------------------------------


@retention_app.command("show")
def retention_show(
    lang: Annotated[str, typer.Option(help="Language: ru, kk or en.")] = "en",
) -> None:
    """The retention policy: categories, periods and legal bases."""
    from qamqor.kit.i18n import normalise_language
    from qamqor.privacy import retention

    lang = normalise_language(lang)
    try:
        policy = retention.load_policy()
    except QamqorError as exc:
        raise _fail(exc) from exc
    table = Table(title=f"Retention policy ({policy.source})", show_lines=True)
    for name in ("category", "period", "basis"):
        table.add_column(name, overflow="fold")
    for category in policy.categories:
        table.add_row(
            f"{category.code}\n{category.names[lang]}",
            str(category.period),
            category.basis[lang],
        )
    console.print(table)


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be anonymised.")
    ] = False,
    as_of: Annotated[
        str | None, typer.Option(help="Day the periods are counted back from (YYYY-MM-DD).")
    ] = None,
    lang: Annotated[str, typer.Option(help="Language: ru, kk or en.")] = "en",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Anonymise data past its period, in one transaction with its audit entry."""
    from qamqor.kit.db import session_scope
    from qamqor.kit.i18n import normalise_language
    from qamqor.privacy import retention

    lang = normalise_language(lang)
    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
    except ValueError as exc:
        raise typer.BadParameter("--as-of takes a date as YYYY-MM-DD") from exc
    try:
        policy = retention.load_policy()
        with _progress(as_json) as advance, session_scope() as session:
            report = retention.run(
                session, as_of=day, policy=policy, dry_run=dry_run, progress=advance
            )
    except QamqorError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(
            json.dumps(
                report.payload() | {"dry_run": dry_run, "audit_index": report.audit_index},
                ensure_ascii=False,
            )
        )
        return
    names = {c.code: c.names[lang] for c in policy.categories}
    title = "would anonymise" if dry_run else "anonymised"
    table = Table(title=f"Retention as of {report.as_of}: {title}")
    for name in ("category", "cutoff", "rows", "values"):
        table.add_column(name, justify="right" if name in ("rows", "values") else "left")
    for code, result in report.categories.items():
        table.add_row(
            f"{code} ({names[code]})",
            result.cutoff.isoformat(),
            f"{result.rows:,}",
            "" if dry_run else f"{result.values:,}",
        )
    console.print(table)
    if report.audit_index is not None:
        console.print(f"summary recorded as audit entry {report.audit_index}")
    elif not dry_run:
        console.print("nothing past its period: no change, no audit entry")
