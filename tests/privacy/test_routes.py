"""Every API route declares one policy action, and every route × principal obeys the policy.

The walk covers every route of ``create_app()`` (new routes join it automatically) for the
anonymous, a citizen of the household, a citizen of another household (changing the id in the
URL), every officer role in the household's region and — for regional roles — in another
region, a registry client, a merchant client and the SMS gateway's client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from qamqor.kit.db import session_scope
from qamqor.privacy import identities
from qamqor.privacy.models import Account
from qamqor.privacy.policy import ACTIONS, HOUSEHOLD_ACTIONS, OFFICER_ROLES, Rule, rule_for
from qamqor.web.app import create_app
from qamqor.web.auth import declared_actions
from tests.privacy.builders import (
    BIN,
    PASSWORD,
    add_batch,
    fast_hashing,
    make_citizen,
    make_household,
    make_officer,
)

pytestmark = pytest.mark.usefixtures("fast_hashing")
__all__ = ["fast_hashing"]

HOME, HOME_REGION, AWAY_REGION, OTHER = "HW-1", "75", "71", "HW-2"


def api_routes(app: FastAPI) -> list[Any]:
    return [
        r
        for r in iter_route_contexts(app.routes)
        if (r.path or "").startswith("/api/") and getattr(r, "dependant", None) is not None
    ]


def test_every_api_route_declares_exactly_one_known_action() -> None:
    routes = api_routes(create_app())
    assert len(routes) >= 25
    problems = {
        f"{sorted(r.methods)} {r.path}": declared_actions(r)
        for r in routes
        if len(declared_actions(r)) != 1 or declared_actions(r)[0] not in ACTIONS
    }
    assert not problems, f"routes without exactly one policy action: {problems}"


def test_the_check_catches_an_undeclared_route() -> None:
    app = create_app()
    rogue = APIRouter()

    @rogue.get("/api/v1/rogue")
    def rogue_route() -> dict[str, str]:
        return {}

    app.include_router(rogue)
    undeclared = [r.path for r in api_routes(app) if not declared_actions(r)]
    assert undeclared == ["/api/v1/rogue"]


@dataclass(frozen=True)
class Who:
    name: str
    role: str
    account_id: int | None = None
    kind: str = "bearer"  # bearer | client | none
    iin: str | None = None
    regions: tuple[str, ...] = ()
    source: str | None = None


@pytest.fixture
def world(engine: Engine) -> Iterator[dict[str, Any]]:
    with session_scope() as session:
        _, member = make_household(session, HOME, HOME_REGION, 800)
        outsider, _ = make_household(session, OTHER, AWAY_REGION, 810)
        whos = [Who("anonymous", "anonymous", kind="none")]
        account, _ = make_citizen(session, member)
        whos.append(Who("citizen", "citizen", account.id, iin=member))
        account, _ = make_citizen(session, outsider)
        whos.append(Who("citizen_elsewhere", "citizen", account.id, iin=outsider))
        for role in OFFICER_ROLES:
            regional = any(
                r.scope == "region" for a in ACTIONS if (r := rule_for(role, a)) is not None
            )
            regions = (HOME_REGION,) if regional else ("all",)
            account, _ = make_officer(session, role, regions)
            whos.append(Who(role, role, account.id, regions=regions))
            if regional:
                account, _ = make_officer(session, role, (AWAY_REGION,))
                whos.append(Who(f"{role}_away", role, account.id, regions=(AWAY_REGION,)))
        registry, _ = identities.create_client(
            session, name="walk-registry", display_name="r", source="household"
        )
        whos.append(
            Who("registry_client", "registry_client", registry.id, "client", source="household")
        )
        merchant, _ = identities.create_client(session, name="walk-shop", display_name="m", bin=BIN)
        whos.append(Who("merchant_client", "merchant_client", merchant.id, "client"))
        gateway, _ = identities.create_client(
            session, name="walk-gateway", display_name="g", gateway=True
        )
        whos.append(Who("gateway_client", "gateway_client", gateway.id, "client"))
        own_batch = add_batch(session, "household").id
        foreign_batch = add_batch(session, "income").id
    yield {"whos": whos, "member": member, "own_batch": own_batch, "foreign_batch": foreign_batch}


def _token(who: Who) -> str | None:
    """A fresh credential per request: logout revokes the one it was called with."""
    if who.account_id is None:
        return None
    with session_scope() as session:
        account = session.get(Account, who.account_id)
        assert account is not None
        kind = "client" if who.kind == "client" else "bearer"
        return identities.issue_credential(session, account, kind, None)


def _request(path: str, method: str, world: dict[str, Any], batch: str) -> dict[str, Any]:
    values = {
        "household_id": HOME,
        "batch_id": world.get(batch, 0),
        "index": "0",
        "issue_id": "1",
        "purpose": "research",
    }
    url = path
    for name, value in values.items():
        url = url.replace("{" + name + "}", str(value))
    params = {
        "index": 0,
        "first": 0,
        "second": 0,
        "code": "c",
        "state": "s",
    }
    body = None
    if method == "POST":
        body = {"login": world["member"], "password": PASSWORD, "purpose": "research"}
    return {"url": url, "params": params, "json": body}


def expected(who: Who, action: str, household: str | None, batch_source: str | None) -> bool:
    rule: Rule | None = rule_for(who.role, action)
    if rule is None:
        return False
    if action in HOUSEHOLD_ACTIONS and household is not None:
        if rule.scope == "own":
            return who.name == "citizen"
        if rule.scope == "region":
            return "all" in who.regions or HOME_REGION in who.regions
    if rule.scope == "source" and batch_source is not None:
        return batch_source == who.source
    return True


def test_every_route_for_every_principal_follows_the_policy(world: dict[str, Any]) -> None:
    client = TestClient(create_app(), follow_redirects=False)
    mismatches = []
    checked = 0
    for route in api_routes(create_app()):
        (action,) = declared_actions(route)
        for method in sorted(route.methods):
            batches = ["own_batch", "foreign_batch"] if "{batch_id}" in route.path else ["-"]
            for batch in batches:
                for who in world["whos"]:
                    request = _request(route.path, method, world, batch)
                    token = _token(who)
                    headers = {"X-Purpose": "case:WALK-1"}
                    if token:
                        headers["Authorization"] = f"Bearer {token}"
                    client.cookies.clear()  # a login sets a session cookie: not for the next
                    response = client.request(method, headers=headers, **request)
                    household = HOME if "{household_id}" in route.path else None
                    source = {"own_batch": "household", "foreign_batch": "income"}.get(batch)
                    allowed = expected(who, action, household, source)
                    status = response.status_code
                    ok = (
                        (status not in (401, 403) and status < 500)
                        if allowed
                        else (status == (401 if who.role == "anonymous" else 403))
                    )
                    checked += 1
                    if not ok:
                        mismatches.append((method, route.path, batch, who.name, status))
    assert checked > 300
    assert not mismatches, mismatches


def test_changing_the_household_in_the_url_and_leaving_the_region_are_refused(
    world: dict[str, Any],
) -> None:
    client = TestClient(create_app())
    whos = {w.name: w for w in world["whos"]}
    url = "/api/v1/households/{}/profile"
    citizen = {"Authorization": f"Bearer {_token(whos['citizen'])}"}
    assert client.get(url.format(OTHER), headers=citizen).status_code == 403
    worker = {"Authorization": f"Bearer {_token(whos['social_worker'])}"}
    assert (
        client.get(url.format(OTHER), headers={**worker, "X-Purpose": "case:1"}).status_code == 403
    )
    # in the region but without a purpose
    assert client.get(url.format(HOME), headers=worker).status_code == 403
    malformed = client.get(url.format(HOME), headers={**worker, "X-Purpose": "because"})
    assert malformed.status_code == 403 and "case:2026-123" in malformed.json()["detail"]
    away = {"Authorization": f"Bearer {_token(whos['social_worker_away'])}"}
    assert client.get(url.format(HOME), headers={**away, "X-Purpose": "case:1"}).status_code == 403
    assert (
        client.get(url.format(HOME), params={"purpose": "case:1"}, headers=worker).status_code
        != 403
    )
