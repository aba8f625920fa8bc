"""Errors of the privacy feature; their messages are catalogue keys, shown in ru/kk/en."""

from __future__ import annotations

from typing import Any

from qamqor.kit.errors import QamqorError
from qamqor.kit.i18n import translate


class PrivacyError(QamqorError):
    """An error a user sees: ``key`` is a message id of the Babel catalogues."""

    code = "privacy"
    status = 403

    def __init__(self, key: str, **values: Any) -> None:
        self.key = key
        self.values = values
        super().__init__(translate(key, "en", **values))

    def message(self, lang: str | None) -> str:
        return translate(self.key, lang, **self.values)


class AuthenticationRequiredError(PrivacyError):
    code = "authentication_required"
    status = 401


class AccessDeniedError(PrivacyError):
    """The policy refused. ``reason`` is the stable code stored on the access event."""

    code = "access_denied"
    status = 403

    def __init__(self, reason: str, **values: Any) -> None:
        self.reason = reason
        super().__init__(f"access.{reason}", **values)


class ConsentRequiredError(PrivacyError):
    code = "consent_required"
    status = 403


class NotConfiguredError(PrivacyError):
    code = "not_configured"
    status = 404
