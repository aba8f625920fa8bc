"""Authentication and authorisation for the API: one dependency per route.

Every route declares its action with ``Depends(authorize("household.read_profile"))`` (or
``caller: CallerDep`` built the same way). The dependency

1. finds the principal: a bearer token (``Authorization: Bearer ...``: officers' and
   citizens' tokens, registry and merchant client tokens) or the page session cookie;
   nobody is the anonymous principal;
2. finds the policy rule for the principal's role and the action (401 for the anonymous, 403
   for everyone else when there is none);
3. reads the stated purpose (``?purpose=case:2026-123`` or ``X-Purpose: case:2026-123``) and
   refuses a missing one where the rule requires it;
4. for actions on a household's personal data, when the route names the household
   (``{household_id}`` in the path or ``?household_id=``), checks the household scope
   (membership for citizens, region for officers) before the route runs.

The route then calls ``qamqor.privacy.access.open_personal_data`` in its own transaction to
record the access. Refusals of household access are recorded as access events, in a
transaction of their own, by the exception handler (the request's transaction rolled back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from qamqor.kit.db import session_scope
from qamqor.kit.i18n import normalise_language
from qamqor.privacy import access
from qamqor.privacy.errors import AccessDeniedError, AuthenticationRequiredError, PrivacyError
from qamqor.privacy.identities import ANONYMOUS, Principal, resolve_token
from qamqor.privacy.policy import (
    ACTIONS,
    HOUSEHOLD_ACTIONS,
    ROLES,
    Purpose,
    Rule,
    check_purpose,
    require,
    rule_for,
)

SESSION_COOKIE = "qamqor_session"
ACTION_ATTRIBUTE = "qamqor_action"

_bearer = HTTPBearer(auto_error=False, description="A token from /api/v1/auth/token or a client")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Page session")


@dataclass(frozen=True)
class Caller:
    """The authorised caller of one request: who, under which rule, for what purpose."""

    principal: Principal
    action: str
    rule: Rule
    purpose: Purpose | None
    via_cookie: bool = False

    def require_source(self, source: str) -> None:
        """A registry client reaches only its own registry's batches."""
        if self.rule.scope == "source" and self.principal.source != source:
            raise AccessDeniedError("wrong_source", source=source)


def principal_from(bearer: str | None, cookie: str | None) -> tuple[Principal, bool]:
    """The principal a token or session belongs to; anonymous without either. A token that
    does not resolve is an error, not anonymity (401 tells the client to sign in again)."""
    if not bearer and not cookie:
        return ANONYMOUS, False
    with session_scope() as session:
        if bearer:
            found = resolve_token(session, bearer, ("bearer", "client"))
            via_cookie = False
        else:
            found = resolve_token(session, cookie or "", ("session",))
            via_cookie = True
    if found is None:
        raise AuthenticationRequiredError("auth.invalid_token")
    return found, via_cookie


def _household_from(request: Request) -> str | None:
    value = request.path_params.get("household_id") or request.query_params.get("household_id")
    return str(value) if value else None


def _caller(
    request: Request,
    action: str,
    bearer: HTTPAuthorizationCredentials | None,
    cookie: str | None,
    stated_purpose: str | None,
) -> Caller:
    try:
        principal, via_cookie = principal_from(bearer.credentials if bearer else None, cookie)
    except AuthenticationRequiredError:
        # A stale cookie must not stop anyone from signing in again or reading public pages.
        if rule_for("anonymous", action) is None:
            raise
        principal, via_cookie = ANONYMOUS, False
    purpose = Purpose.parse(stated_purpose)
    household_id = _household_from(request)
    if action in HOUSEHOLD_ACTIONS and household_id is not None:
        with session_scope() as session:
            rule, _ = access.check_household(
                session, principal, household_id=household_id, action=action, purpose=purpose
            )
    else:
        rule = require(principal, action)
        check_purpose(rule, purpose)
    return Caller(principal, action, rule, purpose, via_cookie)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
CookieDep = Annotated[str | None, Depends(_cookie)]


def authorize(action: str) -> Callable[..., Caller]:
    """The dependency that declares and enforces ``action`` for a route. Actions where some
    role must state a purpose take it as ``?purpose=`` or the ``X-Purpose`` header."""
    if action not in ACTIONS:
        raise ValueError(f"undeclared action {action!r}: add it to RULES in privacy/policy.py")
    takes_purpose = any(r.purpose_required for r in (rule_for(role, action) for role in ROLES) if r)

    def with_purpose(
        request: Request,
        bearer: BearerDep = None,
        cookie: CookieDep = None,
        purpose: Annotated[
            str | None,
            Query(description="Why personal data is opened: case|appeal|review|reason_code:REF"),
        ] = None,
        x_purpose: Annotated[str | None, Header(description="The same as ?purpose=")] = None,
    ) -> Caller:
        return _caller(request, action, bearer, cookie, purpose or x_purpose)

    def without_purpose(
        request: Request, bearer: BearerDep = None, cookie: CookieDep = None
    ) -> Caller:
        return _caller(request, action, bearer, cookie, None)

    dependency = with_purpose if takes_purpose else without_purpose
    setattr(dependency, ACTION_ATTRIBUTE, action)
    dependency.__name__ = f"authorize_{action.replace('.', '_')}"
    return dependency


def declared_actions(route: APIRoute) -> list[str]:
    """The actions a route declares through ``authorize`` (exactly one is right)."""
    found: list[str] = []

    def walk(dependant: Any) -> None:
        for dep in dependant.dependencies:
            action = getattr(dep.call, ACTION_ATTRIBUTE, None)
            if action is not None:
                found.append(action)
            walk(dep)

    walk(route.dependant)
    return found


def declare_actions(router: APIRouter, actions: dict[tuple[str, str], str]) -> None:
    """Give routes of a router not written with ``authorize`` their action, before the
    router is included: ``{("GET", "/audit/checkpoint"): "audit.read_checkpoint"}``. A route
    that already declares one is left alone, so this is safe to call more than once."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        if declared_actions(route) or any(
            getattr(d.dependency, ACTION_ATTRIBUTE, None) for d in route.dependencies
        ):
            continue
        for method in sorted(route.methods or ()):
            action = actions.get((method, route.path))
            if action is not None:
                route.dependencies.append(Depends(authorize(action)))
                break


# Routes of routers written before the policy existed, by (method, path inside the router).
# Their owners replace these with authorize(...) in the route signature (and call
# open_personal_data with the caller); a route that declares its own is skipped.
ROUTE_ACTIONS: dict[tuple[str, str], str] = {
    ("GET", "/audit/checkpoint"): "audit.read_checkpoint",
    ("GET", "/audit/key"): "audit.read_checkpoint",
    ("GET", "/audit/entries/{index}"): "audit.read_entries",
    ("GET", "/audit/proofs/inclusion"): "audit.read_proofs",
    ("GET", "/audit/proofs/consistency"): "audit.read_proofs",
    ("GET", "/audit/verify"): "audit.verify",
}


def declare_route_actions(routers: Iterable[APIRouter]) -> None:
    for router in routers:
        declare_actions(router, ROUTE_ACTIONS)


def _language(request: Request) -> str:
    return normalise_language(
        request.query_params.get("lang") or request.headers.get("accept-language")
    )


def _privacy_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PrivacyError)
    attempt = getattr(exc, "attempt", None)
    if isinstance(attempt, access.Attempt) and attempt.principal.authenticated:
        access.record_denied(attempt)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(
        {"detail": exc.message(_language(request)), "code": exc.code, "key": exc.key},
        status_code=exc.status,
        headers=headers,
    )


def install_privacy(app: FastAPI) -> None:
    """Error handlers and the privacy routes (sign-in, me, consents, alerts)."""
    from qamqor.privacy.api import router as privacy_router

    app.add_exception_handler(PrivacyError, _privacy_error)
    app.include_router(privacy_router, prefix="/api/v1")
