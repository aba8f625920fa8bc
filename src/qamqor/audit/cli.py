"""``qamqor audit``: verify the log, sign a checkpoint, print proofs and the verifier key."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from qamqor.kit.errors import QamqorError

app = typer.Typer(
    help="The verifiable audit log: RFC 9162 Merkle tree, signed checkpoints, proofs.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@app.command("verify")
def verify(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="A checkpoint note kept outside the database; the log must extend it. Repeat.",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            help="The log's verifier key (`qamqor audit key`); default: from the key file.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute every leaf, node and checkpoint; exit 1 and list the problems if any."""
    from qamqor.audit import service
    from qamqor.audit.note import Verifier
    from qamqor.kit.db import session_scope

    published = [path.read_text("utf-8") for path in checkpoint or []]
    try:
        verifier = Verifier.parse(key) if key else None
    except QamqorError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(code=2) from exc
    with (
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=as_json or not err.is_terminal,
        ) as progress,
        session_scope() as session,
    ):
        task = progress.add_task("verifying entries", total=None)
        report = service.verify(
            session,
            published,
            verifier=verifier,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if as_json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "tree_size": report.tree_size,
                    "root_hash": _b64(report.root_hash),
                    "entries_checked": report.entries_checked,
                    "redacted": report.redacted,
                    "nodes_checked": report.nodes_checked,
                    "checkpoints_checked": report.checkpoints_checked,
                    "published_checked": report.published_checked,
                    "unsigned_entries": report.unsigned_entries,
                    "problems": [
                        {"code": p.code, "index": p.index, "message": p.message}
                        for p in report.problems
                    ],
                },
                ensure_ascii=False,
            )
        )
    else:
        console.print(
            f"{report.entries_checked:,} entries ({report.redacted:,} redacted), "
            f"{report.nodes_checked:,} nodes, {report.checkpoints_checked:,} stored and "
            f"{report.published_checked:,} published checkpoints checked; tree size "
            f"{report.tree_size:,}, root {_b64(report.root_hash)}",
            highlight=False,
        )
        if report.unsigned_entries:
            console.print(
                f"{report.unsigned_entries:,} entries are not yet covered by a checkpoint "
                "(run `qamqor audit checkpoint`)"
            )
        if report.ok:
            console.print("[bold green]OK[/]: the log verifies")
        else:
            err.print(f"[bold red]{len(report.problems)} problem(s):[/]")
            for problem in report.problems:
                err.print(f"  - {problem}", highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(code=1)


@app.command("checkpoint")
def checkpoint() -> None:
    """Sign and store a checkpoint of the current tree; print the signed note."""
    from qamqor.audit import service
    from qamqor.kit.db import session_scope

    with session_scope() as session:
        note = service.checkpoint(session).note
    print(note, end="")


@app.command("proof")
def proof(
    index: Annotated[int, typer.Argument(min=0, help="Leaf index of the entry.")],
    tree_size: Annotated[
        int | None, typer.Option(min=1, help="Tree size to prove against (default: current).")
    ] = None,
) -> None:
    """Print an entry's inclusion proof as JSON, checked before printing."""
    from qamqor.audit import service
    from qamqor.kit.db import session_scope

    try:
        with session_scope() as session:
            found = service.inclusion_proof(session, index, tree_size)
    except QamqorError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(code=1) from exc
    if not found.verifies():
        err.print("[bold red]error:[/] the proof does not verify: run `qamqor audit verify`")
        raise typer.Exit(code=1)
    print(
        json.dumps(
            {
                "index": found.index,
                "tree_size": found.tree_size,
                "leaf_hash": _b64(found.leaf_hash),
                "root_hash": _b64(found.root_hash),
                "hashes": [_b64(h) for h in found.hashes],
            }
        )
    )


@app.command("key")
def key() -> None:
    """Print the verifier key (C2SP signed-note format) that checks this log's checkpoints."""
    from qamqor.audit import service

    print(service.verifier())
