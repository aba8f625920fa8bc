"""User-facing text in Russian, Kazakh and English, from the Babel catalogues in ``locale/``.

The catalogues are read as ``.po`` files with Babel (``messages.po`` and any feature's own, such as
``wallet.po``), so no compiled ``.mo`` has to be built or
shipped. Message ids are stable keys (``reason.check_digit``); English is the fallback.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from babel.messages.pofile import read_po

LANGUAGES = ("ru", "kk", "en")
DEFAULT_LANGUAGE = "en"


@cache
def _catalogue(lang: str) -> dict[str, str]:
    # messages.po, plus one catalogue per feature that keeps its texts apart (wallet.po ...)
    folder = resources.files("qamqor").joinpath(f"locale/{lang}/LC_MESSAGES")
    found: dict[str, str] = {}
    for path in sorted(
        (p for p in folder.iterdir() if p.name.endswith(".po")), key=lambda p: p.name
    ):
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=lang)
        for message in catalog:
            if message.id and message.string:
                if str(message.id) in found:
                    raise ValueError(f"{lang}/{path.name}: {message.id!r} is defined twice")
                found[str(message.id)] = str(message.string)
    return found


def normalise_language(lang: str | None) -> str:
    """One of ru/kk/en from a code or an Accept-Language value; English when unknown."""
    if not lang:
        return DEFAULT_LANGUAGE
    for part in lang.replace(" ", "").split(","):
        code = part.split(";")[0].split("-")[0].lower()
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


def translate(key: str, lang: str | None = None, **values: object) -> str:
    lang = normalise_language(lang)
    text = _catalogue(lang).get(key) or _catalogue(DEFAULT_LANGUAGE).get(key) or key
    return text.format(**values) if values else text


def explain_reason(code: str, lang: str | None = None) -> str:
    """A rejection reason code (``check_digit:iin``) in words."""
    check, _, column = code.partition(":")
    return translate(f"reason.{check}", lang, column=column or "")
