"""The registry catalogue: which source registries exist and what their extracts look like.

It is data (``catalogue.yaml``, ``regions.yaml``); this module only loads and checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from typing import Any

import yaml

COLUMN_TYPES = frozenset(
    {
        "record_id",
        "iin",
        "bin",
        "date",
        "month",
        "money",
        "decimal",
        "code",
        "name",
        "text",
        "icd10",
    }
)
LANGUAGES = ("ru", "kk", "en")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = True
    values: tuple[str, ...] = ()
    past: bool = False
    special: bool = False  # a special category of personal data: encrypted at rest


@dataclass(frozen=True)
class Source:
    code: str
    names: dict[str, str]
    owner: dict[str, str]
    cadence_days: int
    valid_from: str
    valid_to: str
    columns: tuple[Column, ...]

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        # cached: an incoming event's every field is looked up in it
        return tuple(c.name for c in self.columns)

    @property
    def has_special_columns(self) -> bool:
        return any(c.special for c in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


@dataclass(frozen=True)
class Region:
    code: str
    kind: str
    population: int
    urban: float
    names: dict[str, str]


def _load_yaml(name: str) -> Any:
    return yaml.safe_load(resources.files("qamqor.registry").joinpath(name).read_text("utf-8"))


@lru_cache(maxsize=1)
def regions() -> tuple[Region, ...]:
    data = _load_yaml("regions.yaml")
    return tuple(
        Region(
            code=r["code"],
            kind=r["kind"],
            population=int(r["population"]),
            urban=float(r["urban"]),
            names={lang: r[lang] for lang in LANGUAGES},
        )
        for r in data["regions"]
    )


@lru_cache(maxsize=1)
def national() -> dict[str, Any]:
    return dict(_load_yaml("regions.yaml")["national"])


@lru_cache(maxsize=1)
def sources() -> dict[str, Source]:
    """Every source registry by code, checked for consistency on first load."""
    data = _load_yaml("catalogue.yaml")
    region_codes = tuple(r.code for r in regions())
    result: dict[str, Source] = {}
    for code, spec in data["sources"].items():
        columns = []
        for name, col in spec["columns"].items():
            ctype = col["type"]
            if ctype not in COLUMN_TYPES:
                raise ValueError(f"catalogue: {code}.{name} has unknown type {ctype!r}")
            values: tuple[str, ...] = ()
            if ctype == "code":
                if col.get("values_from") == "regions":
                    values = region_codes
                else:
                    values = tuple(str(v) for v in col["values"])
            columns.append(
                Column(
                    name,
                    ctype,
                    required=bool(col.get("required", True)),
                    values=values,
                    past=bool(col.get("past", False)),
                    special=bool(col.get("special", False)),
                )
            )
        names = [c.name for c in columns]
        for bound in ("valid_from", "valid_to"):
            if spec[bound] not in names:
                raise ValueError(f"catalogue: {code}.{bound} names unknown column {spec[bound]!r}")
        if names[0] != "record_id":
            raise ValueError(f"catalogue: {code} must start with record_id")
        result[code] = Source(
            code=code,
            names={lang: spec["names"][lang] for lang in LANGUAGES},
            owner={lang: spec["owner"][lang] for lang in LANGUAGES},
            cadence_days=int(spec["cadence_days"]),
            valid_from=spec["valid_from"],
            valid_to=spec["valid_to"],
            columns=tuple(columns),
        )
    return result


def get_source(code: str) -> Source:
    try:
        return sources()[code]
    except KeyError:
        raise KeyError(
            f"unknown source registry {code!r}; known: {', '.join(sorted(sources()))}"
        ) from None
