"""``qamqor worker``: registry events to offers, until stopped (or ``--once``)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True)


def worker_command(
    once: Annotated[
        bool, typer.Option("--once", help="Drain the inbox and exit (for cron and tests).")
    ] = False,
    batch: Annotated[
        int, typer.Option(min=1, max=100_000, help="Events per cycle, at most.")
    ] = 2500,  # worker.BATCH (not imported here: the CLI starts without DuckDB)
    as_of: Annotated[
        str | None,
        typer.Option(help="Reference date of the profiles (default: the newest full build's)."),
    ] = None,
    lease_seconds: Annotated[
        float,
        typer.Option(min=0.1, help="How long an unfinished cycle's events stay with a worker."),
    ] = 120.0,
    poll_seconds: Annotated[float, typer.Option(min=0.01)] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per cycle.")] = False,
) -> None:
    """Apply registry events, recompute the households they touch, and offer support or send
    notices; runs until SIGTERM/SIGINT, or with --once until the inbox is empty."""
    from qamqor.kit.db import get_engine
    from qamqor.proactive.worker import CycleReport, run

    def show(report: CycleReport) -> None:
        if as_json:
            typer.echo(json.dumps(report.to_dict()))
        else:
            err.print(
                f"{report.claimed:,} events claimed ({report.applied:,} applied, "
                f"{report.superseded:,} superseded, {report.failed:,} failed, "
                f"{report.taken_over:,} taken over); {report.households:,} households"
                + (f" ({report.deferred:,} left for the next cycle)" if report.deferred else "")
                + f"; {report.offers:,} offers, {report.notices:,} notices "
                f"({report.seconds:.2f} s)",
                highlight=False,
            )

    def ready(seconds: float, households: int) -> None:
        # on standard error in both modes: the benchmark waits for this line
        err.print(
            f"worker ready: warmed up in {seconds:.2f} s ({households:,} households rebuilt)",
            highlight=False,
        )

    done = run(
        get_engine(),
        dt.date.fromisoformat(as_of) if as_of else None,
        batch,
        once,
        poll_seconds,
        show,
        dt.timedelta(seconds=lease_seconds),
        ready,
    )
    if not as_json:
        err.print(f"{done:,} events done")


def demo_birth_command(
    born: Annotated[
        str, typer.Option(help="The child's birth date (before the reference date).")
    ] = "2026-09-20",
) -> None:
    """Push the demo's scripted birth: a daughter born into a family just above the poverty
    line (the civil registry's birth and the family map's new member); `qamqor worker --once`
    then turns it into an offer."""
    from qamqor.kit.db import session_scope
    from qamqor.proactive.demo import birth_events
    from qamqor.registry.events import accept_events

    with session_scope() as session:
        household, events = birth_events(session, dt.date.fromisoformat(born))
        now = dt.datetime.now(dt.UTC)
        for event in events:
            source = event.pop("source")
            (result,) = accept_events(session, source, [event], now)
            err.print(
                f"{source}: {event['type']} {event['event_id']} -> {result.status}",
                highlight=False,
            )
    err.print(f"household {household}: a child born {born}; run `qamqor worker --once`")
