"""``qamqor offers ...``: list offers, expire the overdue, answer as an SMS would, read the outbox.

Each command is one transaction. ``sms-reply`` goes through exactly the code the SMS gateway's
route calls, so a demo or an operator can answer for a citizen who phoned in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

offers_app = typer.Typer(
    help="Proactive offers: list them, expire the overdue, SMS replies, the notifications outbox.",
    no_args_is_help=True,
)
console = Console()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@offers_app.command("list")
def offers_list(
    household: Annotated[str | None, typer.Option(help="Only this household's offers.")] = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only this status: created, notified, accepted, declined or expired."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    lang: Annotated[str, typer.Option(help="Language of amounts and names: ru, kk or en.")] = "en",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List offers, newest first, with their entitlements."""
    from qamqor.kit.db import session_scope
    from qamqor.proactive.api import offer_out
    from qamqor.proactive.offers import list_offers

    now = _now()
    with session_scope() as session:
        found = list_offers(session, household_id=household, status=status, limit=limit)
        items = [offer_out(v, lang, now).model_dump(mode="json") for v in found]
    if as_json:
        print(json.dumps(items, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"Offers: {len(items)} shown")
    for name in ("id", "household", "program", "amount", "status", "expires (UTC)", "period"):
        table.add_column(name)
    for item in items:
        entitlement = item["entitlement"]
        period = ""
        if entitlement:
            period = f"{entitlement['period_start']} .. {entitlement['period_end'] or 'open'}"
        table.add_row(
            str(item["id"]),
            item["household_id"],
            item["program_id"],
            item["amount"] or "",
            item["status"],
            item["expires_at"][:16].replace("T", " "),
            period,
        )
    console.print(table)


@offers_app.command("expire")
def offers_expire() -> None:
    """Mark every open offer past its 72 hours as expired (for cron; the worker does it too)."""
    from qamqor.kit.db import session_scope
    from qamqor.proactive.offers import expire_due

    with session_scope() as session:
        count = expire_due(session, _now())
    console.print(f"{count:,} offers expired")


@offers_app.command("sms-reply")
def offers_sms_reply(
    iin: Annotated[str, typer.Argument(help="The IIN the SMS came from.")],
    text: Annotated[str, typer.Argument(help='What the citizen wrote, e.g. "ДА 123".')],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Handle an SMS reply as the gateway's route does; exit 1 unless it was taken."""
    from qamqor.kit.db import session_scope
    from qamqor.proactive.offers import handle_sms_reply

    with session_scope() as session:
        result = handle_sms_reply(session, iin, text, _now())
    if as_json:
        print(json.dumps(dataclasses.asdict(result), indent=2, ensure_ascii=False))
    else:
        console.print(f"{result.outcome}: {result.text}", highlight=False, soft_wrap=True)
    if result.outcome not in ("accepted", "declined"):
        raise typer.Exit(code=1)


@offers_app.command("outbox")
def offers_outbox(
    status: Annotated[
        str, typer.Option(help="pending, sent or failed; 'all' for every status.")
    ] = "pending",
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Print the notifications waiting in the outbox (oldest first) with their SMS lengths."""
    from qamqor.kit.db import session_scope
    from qamqor.proactive.notify import outbox, sms_segments, sms_units

    with session_scope() as session:
        rows = outbox(session, status=None if status == "all" else status, limit=limit)
        items: list[dict[str, Any]] = [
            {
                "id": n.id,
                "dedupe_key": n.dedupe_key,
                "recipient_iin": n.recipient_iin,
                "lang": n.lang,
                "status": n.status,
                "text": n.text,
                "link": n.link,
                "units": sms_units(n.text),
                "segments": sms_segments(n.text),
                "created_at": n.created_at.isoformat(),
            }
            for n in rows
        ]
    if as_json:
        print(json.dumps(items, indent=2, ensure_ascii=False))
        return
    for item in items:
        console.print(
            f"#{item['id']} {item['dedupe_key']} → {item['recipient_iin']} [{item['lang']}, "
            f"{item['status']}, {item['units']} chars, {item['segments']} SMS]",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        console.print(f"  {item['text']}", highlight=False, soft_wrap=True, markup=False)
        console.print(f"  {item['link']}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"{len(items)} shown", highlight=False)
