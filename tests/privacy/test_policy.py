"""The rules other features build on, read straight from the table: who may do what, in which
scope, with or without a purpose, under which legal basis. No database."""

from __future__ import annotations

import pytest

from qamqor.privacy import policy
from qamqor.privacy.identities import KINDS, OFFICER_ROLES
from qamqor.privacy.policy import (
    BASIS_CONSENT,
    BASIS_NONE,
    BASIS_OVERSIGHT,
    BASIS_SOCIAL,
    BASIS_SUBJECT,
    HOUSEHOLD_ACTIONS,
    roles_allowed,
    rule_for,
)


def rules_of(action: str) -> dict[str, tuple[str, bool, bool, str]]:
    """role -> (scope, purpose required, identity shown, legal basis)."""
    found = {}
    for role in roles_allowed(action):
        rule = rule_for(role, action)
        assert rule is not None
        found[role] = (rule.scope, rule.purpose_required, rule.identity_shown, rule.legal_basis)
    return found


def test_every_account_kind_but_officer_is_a_role_and_every_officer_role_too() -> None:
    assert set(KINDS) - {"officer"} <= set(policy.ROLES)
    assert set(OFFICER_ROLES) <= set(policy.ROLES)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("wallet.charge", {"merchant_client": ("merchant", False, True, BASIS_CONSENT)}),
        ("wallet.read", {"citizen": ("self", False, True, BASIS_SUBJECT)}),
        ("wallet.manage", {"citizen": ("self", False, True, BASIS_CONSENT)}),
        (
            "wallet.read_reports",
            {
                role: ("national", False, True, BASIS_NONE)
                for role in ("program_officer", "analyst", "auditor", "admin")
            },
        ),
        (
            "wallet.trace",
            {
                "program_officer": ("national", True, True, BASIS_SOCIAL),
                "admin": ("national", True, True, BASIS_SOCIAL),
                "auditor": ("national", True, False, BASIS_OVERSIGHT),
            },
        ),
        (
            "wallet.read_signals",
            {
                "program_officer": ("national", True, True, BASIS_SOCIAL),
                "admin": ("national", True, True, BASIS_SOCIAL),
                "auditor": ("national", True, False, BASIS_OVERSIGHT),
            },
        ),
        ("wallet.manage_merchants", {"admin": ("national", False, True, BASIS_NONE)}),
        ("offers.sms_reply", {"gateway_client": ("national", False, True, BASIS_CONSENT)}),
        ("preferences.manage", {"citizen": ("self", False, True, BASIS_CONSENT)}),
    ],
)
def test_the_rules_are_as_agreed(
    action: str, expected: dict[str, tuple[str, bool, bool, str]]
) -> None:
    assert rules_of(action) == expected


def test_the_gateway_may_do_nothing_but_relay_replies() -> None:
    allowed = {a for a in policy.ACTIONS if rule_for("gateway_client", a)}
    signed_in_for_all = {"auth.sign_in", "auth.sign_out", "me.read", "audit.read_proofs"}
    public = {a for a in policy.ACTIONS if rule_for("anonymous", a)}
    assert allowed - signed_in_for_all - public == {"offers.sms_reply"}
    assert rule_for("merchant_client", "offers.sms_reply") is None


def test_a_trace_and_signals_open_a_household_and_are_logged() -> None:
    assert {"wallet.trace", "wallet.read_signals"} <= HOUSEHOLD_ACTIONS
    assert not {"wallet.read_reports", "wallet.charge"} & HOUSEHOLD_ACTIONS
