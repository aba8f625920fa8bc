"""``qamqor wallet``: credits, sweeps, reports, reconciliation and misuse signals.

``credit`` and ``sweep`` commit per chunk (a few hundred entitlements or tranches a
transaction), so a run killed half way keeps what it did and the next run does the rest; both
are idempotent. The other commands are one transaction each.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from typing import Annotated, Any, NoReturn
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from qamqor.wallet.merchant_cli import merchants_app, settle_command

wallet_app = typer.Typer(
    help="The Social Wallet: credits, sweeps, reports and reconciliation.", no_args_is_help=True
)
wallet_app.add_typer(merchants_app, name="merchants")
wallet_app.command("settle")(settle_command)
signals_app = typer.Typer(help="Misuse signals for review: list, detect (--run), review.")
wallet_app.add_typer(signals_app, name="signals")

console = Console()
err = Console(stderr=True, soft_wrap=True)  # a message is one line, whatever the width

Json = Annotated[bool, typer.Option("--json", help="Print as JSON.")]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _zone() -> ZoneInfo:
    from qamqor.kit.settings import get_settings

    return ZoneInfo(get_settings().local_timezone)


def _moment(value: str | None, hint: str) -> dt.datetime:
    """Now, or a date (its local midnight) or a date and time (local unless it has an
    offset)."""
    if value is None:
        return _now()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            return dt.datetime.combine(day, dt.time(), _zone()).astimezone(dt.UTC)
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not YYYY-MM-DD or YYYY-MM-DDTHH:MM[+05:00]", param_hint=hint
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_zone())
    return moment.astimezone(dt.UTC)


def _month(value: str | None) -> dt.date:
    if value is None:
        return _now().astimezone(_zone()).date().replace(day=1)
    try:
        return dt.date.fromisoformat(f"{value}-01")
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a month YYYY-MM", param_hint="--month"
        ) from None


def _tenge(tiyn: int) -> str:
    whole, part = divmod(abs(tiyn), 100)
    return f"{'-' if tiyn < 0 else ''}{whole:,}.{part:02d} ₸"


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _fail(message: str) -> NoReturn:
    err.print(f"[red]{escape(message)}[/red]", highlight=False)
    raise typer.Exit(1)


@wallet_app.command("credit")
def credit_command(
    month: Annotated[
        str | None, typer.Option(help="The month to credit, YYYY-MM (default: this month).")
    ] = None,
    chunk: Annotated[int, typer.Option(min=1, max=10_000, help="Entitlements a commit.")] = 500,
    as_json: Json = False,
) -> None:
    """Open this month's tranche of every wallet entitlement (idempotent: run it any number
    of times; expiry and activation from the program's payment block)."""
    from qamqor.kit.db import session_scope
    from qamqor.kit.errors import QamqorError
    from qamqor.wallet import credits

    first = _month(month)
    now = _now()
    total = credits.CreditReport(first)
    try:
        with session_scope() as session:
            candidates = credits.count_candidates(session, first)
        with _progress() as progress:
            task = progress.add_task(f"crediting {first:%Y-%m}", total=candidates)
            after = 0
            while True:
                with session_scope() as session:
                    part, last = credits.credit_chunk(
                        session, first, now, after_id=after, limit=chunk
                    )
                if last is None:
                    break
                total.add(part)
                after = last
                progress.update(task, completed=total.entitlements)
    except QamqorError as exc:
        _fail(str(exc))
    data = total.to_dict()
    if as_json:
        print(json.dumps(data))
        return
    skipped = ", ".join(f"{k} {v}" for k, v in data["skipped"].items()) or "none"
    console.print(
        f"{first:%Y-%m}: {total.entitlements:,} wallet entitlements, {total.opened:,} tranches "
        f"opened ({_tenge(total.credited_tiyn)}), {total.already:,} already credited; "
        f"skipped: {skipped}",
        highlight=False,
    )


@wallet_app.command("sweep")
def sweep_command(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Sweep as at this past moment: YYYY-MM-DD (local midnight) or an ISO "
            "date-time (default: now; a missed run done late keeps its own timestamps).",
        ),
    ] = None,
    chunk: Annotated[int, typer.Option(min=1, max=10_000, help="Tranches a commit.")] = 500,
    as_json: Json = False,
) -> None:
    """Void timed-out authorisations, then return what expired or lapsed to each program's
    returns account (idempotent; commits per chunk)."""
    from qamqor.kit.db import session_scope
    from qamqor.wallet import sweep

    now = _moment(as_of, "--as-of")
    if now > _now():
        # sweeping "as at" a later moment would take back money households may still spend
        raise typer.BadParameter("cannot sweep ahead of time", param_hint="--as-of")
    with session_scope() as session:
        due = sweep.count_due(session, now)
    with _progress() as progress, session_scope() as session:
        task = progress.add_task("sweeping", total=due)

        def show(report: sweep.SweepReport) -> None:
            progress.update(task, completed=report.closed + report.waiting)

        report = sweep.sweep(session, now, chunk=chunk, progress=show, commit=session.commit)
    if as_json:
        print(json.dumps({"as_of": now.isoformat(), **report.to_dict()}))
        return
    console.print(
        f"as of {now:%Y-%m-%d %H:%M} UTC: {report.authorisations_voided:,} authorisations voided; "
        f"{report.closed:,} tranches closed ({report.expired:,} expired, {report.lapsed:,} "
        f"lapsed) in {report.households:,} households, {_tenge(report.returned_tiyn)} returned; "
        f"{report.waiting:,} waiting on an authorisation",
        highlight=False,
    )


def _breakdown(values: dict[str, int], names: dict[str, str] | None = None) -> str:
    return ", ".join(f"{(names or {}).get(k, k)} {_tenge(v)}" for k, v in values.items()) or "-"


@wallet_app.command("report")
def report_command(
    program: Annotated[str | None, typer.Option(help="Only this program.")] = None,
    as_json: Json = False,
) -> None:
    """Per program: credited, spent by purpose, merchant category and region (net of
    refunds), returned, outstanding (held in wallets) and pending."""
    from qamqor.kit.db import session_scope
    from qamqor.kit.errors import NotFoundError
    from qamqor.wallet import reports
    from qamqor.wallet.receipts import category_name

    try:
        with session_scope() as session:
            found = reports.program_report(session, program)
    except NotFoundError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps([r.to_dict() for r in found], indent=2, ensure_ascii=False))
        return
    if not found:
        console.print("no credits yet")
        return
    table = Table(title="Social Wallet by program")
    for name in ("program", "credited", "spent", "pending", "returned", "outstanding", "tranches"):
        table.add_column(name, justify="left" if name == "program" else "right")
    for r in found:
        table.add_row(
            r.program_id,
            _tenge(r.credited_tiyn),
            _tenge(r.spent_tiyn),
            _tenge(r.pending_tiyn),
            _tenge(r.returned_tiyn),
            _tenge(r.outstanding_tiyn),
            f"{r.tranches:,}",
        )
    console.print(table)
    for r in found:
        names = {c: f"{c} {category_name(c, 'en')}" for c in r.spent_by_category}
        console.print(f"[bold]{r.program_id}[/bold]", highlight=False)
        console.print(f"  spent by purpose:  {_breakdown(r.spent_by_purpose)}", highlight=False)
        console.print(
            f"  spent by category: {_breakdown(r.spent_by_category, names)}", highlight=False
        )
        console.print(f"  spent by region:   {_breakdown(r.spent_by_region)}", highlight=False)
        console.print(
            f"  returned:          {_breakdown(r.returned_by_reason)} "
            f"({r.closed_expired:,} tranches expired, {r.closed_lapsed:,} lapsed)",
            highlight=False,
        )


@wallet_app.command("trace")
def trace_command(
    payment_id: Annotated[int, typer.Argument(help="The payment's id.")],
    as_json: Json = False,
) -> None:
    """The path of one payment: budget → household wallet → merchant, per tranche drawn on,
    with the credit, payment and refund transfers."""
    from qamqor.kit.db import session_scope
    from qamqor.kit.errors import NotFoundError
    from qamqor.wallet import reports

    try:
        with session_scope() as session:
            path = reports.trace(session, payment_id)
    except NotFoundError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(path, indent=2, ensure_ascii=False))
        return
    p, m = path["payment"], path["merchant"]
    console.print(
        f"payment {p['id']}: {_tenge(p['amount_tiyn'])} ({p['status']}, refunded "
        f"{_tenge(p['refunded_tiyn'])}) by household {p['household_id']} at {m['name']} "
        f"(BIN {m['bin']}, {m['category']}, region {m['region_code']}), {p['created_at']}",
        highlight=False,
    )
    for leg in path["legs"]:
        t = leg["tranche"]
        credit = leg["credit_transfer"]
        console.print(
            f"  {leg['budget_account']} --credit {credit['id'] if credit else '?'} "
            f"{_tenge(t['amount_tiyn'])}--> {leg['wallet_account']} (tranche {t['id']}, "
            f"{t['purpose']}, {t['period_start']}..{t['period_end']})",
            highlight=False,
        )
        for move in leg["payment_transfers"] + leg["refund_transfers"] + leg["returned_transfers"]:
            console.print(
                f"    {move['code']} {move['flags']} {move['id']}: {move['debit']} -> "
                f"{move['credit']} {_tenge(move['amount_tiyn'])}",
                highlight=False,
            )
        console.print(f"    net drawn {_tenge(leg['net_drawn_tiyn'])}", highlight=False)


@wallet_app.command("reconcile")
def reconcile_command(as_json: Json = False) -> None:
    """Prove the books: every balance equals the sum of its postings, every tranche its
    transfers, issued = held + spent + pending + returned per program, nothing negative.
    Exit code 1, listing every broken invariant, when they do not hold."""
    import time

    from qamqor.kit.db import session_scope
    from qamqor.wallet import reconcile

    started = time.monotonic()
    with session_scope() as session:
        problems = reconcile.reconcile(session)
        seen = reconcile.counts(session)
    seconds = time.monotonic() - started
    if as_json:
        print(
            json.dumps(
                {
                    "ok": not problems,
                    "checked": seen,
                    "seconds": round(seconds, 3),
                    "problems": [p.__dict__ for p in problems],
                }
            )
        )
    elif problems:
        err.print(
            f"[bold red]RECONCILIATION FAILED: {len(problems)} broken invariant(s)[/bold red]"
        )
        for problem in problems:
            err.print(f"[red]  {escape(str(problem))}[/red]", highlight=False)
    else:
        console.print(
            f"books reconcile: {seen['accounts']:,} accounts, {seen['transfers']:,} transfers, "
            f"{seen['tranches']:,} tranches, {seen['payments']:,} payments ({seconds:.2f} s)",
            highlight=False,
        )
    if problems:
        raise typer.Exit(1)


def _signal_row(item: dict[str, Any]) -> list[str]:
    detail = ", ".join(
        f"{k}={v}" for k, v in item["detail"].items() if k not in ("payment_ids", "amounts_tiyn")
    )
    return [
        str(item["id"]),
        item["kind"],
        item["status"],
        item["merchant_bin"] or "",
        item["household_id"] or "",
        detail,
    ]


@signals_app.callback(invoke_without_command=True)
def signals_command(
    context: typer.Context,
    run: Annotated[
        bool, typer.Option("--run", help="Look for new signals first (payments of --days).")
    ] = False,
    days: Annotated[int, typer.Option(min=1, max=366, help="The window of --run.")] = 7,
    status: Annotated[
        str | None, typer.Option(help="Only this status: open, confirmed or dismissed.")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind: drain, split or far.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: Json = False,
) -> None:
    """List misuse signals (never a block: for a person to review); --run detects new ones
    over the last --days of payments first (idempotent)."""
    if context.invoked_subcommand is not None:
        return
    from qamqor.kit.db import session_scope
    from qamqor.wallet import signals

    now = _now()
    with session_scope() as session:
        if run:
            report = signals.run_signals(session, now - dt.timedelta(days=days), now)
            if not as_json:
                err.print(
                    f"{report.payments:,} payments looked at; new signals: "
                    + ", ".join(f"{k} {v}" for k, v in report.inserted.items()),
                    highlight=False,
                )
        items = [
            signals.signal_out(s)
            for s in signals.list_signals(session, status=status, kind=kind, limit=limit)
        ]
    if as_json:
        print(json.dumps(items, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"Wallet signals: {len(items)} shown")
    for name in ("id", "kind", "status", "merchant", "household", "detail"):
        table.add_column(name)
    for item in items:
        table.add_row(*_signal_row(item))
    console.print(table)


@signals_app.command("review")
def signals_review_command(
    signal_id: Annotated[int, typer.Argument(help="The signal's id.")],
    confirm: Annotated[bool, typer.Option("--confirm", help="The pattern is misuse.")] = False,
    dismiss: Annotated[bool, typer.Option("--dismiss", help="The pattern is innocent.")] = False,
    note: Annotated[str, typer.Option(help="Why (required).")] = "",
    reviewer: Annotated[str | None, typer.Option(help="Who reviews (default: cli:<user>).")] = None,
) -> None:
    """Confirm or dismiss a signal, with a note."""
    from qamqor.kit.db import session_scope
    from qamqor.kit.errors import QamqorError
    from qamqor.wallet import signals

    if confirm == dismiss:
        raise typer.BadParameter("give exactly one of --confirm and --dismiss")
    decision = "confirmed" if confirm else "dismissed"
    try:
        with session_scope() as session:
            signal = signals.review(
                session,
                signal_id,
                decision=decision,
                note=note,
                reviewer=reviewer or f"cli:{getpass.getuser()}",
                now=_now(),
            )
            status, by = signal.status, signal.reviewed_by
    except QamqorError as exc:
        _fail(str(exc))
    console.print(f"signal {signal_id}: {status} by {by}", highlight=False)


@wallet_app.command("demo")
def demo_command(as_json: Json = False) -> None:
    """The wallet demo (make demo): accept the food voucher, credit it, pay at a shop, be
    refused at a pharmacy, print the program report."""
    from qamqor.kit.db import session_scope
    from qamqor.kit.errors import QamqorError
    from qamqor.wallet.demo import demo_wallet

    def say(text: str) -> None:
        if not as_json:
            console.print(text, highlight=False)

    try:
        with session_scope() as session:
            result = demo_wallet(session, _now(), say)
    except QamqorError as exc:
        _fail(str(exc))
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
