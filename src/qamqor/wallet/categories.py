"""Which wallet purposes a merchant category may draw on (``categories.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from qamqor.rules.spec import PURPOSES

UNEARMARKED = "cash"  # allowed at every category


@dataclass(frozen=True)
class Category:
    code: str
    names: dict[str, str]
    purposes: frozenset[str]


@cache
def categories() -> dict[str, Category]:
    text = resources.files("qamqor.wallet").joinpath("categories.yaml").read_text("utf-8")
    found: dict[str, Category] = {}
    for code, entry in yaml.safe_load(text)["categories"].items():
        purposes = frozenset(entry["purposes"])
        unknown = purposes - set(PURPOSES)
        if unknown or not (len(code) == 4 and code.isdigit()):
            raise ValueError(f"categories.yaml: {code}: unknown purposes {sorted(unknown)}")
        found[code] = Category(code=code, names=dict(entry["names"]), purposes=purposes)
    return found


def allowed_purposes(category: str) -> frozenset[str]:
    """The purposes a payment at a merchant of ``category`` may draw on; cash everywhere."""
    known = categories().get(category)
    return (known.purposes if known else frozenset()) | {UNEARMARKED}
