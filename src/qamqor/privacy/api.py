"""``/api/v1/auth``, ``/api/v1/me``, consents, access alerts and accounts.

Sign-in: ``POST /auth/login`` sets the page session cookie (HttpOnly, SameSite=Lax, Secure when
``QAMQOR_SESSION_COOKIE_SECURE``); ``POST /auth/token`` returns a bearer token for the API;
``POST /auth/logout`` revokes whichever the request used. Citizens see who opened their
household's data (``/me/access-log``, also as CSV and in the Data Tracker ``findUsage`` shape)
manage their consents and choose the language they are written to in; auditors read access
anomalies.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from qamqor.kit.db import session_scope
from qamqor.kit.i18n import normalise_language, translate
from qamqor.kit.settings import get_settings
from qamqor.privacy import (
    access,
    anomalies,
    consents,
    households,
    identities,
    oidc,
    preferences,
)
from qamqor.privacy.errors import PrivacyError
from qamqor.privacy.models import AccessEvent, Account
from qamqor.privacy.policy import ACTIONS, rule_for
from qamqor.privacy.schemas import (
    AccessLogPage,
    AccountOut,
    AlertPage,
    ConsentIn,
    ConsentOut,
    ConsentsOut,
    FindUsageOut,
    HouseholdAccessOut,
    LoginIn,
    MeOut,
    PreferencesIn,
    PreferencesOut,
    TokenOut,
)
from qamqor.web.auth import SESSION_COOKIE, Caller, authorize

router = APIRouter(tags=["privacy"])

SignIn = Annotated[Caller, Depends(authorize("auth.sign_in"))]
Lang = Annotated[str | None, Query(description="ru, kk or en; default from Accept-Language")]
AcceptLanguage = Annotated[str | None, Header()]


def _lang(lang: str | None, accept_language: str | None) -> str:
    return normalise_language(lang or accept_language)


def _limit(limit: int) -> int:
    return min(limit, get_settings().page_size_max)


def _me(session: Any, principal: identities.Principal) -> MeOut:
    return MeOut(
        kind=principal.kind,
        role=principal.role,
        login=principal.login,
        display_name=principal.display_name,
        institution=principal.institution,
        regions=list(principal.regions),
        iin=principal.iin,
        source=principal.source,
        bin=principal.bin,
        households=households.households_of(session, principal.iin) if principal.iin else [],
        actions=[a for a in ACTIONS if rule_for(principal.role, a)],
    )


def _set_session_cookie(response: Response, token: str) -> None:
    settings = get_settings()
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_ttl_minutes * 60,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.session_cookie_secure,
    )


# --- sign-in -------------------------------------------------------------------------------


@router.post("/auth/login", response_model=MeOut, summary="Sign in: sets the session cookie")
def login(body: LoginIn, response: Response, _: SignIn) -> MeOut:
    with session_scope() as session:
        try:
            account = identities.authenticate(session, body.login, body.password)
        except identities.AuthenticationError:
            session.commit()  # keep the failure count and the lock
            raise
        token = identities.start_session(session, account)
        me = _me(session, identities.principal_of(account))
    _set_session_cookie(response, token)
    return me


@router.post("/auth/token", response_model=TokenOut, summary="A bearer token for the API")
def token(body: LoginIn, _: SignIn) -> TokenOut:
    with session_scope() as session:
        try:
            account = identities.authenticate(session, body.login, body.password)
        except identities.AuthenticationError:
            session.commit()
            raise
        value, minutes = identities.issue_bearer(session, account)
    return TokenOut(access_token=value, expires_in=minutes * 60)


@router.post("/auth/logout", status_code=204, summary="Revoke this request's session or token")
def logout(caller: Annotated[Caller, Depends(authorize("auth.sign_out"))]) -> Response:
    response = Response(status_code=204)
    if caller.principal.credential_id is not None:
        with session_scope() as session:
            identities.revoke(session, caller.principal.credential_id)
    if caller.via_cookie:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get(
    "/auth/oidc/login",
    summary="Sign in with the configured OpenID Connect provider (redirects there)",
)
def oidc_login(_: SignIn) -> RedirectResponse:
    with session_scope() as session:
        url = oidc.begin(session)
    return RedirectResponse(url, status_code=302)


@router.get("/auth/oidc/callback", summary="Where the OpenID Connect provider sends the citizen")
def oidc_callback(
    _: SignIn,
    code: Annotated[str, Query(max_length=2048)],
    state: Annotated[str, Query(max_length=256)],
) -> RedirectResponse:
    with session_scope() as session:
        request = oidc.take_request(session, state)  # spent even if the rest fails
    with session_scope() as session:
        account = oidc.complete(session, request, code=code)
        token = identities.start_session(session, account)
    response = RedirectResponse("/", status_code=303)
    _set_session_cookie(response, token)
    return response


# --- me ------------------------------------------------------------------------------------


@router.get("/me", response_model=MeOut, summary="Who am I, and what may I do")
def me(caller: Annotated[Caller, Depends(authorize("me.read"))]) -> MeOut:
    with session_scope() as session:
        return _me(session, caller.principal)


def _citizen_iin(caller: Caller) -> str:
    if not caller.principal.iin:
        raise PrivacyError("access.role_not_allowed", role=caller.principal.role, action="me")
    return caller.principal.iin


@router.get(
    "/me/access-log",
    response_model=AccessLogPage,
    summary="Who opened my household's data, when, why and on what basis (JSON or CSV)",
    responses={200: {"content": {"text/csv": {}}}},
)
def my_access_log(
    caller: Annotated[Caller, Depends(authorize("me.read_access_log"))],
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 100,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Any:
    iin = _citizen_iin(caller)
    language = _lang(lang, accept_language)
    limit = _limit(limit)
    with session_scope() as session:
        rows, total = access.events_about(
            session, iin, since=since, until=until, offset=offset, limit=limit
        )
        items = [access.log_item(session, e, a, iin, language) for e, a in rows]
    if format == "csv":
        return Response(
            access.to_csv(items),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="qamqor-access-log.csv"'},
        )
    return {"total": total, "offset": offset, "limit": limit, "items": items}


@router.get(
    "/me/access-log/find-usage",
    response_model=FindUsageOut,
    summary="My access log in the shape of Estonia's Data Tracker findUsage",
)
def my_find_usage(
    caller: Annotated[Caller, Depends(authorize("me.read_access_log"))],
    period_start: Annotated[dt.datetime | None, Query(alias="periodStart")] = None,
    period_end: Annotated[dt.datetime | None, Query(alias="periodEnd")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> dict[str, Any]:
    iin = _citizen_iin(caller)
    language = _lang(lang, accept_language)
    with session_scope() as session:
        rows, total = access.events_about(
            session, iin, since=period_start, until=period_end, offset=offset, limit=limit
        )
        usages = [access.find_usage_record(e, language) for e, _ in rows]
    return {"totalUsages": total, "usages": usages}


# --- consents ------------------------------------------------------------------------------

ManageConsents = Annotated[Caller, Depends(authorize("consents.manage"))]


@router.get("/me/consents", response_model=ConsentsOut, summary="My consents and their history")
def my_consents(
    caller: ManageConsents, lang: Lang = None, accept_language: AcceptLanguage = None
) -> dict[str, Any]:
    iin = _citizen_iin(caller)
    language = _lang(lang, accept_language)
    with session_scope() as session:
        history = consents.history(session, iin)
        items = [consents.item(c, language) for c in history]
    active = {i["purpose"] for i in items if i["active"]}
    return {
        "purposes": [
            {
                "purpose": code,
                "title": translate(f"consent.purpose.{code}", language),
                "active": code in active,
            }
            for code in consents.PURPOSES
        ],
        "history": items,
    }


@router.post("/me/consents", response_model=ConsentOut, status_code=201, summary="Give a consent")
def give_consent(
    body: ConsentIn,
    caller: ManageConsents,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> dict[str, Any]:
    iin = _citizen_iin(caller)
    with session_scope() as session:
        consent = consents.grant(session, iin, body.purpose, valid_days=body.valid_days)
        return consents.item(consent, _lang(lang, accept_language))


@router.delete("/me/consents/{purpose}", response_model=ConsentOut, summary="Withdraw a consent")
def withdraw_consent(
    purpose: str,
    caller: ManageConsents,
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> dict[str, Any]:
    iin = _citizen_iin(caller)
    with session_scope() as session:
        consent = consents.withdraw(session, iin, purpose)
        return consents.item(consent, _lang(lang, accept_language))


# --- preferences ---------------------------------------------------------------------------

ManagePreferences = Annotated[Caller, Depends(authorize("preferences.manage"))]


def _preferences_out(iin: str, found: Any) -> PreferencesOut:
    if found is None:
        return PreferencesOut(
            iin=iin,
            language=preferences.DEFAULT_LANGUAGE,
            chosen=False,
            set_via=None,
            updated_at=None,
        )
    return PreferencesOut(
        iin=iin,
        language=found.language,
        chosen=True,
        set_via=found.set_via,
        updated_at=found.updated_at,
    )


@router.get(
    "/me/preferences",
    response_model=PreferencesOut,
    summary="The language my SMS and notices are written in",
)
def my_preferences(caller: ManagePreferences) -> PreferencesOut:
    iin = _citizen_iin(caller)
    with session_scope() as session:
        return _preferences_out(iin, preferences.get(session, iin))


@router.put(
    "/me/preferences",
    response_model=PreferencesOut,
    summary="Choose the language of my SMS and notices (ru, kk or en)",
)
def set_my_preferences(body: PreferencesIn, caller: ManagePreferences) -> PreferencesOut:
    iin = _citizen_iin(caller)
    via = "portal" if caller.via_cookie else "api"
    with session_scope() as session:
        found = preferences.set_language(session, iin, body.language, via)
        return _preferences_out(iin, found)


@router.get(
    "/me/export",
    summary="Everything held about my household, with the source of every fact (JSON)",
)
def export_my_household(
    caller: Annotated[Caller, Depends(authorize("household.export"))],
    lang: Lang = None,
    accept_language: AcceptLanguage = None,
) -> Response:
    from qamqor.kit.db import get_engine
    from qamqor.kit.errors import NotFoundError
    from qamqor.privacy.export import export_household

    with session_scope() as session:
        try:
            document = export_household(
                get_engine(), session, caller.principal, _lang(lang, accept_language)
            )
        except NotFoundError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
    return Response(
        json.dumps(document, ensure_ascii=False, indent=2, default=str),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="qamqor-my-data.json"'},
    )


# --- auditors ------------------------------------------------------------------------------


@router.get("/audit/alerts", response_model=AlertPage, summary="Access anomalies (auditors)")
def alerts(
    _: Annotated[Caller, Depends(authorize("audit.read_alerts"))],
    kind: Annotated[str | None, Query(pattern="^(volume|out_of_region|off_hours)$")] = None,
    since: dt.date | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> dict[str, Any]:
    limit = _limit(limit)
    with session_scope() as session:
        rows, total = anomalies.list_alerts(
            session, kind=kind, since=since, offset=offset, limit=limit
        )
        ids = {r.account_id for r in rows}
        accounts = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))}
        items = []
        for alert in rows:
            account = accounts.get(alert.account_id)
            items.append(
                {
                    "id": alert.id,
                    "kind": alert.kind,
                    "day": alert.day,
                    "account_id": alert.account_id,
                    "login": account.login if account else None,
                    "display_name": account.display_name if account else None,
                    "institution": account.institution if account else None,
                    "role": account.role if account else None,
                    "events": alert.events,
                    "detail": alert.detail,
                    "raised_at": alert.raised_at,
                    "updated_at": alert.updated_at,
                    "last_event_id": alert.last_event_id,
                }
            )
    return {"total": total, "offset": offset, "limit": limit, "items": items}


@router.get(
    "/audit/households/{household_id}/access-log",
    response_model=list[HouseholdAccessOut],
    summary="Every access event of one household (auditors, with a purpose; itself logged)",
)
def household_access_log(
    household_id: str,
    caller: Annotated[Caller, Depends(authorize("household.read_access_log"))],
    limit: Annotated[int, Query(ge=1)] = 500,
) -> list[dict[str, Any]]:
    with session_scope() as session:
        access.open_personal_data(
            session,
            caller.principal,
            household_id=household_id,
            categories=["access_log"],
            purpose=caller.purpose,
            action=caller.action,
        )
        events = session.scalars(
            select(AccessEvent)
            .where(AccessEvent.household_id == household_id)
            .order_by(AccessEvent.occurred_at.desc(), AccessEvent.id.desc())
            .limit(_limit(limit))
        ).all()
        return [
            {
                "id": e.id,
                "occurred_at": e.occurred_at,
                "account_id": e.account_id,
                "role": e.role,
                "institution": e.institution,
                "action": e.action,
                "categories": list(e.categories),
                "purpose": (
                    {"kind": e.purpose_kind, "reference": e.purpose_reference}
                    if e.purpose_kind
                    else None
                ),
                "outcome": e.outcome,
                "reason": e.reason,
                "audit_index": e.audit_index,
            }
            for e in events
        ]


# --- administration ------------------------------------------------------------------------


@router.get("/accounts", response_model=list[AccountOut], summary="Accounts (admins)")
def list_accounts(
    _: Annotated[Caller, Depends(authorize("accounts.manage"))],
    kind: Annotated[
        str | None,
        Query(pattern="^(citizen|officer|registry_client|merchant_client|gateway_client)$"),
    ] = None,
) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        return [
            {
                "id": a.id,
                "kind": a.kind,
                "login": a.login,
                "display_name": a.display_name,
                "role": a.role,
                "institution": a.institution,
                "regions": a.regions,
                "source": a.source,
                "bin": a.bin,
                "locked": a.locked_until is not None and a.locked_until > now,
                "created_at": a.created_at,
                "last_login_at": a.last_login_at,
            }
            for a in identities.list_accounts(session, kind)
        ]
