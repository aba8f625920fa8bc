"""Who may do what, where, and why: the one authorisation table of Qamqor.

A rule is a row: role × action × scope, whether a purpose must be stated, whether the
officer's identity is shown to the citizen, and the legal basis recorded with each access.
No rule, no access. Every API route names its action through
``qamqor.web.auth.authorize(action)``; ``tests/privacy/test_routes.py`` walks every route of
the app against this table.

Scopes:

- ``public``    anyone, signed in or not (sign-in itself, the signed audit checkpoint);
- ``self``      a signed-in principal about themselves (who am I, my access log, my consents);
- ``own``       a citizen, only the household they are a current member of;
- ``region``    an officer, only households whose head lives in the officer's region scope
                (a scope of ``all`` makes it national);
- ``national``  every household or record, no regional limit;
- ``source``    a registry client, only batches and events of its own source registry;
- ``merchant``  a merchant client, only its own BIN's operations.

A machine client of kind ``gateway_client`` (the SMS gateway) has no scope of its own: it relays
what citizens texted, for whichever IIN, so its one rule (``offers.sms_reply``) is national.

The legal bases name the Law of the Republic of Kazakhstan of 21 May 2013 No. 94-V «On
personal data and their protection» (articles 8: consent, 9: processing without consent where
a law provides, 24: rights of the subject) and the Social Code of the Republic of Kazakhstan of
20 April 2023 No. 224-VII. They are data: the operator's lawyers confirm or change them here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from qamqor.privacy.errors import AccessDeniedError, AuthenticationRequiredError
from qamqor.privacy.identities import OFFICER_ROLES, Principal

ROLES = (
    "anonymous",
    "citizen",
    *OFFICER_ROLES,
    "registry_client",
    "merchant_client",
    "gateway_client",
)
SIGNED_IN = tuple(r for r in ROLES if r != "anonymous")
SCOPES = ("public", "self", "own", "region", "national", "source", "merchant")

PURPOSE_KINDS = ("case", "appeal", "review", "reason_code")
PURPOSE = re.compile(r"(?P<kind>case|appeal|review|reason_code):(?P<ref>[A-Za-z0-9._/-]{1,64})")

# Actions whose target is one household's personal data: their scope is checked against the
# household (membership, region) and every attempt is an access event.
HOUSEHOLD_ACTIONS = frozenset(
    {
        "household.read_profile",
        "household.read_decisions",
        "household.read_quality",
        "household.read_access_log",
        "household.export",
        # a payment's path budget -> household -> merchant, and the wallet's signals about a
        # household, are that household's personal data: opened with a purpose and logged
        "wallet.trace",
        "wallet.read_signals",
    }
)

_LPD = "Law of the RK of 21.05.2013 No. 94-V «On personal data and their protection»"
_SOCIAL_CODE = "Social Code of the RK of 20.04.2023 No. 224-VII"
BASIS_SUBJECT = f"{_LPD}, art. 24 (the subject's right to access their personal data)"
BASIS_SOCIAL = (
    f"{_SOCIAL_CODE} (state social protection: assignment and review of support); "
    f"{_LPD}, art. 9 (processing without consent where a law provides)"
)
BASIS_QUALITY = (
    f"{_SOCIAL_CODE} (accuracy of social protection records); "
    f"{_LPD}, art. 9 (processing without consent where a law provides)"
)
BASIS_OVERSIGHT = (
    f"{_LPD}, art. 9 (processing without consent where a law provides): "
    "control of the lawfulness of processing"
)
BASIS_CONSENT = f"{_LPD}, art. 8 (consent of the subject)"
BASIS_NONE = "no personal data"


@dataclass(frozen=True)
class Rule:
    role: str
    action: str
    scope: str
    purpose_required: bool = False
    identity_shown: bool = True  # is the officer named in the citizen's access log
    legal_basis: str = BASIS_NONE


@dataclass(frozen=True)
class Purpose:
    """Why an officer opens personal data: ``case:2026-123``, ``appeal:A-7``, ..."""

    kind: str
    reference: str

    @classmethod
    def parse(cls, text: str | None) -> Purpose | None:
        """None when absent; ``AccessDeniedError('purpose_invalid')`` when malformed."""
        if text is None or not text.strip():
            return None
        match = PURPOSE.fullmatch(text.strip())
        if match is None:
            raise AccessDeniedError("purpose_invalid", kinds=", ".join(PURPOSE_KINDS))
        return cls(match["kind"], match["ref"])

    def __str__(self) -> str:
        return f"{self.kind}:{self.reference}"


def _rules(action: str, scope: str, roles: Iterable[str], **options: object) -> list[Rule]:
    return [Rule(role, action, scope, **options) for role in roles]  # type: ignore[arg-type]


_OFFICERS_WHO_DECIDE = ("social_worker", "program_officer")

RULES: tuple[Rule, ...] = (
    # sign-in and who am I
    *_rules("auth.sign_in", "public", ROLES),
    *_rules("auth.sign_out", "self", SIGNED_IN),
    *_rules("me.read", "self", SIGNED_IN),
    # the citizen's own data rights
    Rule("citizen", "me.read_access_log", "self", legal_basis=BASIS_SUBJECT),
    Rule("citizen", "consents.manage", "self", legal_basis=BASIS_CONSENT),
    Rule("citizen", "household.export", "own", legal_basis=BASIS_SUBJECT),
    # a household's personal data
    Rule("citizen", "household.read_profile", "own", legal_basis=BASIS_SUBJECT),
    *_rules(
        "household.read_profile",
        "region",
        _OFFICERS_WHO_DECIDE,
        purpose_required=True,
        legal_basis=BASIS_SOCIAL,
    ),
    Rule("admin", "household.read_profile", "national", True, legal_basis=BASIS_SOCIAL),
    Rule("citizen", "household.read_decisions", "own", legal_basis=BASIS_SUBJECT),
    *_rules(
        "household.read_decisions",
        "region",
        _OFFICERS_WHO_DECIDE,
        purpose_required=True,
        legal_basis=BASIS_SOCIAL,
    ),
    Rule("admin", "household.read_decisions", "national", True, legal_basis=BASIS_SOCIAL),
    Rule("citizen", "household.read_quality", "own", legal_basis=BASIS_SUBJECT),
    *_rules(
        "household.read_quality",
        "region",
        _OFFICERS_WHO_DECIDE,
        purpose_required=True,
        legal_basis=BASIS_SOCIAL,
    ),
    Rule("dq_steward", "household.read_quality", "national", True, legal_basis=BASIS_QUALITY),
    Rule(
        "auditor",
        "household.read_access_log",
        "national",
        purpose_required=True,
        identity_shown=False,  # an audit is not announced to the audited
        legal_basis=BASIS_OVERSIGHT,
    ),
    # data quality
    *_rules(
        "quality.read_scorecard",
        "national",
        ("program_officer", "analyst", "dq_steward", "auditor", "admin"),
    ),
    # operations: the Prometheus metrics are counts only
    *_rules("ops.read_metrics", "public", ROLES),
    # rules: a simulation's totals are counts and sums; its list of changed households is not
    *_rules("rules.simulate", "national", ("program_officer", "analyst", "admin")),
    *_rules(
        "rules.simulate_households",
        "national",
        ("program_officer", "admin"),
        purpose_required=True,
        legal_basis=BASIS_SOCIAL,
    ),
    # registries: batch reports are counts; rejections hold raw personal rows
    *_rules("registry.read_sources", "public", ROLES),
    *_rules("registry.read_batches", "national", ("analyst", "dq_steward", "auditor", "admin")),
    Rule("registry_client", "registry.read_batches", "source"),
    Rule("dq_steward", "registry.read_rejections", "national", legal_basis=BASIS_QUALITY),
    Rule("registry_client", "registry.read_rejections", "source", legal_basis=BASIS_QUALITY),
    Rule("registry_client", "registry.push_events", "source", legal_basis=BASIS_SOCIAL),
    # the audit log: the signed checkpoint is public; proofs are hashes only
    *_rules("audit.read_checkpoint", "public", ROLES),
    *_rules("audit.read_proofs", "self", SIGNED_IN),
    Rule("auditor", "audit.read_entries", "national", legal_basis=BASIS_OVERSIGHT),
    Rule("auditor", "audit.verify", "national", legal_basis=BASIS_OVERSIGHT),
    Rule("auditor", "audit.read_alerts", "national", legal_basis=BASIS_OVERSIGHT),
    # administration
    Rule("admin", "accounts.manage", "national"),
    # the Social Wallet. A merchant charges, captures, voids and refunds its own BIN's
    # payments and reads their receipts; the citizen sees their own balances, tranches and
    # transactions (the subject's right) and acts on them by their own choice (consent).
    Rule("merchant_client", "wallet.charge", "merchant", legal_basis=BASIS_CONSENT),
    Rule("citizen", "wallet.read", "self", legal_basis=BASIS_SUBJECT),
    Rule("citizen", "wallet.manage", "self", legal_basis=BASIS_CONSENT),
    # reports are aggregates (sums by purpose, region, merchant category): no personal data
    *_rules("wallet.read_reports", "national", ("program_officer", "analyst", "auditor", "admin")),
    # a trace (budget -> household -> merchant) and the signals about a household name a
    # household: a purpose is required, and an auditor, as for the access log, is not named
    *_rules(
        "wallet.trace",
        "national",
        ("program_officer", "admin"),
        purpose_required=True,
        legal_basis=BASIS_SOCIAL,
    ),
    Rule(
        "auditor",
        "wallet.trace",
        "national",
        purpose_required=True,
        identity_shown=False,
        legal_basis=BASIS_OVERSIGHT,
    ),
    *_rules(
        "wallet.read_signals",
        "national",
        ("program_officer", "admin"),
        purpose_required=True,
        legal_basis=BASIS_SOCIAL,
    ),
    Rule(
        "auditor",
        "wallet.read_signals",
        "national",
        purpose_required=True,
        identity_shown=False,
        legal_basis=BASIS_OVERSIGHT,
    ),
    # merchants are legal entities (BIN, categories, terminals): no personal data
    Rule("admin", "wallet.manage_merchants", "national"),
    # proactive offers: a citizen reads and answers the offers to their current households
    # (the service checks membership per offer) and chooses the language they are written
    # in. The SMS gateway relays citizens' replies: a machine kind of its own, so that no
    # merchant or registry client can answer offers, and national, since a reply may come
    # from any IIN (docs/proactive.md).
    Rule("citizen", "offers.read", "self", legal_basis=BASIS_SUBJECT),
    Rule("citizen", "offers.respond", "self", legal_basis=BASIS_CONSENT),
    Rule("citizen", "preferences.manage", "self", legal_basis=BASIS_CONSENT),
    Rule("gateway_client", "offers.sms_reply", "national", legal_basis=BASIS_CONSENT),
)

_BY_KEY: dict[tuple[str, str], Rule] = {}
for _rule in RULES:
    assert _rule.role in ROLES, _rule
    assert _rule.scope in SCOPES, _rule
    _BY_KEY.setdefault((_rule.role, _rule.action), _rule)

ACTIONS: tuple[str, ...] = tuple(sorted({r.action for r in RULES}))


def rule_for(role: str, action: str) -> Rule | None:
    return _BY_KEY.get((role, action))


def roles_allowed(action: str) -> tuple[str, ...]:
    return tuple(role for role in ROLES if (role, action) in _BY_KEY)


def require(principal: Principal, action: str) -> Rule:
    """The principal's rule for ``action``, or the error to show: 401 for the anonymous
    (signing in may help), 403 for everyone else (it would not)."""
    if action not in ACTIONS:
        raise ValueError(f"undeclared action {action!r}: add it to RULES in privacy/policy.py")
    rule = rule_for(principal.role, action)
    if rule is not None:
        return rule
    if not principal.authenticated:
        raise AuthenticationRequiredError("auth.required")
    raise AccessDeniedError("role_not_allowed", role=principal.role, action=action)


def check_purpose(rule: Rule, purpose: Purpose | None) -> None:
    if rule.purpose_required and purpose is None:
        raise AccessDeniedError("purpose_required", kinds=", ".join(PURPOSE_KINDS))


def check_source(principal: Principal, rule: Rule, source: str) -> None:
    """A registry client sees only its own registry's batches."""
    if rule.scope == "source" and principal.source != source:
        raise AccessDeniedError("wrong_source", source=source)


def table() -> list[dict[str, object]]:
    """The policy as rows (for docs, `qamqor privacy policy` and tests)."""
    return [
        {
            "role": r.role,
            "action": r.action,
            "scope": r.scope,
            "purpose_required": r.purpose_required,
            "identity_shown": r.identity_shown,
            "legal_basis": r.legal_basis,
        }
        for r in RULES
    ]
