"""``qamqor accounts``: identities; ``qamqor privacy``: access alerts and the policy table."""

from __future__ import annotations

import json
import secrets
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qamqor.kit.errors import QamqorError

accounts_app = typer.Typer(
    help="Citizens, officers and machine clients who sign in.", no_args_is_help=True
)
privacy_app = typer.Typer(
    help="Privacy: access anomalies and the authorisation policy.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)


def _fail(exc: QamqorError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(code=1)


def _password(given: str | None) -> tuple[str, bool]:
    if given:
        return given, False
    return secrets.token_urlsafe(12), True


@accounts_app.command("create-officer")
def create_officer(
    login: Annotated[str, typer.Argument(help="Sign-in name, e.g. a.nurlanova")],
    role: Annotated[
        str,
        typer.Option(help="social_worker, program_officer, analyst, dq_steward, auditor, admin"),
    ],
    institution: Annotated[str, typer.Option(help="The officer's institution")],
    region: Annotated[
        list[str], typer.Option(help="KATO region code the officer covers (repeat), or 'all'")
    ],
    name: Annotated[str | None, typer.Option(help="Display name (default: the login)")] = None,
    institution_code: Annotated[
        str | None, typer.Option(help="The institution's BIN or registry code")
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="Password (default: a random one, printed once)")
    ] = None,
) -> None:
    """Create an officer with a role, an institution and a region scope."""
    from qamqor.kit.db import session_scope
    from qamqor.privacy import identities

    secret, generated = _password(password)
    try:
        with session_scope() as session:
            account = identities.create_officer(
                session,
                login=login,
                password=secret,
                display_name=name or login,
                role=role,
                institution=institution,
                institution_code=institution_code,
                regions=region,
            )
            regions = account.regions
    except QamqorError as exc:
        raise _fail(exc) from exc
    console.print(f"officer {login} ({role}, regions {regions}) created")
    if generated:
        console.print(f"password (shown once): {secret}", highlight=False)


@accounts_app.command("create-citizen")
def create_citizen(
    iin: Annotated[str, typer.Argument(help="The citizen's IIN: their sign-in name")],
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    password: Annotated[
        str | None, typer.Option(help="Password (default: a random one, printed once)")
    ] = None,
    oidc_only: Annotated[
        bool, typer.Option("--oidc-only", help="No password: sign in through OIDC only")
    ] = False,
) -> None:
    """Create a citizen account signing in with their IIN."""
    from qamqor.kit.db import session_scope
    from qamqor.privacy import identities

    secret, generated = _password(password)
    try:
        with session_scope() as session:
            identities.create_citizen(
                session, iin=iin, display_name=name or iin, password=None if oidc_only else secret
            )
    except QamqorError as exc:
        raise _fail(exc) from exc
    console.print(f"citizen {iin} created")
    if generated and not oidc_only:
        console.print(f"password (shown once): {secret}", highlight=False)


@accounts_app.command("create-client")
def create_client(
    name: Annotated[str, typer.Argument(help="Client name, e.g. household-registry")],
    source: Annotated[
        str | None, typer.Option(help="Bind to this source registry (a registry client)")
    ] = None,
    bin: Annotated[str | None, typer.Option(help="Bind to this BIN (a merchant client)")] = None,
    gateway: Annotated[
        bool, typer.Option("--gateway", help="The SMS gateway: relays citizens' replies")
    ] = False,
    display_name: Annotated[str | None, typer.Option(help="Display name")] = None,
) -> None:
    """Create a machine client (registry, merchant or SMS gateway); its token is printed once."""
    from qamqor.kit.db import session_scope
    from qamqor.privacy import identities

    try:
        with session_scope() as session:
            account, token = identities.create_client(
                session,
                name=name,
                display_name=display_name or name,
                source=source,
                bin=bin,
                gateway=gateway,
            )
            kind = account.kind
    except QamqorError as exc:
        raise _fail(exc) from exc
    console.print(f"{kind} {name} created")
    console.print(f"bearer token (shown once, stored only as SHA-256): {token}", highlight=False)


@accounts_app.command("list")
def list_accounts(
    kind: Annotated[
        str | None,
        typer.Option(help="citizen, officer, registry_client, merchant_client or gateway_client"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List accounts (never their secrets)."""
    from qamqor.kit.db import session_scope
    from qamqor.privacy import identities

    if as_json:
        with session_scope() as session:
            rows = [
                {
                    "login": a.login,
                    "kind": a.kind,
                    "role": a.role,
                    "institution": a.institution,
                    "regions": a.regions,
                    "source": a.source,
                    "bin": a.bin,
                }
                for a in identities.list_accounts(session, kind)
            ]
        print(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title="Accounts")
    for column in ("login", "kind", "role", "institution", "regions", "bound to", "last sign-in"):
        table.add_column(column)
    with session_scope() as session:
        for a in identities.list_accounts(session, kind):
            table.add_row(
                a.login,
                a.kind,
                a.role or "",
                a.institution or "",
                a.regions or "",
                a.source or a.bin or "",
                f"{a.last_login_at:%Y-%m-%d %H:%M}" if a.last_login_at else "",
            )
    console.print(table)


@accounts_app.command("unlock")
def unlock(login: Annotated[str, typer.Argument(help="The locked account's login")]) -> None:
    """Lift a sign-in lockout before it expires."""
    from qamqor.kit.db import session_scope
    from qamqor.privacy import identities

    try:
        with session_scope() as session:
            identities.unlock(session, login)
    except QamqorError as exc:
        raise _fail(exc) from exc
    console.print(f"{login} unlocked")


@accounts_app.command("language")
def language(
    iin: Annotated[str, typer.Argument(help="The citizen's IIN (an account is not needed)")],
    set_to: Annotated[
        str | None, typer.Option("--set", help="Store this language: ru, kk or en")
    ] = None,
    via: Annotated[
        str,
        typer.Option(help="Where the choice came from: support, registry, portal, api or sms"),
    ] = "support",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show, or with --set store, the language a citizen's SMS and notices are written in."""
    from qamqor.kit.db import session_scope
    from qamqor.privacy import preferences

    if via not in preferences.CHANNELS:
        raise _fail(QamqorError(f"--via must be one of {', '.join(preferences.CHANNELS)}"))
    try:
        with session_scope() as session:
            found = (
                preferences.set_language(session, iin, set_to, via)
                if set_to is not None
                else preferences.get(session, iin)
            )
            row = {
                "iin": iin,
                "language": found.language if found else preferences.DEFAULT_LANGUAGE,
                "chosen": found is not None,
                "set_via": found.set_via if found else None,
                "updated_at": found.updated_at.isoformat() if found else None,
            }
    except QamqorError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(row, ensure_ascii=False))
        return
    if row["chosen"]:
        console.print(
            f"{iin}: {row['language']} (set via {row['set_via']} at {row['updated_at']})",
            highlight=False,
        )
    else:
        console.print(f"{iin}: {row['language']} (nothing chosen: the default)", highlight=False)


@accounts_app.command("seed-demo")
def seed_demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the credentials as JSON")] = False,
) -> None:
    """Create (or reset) the demo accounts and print their credentials."""
    from qamqor.kit.db import session_scope
    from qamqor.privacy.demo import seed

    with session_scope() as session:
        accounts = seed(session)
    if as_json:
        print(json.dumps(accounts, ensure_ascii=False, indent=2))
        return
    table = Table(title="Demo accounts (passwords and tokens are new on every run)")
    for column in ("role", "login", "secret", "scope", "note"):
        # logins and secrets are copied from here: never wrap them across lines
        table.add_column(column, overflow="fold", no_wrap=column in ("login", "secret"))
    for a in accounts:
        table.add_row(a["role"], a["login"], a["secret"], a["scope"], a["note"])
    Console(width=max(console.width, 160)).print(table)
    console.print(
        "Sign in: POST /api/v1/auth/token {login, password} -> bearer token; officers add "
        "?purpose=case:DEMO-1 (or X-Purpose) to open a household.",
        highlight=False,
    )


@privacy_app.command("alerts")
def alerts(
    kind: Annotated[str | None, typer.Option(help="volume, out_of_region or off_hours")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Access anomalies for auditors: volume, out of region, out of hours."""
    from sqlalchemy import select

    from qamqor.kit.db import session_scope
    from qamqor.privacy.anomalies import list_alerts
    from qamqor.privacy.models import Account

    with session_scope() as session:
        rows, total = list_alerts(session, kind=kind, limit=limit)
        ids = {r.account_id for r in rows}
        logins = {
            account_id: login
            for account_id, login in session.execute(
                select(Account.id, Account.login).where(Account.id.in_(ids))
            )
        }
        items = [
            {
                "id": r.id,
                "kind": r.kind,
                "day": r.day.isoformat(),
                "officer": logins.get(r.account_id, str(r.account_id)),
                "events": r.events,
                "detail": r.detail,
            }
            for r in rows
        ]
    if as_json:
        print(json.dumps({"total": total, "items": items}, ensure_ascii=False))
        return
    table = Table(title=f"Access alerts: {len(items)} of {total}")
    for column in ("day", "kind", "officer", "events", "detail"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(
            str(item["day"]),
            str(item["kind"]),
            str(item["officer"]),
            str(item["events"]),
            str(item["detail"]),
        )
    console.print(table)


@privacy_app.command("policy")
def policy(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the authorisation policy: role × action × scope, purpose, legal basis."""
    from qamqor.privacy.policy import table as policy_table

    rows = policy_table()
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    table = Table(title="Authorisation policy")
    for column in ("action", "role", "scope", "purpose", "identity shown"):
        table.add_column(column)
    for row in sorted(rows, key=lambda r: (str(r["action"]), str(r["role"]))):
        table.add_row(
            str(row["action"]),
            str(row["role"]),
            str(row["scope"]),
            "required" if row["purpose_required"] else "",
            "yes" if row["identity_shown"] else "no",
        )
    console.print(table)
