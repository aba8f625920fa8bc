"""Errors a user can act on. The CLI prints them without a traceback; the API maps them to 4xx."""

from __future__ import annotations


class QamqorError(Exception):
    """Base of the errors whose message is meant for the user."""

    code = "error"


class InputFileError(QamqorError):
    """A whole input file is unusable (unreadable, empty, truncated, wrong type).

    Raised before anything is stored: the database is as it was.
    """

    code = "input_file"


class NotFoundError(QamqorError):
    code = "not_found"
