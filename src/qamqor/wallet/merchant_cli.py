"""``qamqor wallet merchants``: the merchant registry; ``qamqor wallet settle``: settlement.

A merchant registered here charges wallets through the POS API once it has a machine client
bound to its BIN: ``qamqor accounts create-client shop-1 --bin BIN`` prints the client's
token once (docs/wallet.md).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qamqor.kit.errors import QamqorError

merchants_app = typer.Typer(
    help="Merchants: register by BIN, list, suspend and reactivate.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)


def _fail(exc: QamqorError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(code=1)


def _tenge(tiyn: int) -> str:
    whole, fraction = divmod(tiyn, 100)
    return f"{whole:,}.{fraction:02d}".replace(",", " ")


@merchants_app.command("add")
def add(
    bin: Annotated[str, typer.Argument(help="БИН: 12 digits with the IIN check digit")],
    name: Annotated[str, typer.Option(help="The name shown on receipts")],
    category: Annotated[str, typer.Option(help="ISO 18245 MCC (see `merchants categories`)")],
    region: Annotated[str, typer.Option(help="KATO region code of the outlet")],
) -> None:
    """Register a merchant (or update the name, category and region of one registered)."""
    from qamqor.kit.db import session_scope
    from qamqor.wallet import merchants
    from qamqor.wallet.categories import allowed_purposes

    try:
        with session_scope() as session:
            merchant = merchants.register(
                session,
                bin_=bin,
                name=name,
                category=category,
                region_code=region,
                now=dt.datetime.now(dt.UTC),
            )
            status = merchant.status
    except QamqorError as exc:
        raise _fail(exc) from exc
    purposes = ", ".join(sorted(allowed_purposes(category)))
    console.print(f"merchant {bin} ({name}) {status}; may take: {purposes}", highlight=False)
    console.print(
        f"sign-in for its tills: qamqor accounts create-client <name> --bin {bin}",
        highlight=False,
    )


@merchants_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option(help="active, suspended or closed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """The merchant registry, by BIN."""
    from qamqor.kit.db import session_scope
    from qamqor.wallet import merchants

    with session_scope() as session:
        rows = [
            {
                "bin": m.bin,
                "name": m.name,
                "category": m.category,
                "region_code": m.region_code,
                "status": m.status,
                "status_reason": m.status_reason,
            }
            for m in merchants.list_merchants(session, status=status, limit=limit, offset=offset)
        ]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table("BIN", "name", "MCC", "region", "status", "reason")
    for row in rows:
        table.add_row(*(str(row[k] or "") for k in row))
    console.print(table)


def _set_status(bin: str, status: str, reason: str | None) -> None:
    from qamqor.kit.db import session_scope
    from qamqor.wallet import merchants

    try:
        with session_scope() as session:
            merchants.set_status(session, bin, status, reason=reason, now=dt.datetime.now(dt.UTC))
    except QamqorError as exc:
        raise _fail(exc) from exc
    console.print(f"merchant {bin} {status}", highlight=False)


@merchants_app.command("suspend")
def suspend(
    bin: Annotated[str, typer.Argument(help="The merchant's BIN")],
    reason: Annotated[str, typer.Option(help="Why: kept with the merchant and shown to admins")],
) -> None:
    """Suspend a merchant: its next payment is refused (``merchant_suspended``); its ledger
    account, payments and unsettled money stay, and refunds still work."""
    _set_status(bin, "suspended", reason)


@merchants_app.command("activate")
def activate(bin: Annotated[str, typer.Argument(help="The merchant's BIN")]) -> None:
    """Let a suspended merchant take payments again."""
    _set_status(bin, "active", None)


@merchants_app.command("categories")
def categories_command(
    lang: Annotated[str, typer.Option(help="ru, kk or en")] = "en",
) -> None:
    """Merchant category codes and the wallet purposes a payment there may draw on."""
    from qamqor.kit.i18n import normalise_language
    from qamqor.wallet.categories import UNEARMARKED, categories

    language = normalise_language(lang)
    table = Table("MCC", "name", "purposes")
    for code, category in sorted(categories().items()):
        name = category.names.get(language) or category.names.get("en", code)
        table.add_row(code, name, ", ".join([*sorted(category.purposes), UNEARMARKED]))
    console.print(table)


def settle_command(
    merchant: Annotated[str | None, typer.Option(help="Only this BIN")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="The settlement day, YYYY-MM-DD (default: yesterday, local time)"),
    ] = None,
) -> None:
    """Move each merchant's takings up to the end of the day to the settlement account, for
    the merchants' banks; once per merchant and day (a re-run settles nothing twice)."""
    from qamqor.kit.db import session_scope
    from qamqor.wallet import settlement

    try:
        day = dt.date.fromisoformat(as_of) if as_of else None
    except ValueError as exc:
        raise _fail(QamqorError(f"--as-of {as_of!r} is not a date (YYYY-MM-DD)")) from exc
    try:
        with session_scope() as session:
            done = settlement.settle(
                session, now=dt.datetime.now(dt.UTC), day=day, merchant_bin=merchant
            )
    except QamqorError as exc:
        raise _fail(exc) from exc
    table = Table("BIN", "merchant", "day", "settled ₸", "")
    for item in done:
        note = "already settled" if item.already else ("" if item.amount_tiyn else "nothing due")
        table.add_row(
            item.merchant_bin, item.merchant_name, str(item.day), _tenge(item.amount_tiyn), note
        )
    console.print(table)
    fresh = sum(i.amount_tiyn for i in done if not i.already)
    console.print(f"settled now: {_tenge(fresh)} ₸ for {len(done)} merchant(s)", highlight=False)
