"""API shapes of profiles, and the one document a profile is shown as (CLI and API alike)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from qamqor.profiles.catalogue import load_catalogue
from qamqor.profiles.service import get_version, provenance


class FactSource(BaseModel):
    source: str
    record_id: str
    batch_id: int
    line_no: int
    updated_on: dt.date | None
    file_name: str | None
    received_at: dt.datetime | None


class FeatureValue(BaseModel):
    name: str
    description: str
    unit: str
    value: Any
    quality: list[str]  # data-quality checks that taint the value: treat it as unknown
    registries: list[str]
    sources: list[FactSource]


class ProfileOut(BaseModel):
    household_id: str
    version: int
    as_of: dt.date
    build_id: int
    content_sha256: str
    features: list[FeatureValue]


class ProfileVersionOut(BaseModel):
    version: int
    as_of: dt.date
    build_id: int
    changed: dict[str, list[Any]]


def profile_document(
    engine: Engine,
    session: Session,
    household_id: str,
    version: int | None = None,
    *,
    with_sources: bool = True,
    lang: str = "en",
) -> dict[str, Any]:
    found = get_version(session, household_id, version)
    catalogue = load_catalogue()
    sources = provenance(engine, session, household_id, found.version) if with_sources else {}
    features = []
    for name, value in found.features.items():
        feature = catalogue.features.get(name)
        features.append(
            {
                "name": name,
                "description": feature.describe(lang) if feature else name,
                "unit": feature.unit if feature else "",
                "value": value,
                "quality": found.quality.get(name, []),
                "registries": list(feature.sources) if feature else [],
                "sources": [ref.to_dict() for ref in sources.get(name, [])],
            }
        )
    return {
        "household_id": household_id,
        "version": found.version,
        "as_of": found.as_of.isoformat(),
        "build_id": found.build_id,
        "content_sha256": found.content_sha256,
        "features": features,
    }
