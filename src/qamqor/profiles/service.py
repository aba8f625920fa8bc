"""Reading profiles: the current version, its history, and where every value comes from.

Provenance is recomputed, not stored: the household's facts are read again up to the batch the
version's build had read, the relations rebuilt as of its reference date, and each feature's
rows selected with the feature's own condition. What the portal shows as "where this number
comes from" is therefore exactly the rows the number counted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from qamqor.web.auth import Caller

from qamqor.kit.errors import NotFoundError
from qamqor.profiles.catalogue import Catalogue, load_catalogue, parameter_values
from qamqor.profiles.models import ProfileBuild, ProfileHead, ProfileVersion
from qamqor.profiles.relations import relations, run_values
from qamqor.profiles.snapshot import open_snapshot
from qamqor.registry.models import Batch


@dataclass
class FactRef:
    source: str
    record_id: str
    batch_id: int
    line_no: int
    updated_on: dt.date | None
    file_name: str | None = None
    received_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "record_id": self.record_id,
            "batch_id": self.batch_id,
            "line_no": self.line_no,
            "updated_on": self.updated_on.isoformat() if self.updated_on else None,
            "file_name": self.file_name,
            "received_at": self.received_at.isoformat() if self.received_at else None,
        }


def open_household(
    session: Session, caller: Caller, household_id: str, categories: list[str]
) -> None:
    """Every API read of a household's personal data passes here, in the reader's transaction:
    the privacy policy decides, and the access log records the read before it happens."""
    from qamqor.privacy.access import open_personal_data

    open_personal_data(
        session,
        caller.principal,
        household_id=household_id,
        categories=categories,
        purpose=caller.purpose,
        action=caller.action,
    )


@dataclass(frozen=True)
class ProfileView:
    """A stored profile version with its values named (``features``: name -> value)."""

    household_id: str
    version: int
    build_id: int
    as_of: dt.date
    features: dict[str, Any]
    quality: dict[str, list[str]]
    content_sha256: str


def _views(session: Session, rows: list[ProfileVersion]) -> list[ProfileView]:
    names = {
        b.id: b.feature_names
        for b in session.scalars(
            select(ProfileBuild).where(ProfileBuild.id.in_({r.build_id for r in rows}))
        )
    }
    return [
        ProfileView(
            household_id=r.household_id,
            version=r.version,
            build_id=r.build_id,
            as_of=r.as_of,
            features=dict(zip(names[r.build_id], r.features, strict=True)),
            quality=r.quality,
            content_sha256=r.content_sha256,
        )
        for r in rows
    ]


def get_version(session: Session, household_id: str, version: int | None = None) -> ProfileView:
    """The household's current profile version, or the given one."""
    if version is None:
        head = session.get(ProfileHead, household_id)
        if head is None:
            raise NotFoundError(
                f"no profile for household {household_id!r}: unknown household, or "
                "`qamqor profiles build` has not run since its facts arrived"
            )
        version = head.version
    found = session.scalars(
        select(ProfileVersion).where(
            ProfileVersion.household_id == household_id, ProfileVersion.version == version
        )
    ).first()
    if found is None:
        raise NotFoundError(f"household {household_id!r} has no profile version {version}")
    return _views(session, [found])[0]


def history(session: Session, household_id: str) -> list[ProfileView]:
    versions = list(
        session.scalars(
            select(ProfileVersion)
            .where(ProfileVersion.household_id == household_id)
            .order_by(ProfileVersion.version)
        )
    )
    if not versions:
        raise NotFoundError(f"no profile for household {household_id!r}")
    return _views(session, versions)


def changes(older: ProfileView | None, newer: ProfileView) -> dict[str, list[Any]]:
    """Feature -> [before, after] for what differs between two versions (flags included)."""
    out: dict[str, list[Any]] = {}
    before = older.features if older else {}
    for name, value in newer.features.items():
        if before.get(name) != value:
            out[name] = [before.get(name), value]
    old_flags = older.quality if older else {}
    for name in set(old_flags) | set(newer.quality):
        if old_flags.get(name) != newer.quality.get(name):
            out[f"quality:{name}"] = [old_flags.get(name), newer.quality.get(name)]
    return out


def _feature_rows(catalogue: Catalogue, name: str) -> list[tuple[str, str]]:
    """(relation, relation feature) pairs whose rows a feature's value counted."""
    feature = catalogue.features[name]
    if not feature.derived:
        return [(feature.relation, name)]
    out: list[tuple[str, str]] = []
    for source in sorted(feature.inputs()):
        if source in catalogue.features:
            out.extend(_feature_rows(catalogue, source))
    return out


def provenance(
    engine: Engine,
    session: Session,
    household_id: str,
    version: int | None = None,
    features: list[str] | None = None,
) -> dict[str, list[FactRef]]:
    """Feature -> the registry facts its value in this version came from."""
    found = get_version(session, household_id, version)
    build = session.get(ProfileBuild, found.build_id)
    assert build is not None
    catalogue = load_catalogue()
    wanted = features or list(catalogue.features)
    unknown = [f for f in wanted if f not in catalogue.features]
    if unknown:
        raise NotFoundError(f"unknown feature(s): {', '.join(unknown)}")
    values = run_values(found.as_of, parameter_values(catalogue))
    rels = relations()
    out: dict[str, list[FactRef]] = {}
    with open_snapshot(
        engine, found.as_of, [household_id], max_batch_id=build.max_batch_id, check=False
    ) as snapshot:
        con = snapshot.con
        for name in wanted:
            seen: dict[tuple[str, str, int], FactRef] = {}
            for relation, feature_name in _feature_rows(catalogue, name):
                condition = catalogue.features[feature_name].condition_sql(values)
                where = f"household_id = $1 AND ({condition})" if condition else "household_id = $1"
                for source, record, batch, updated, line in rels[relation].provenance:
                    rows = con.execute(
                        f"SELECT DISTINCT {record}, {batch}, {updated}, {line} FROM {relation} "
                        f"WHERE {where} AND {record} IS NOT NULL ORDER BY 2, 4",
                        [household_id],
                    ).fetchall()
                    for record_id, batch_id, updated_on, line_no in rows:
                        seen[(source, record_id, batch_id)] = FactRef(
                            source, record_id, int(batch_id), int(line_no), updated_on
                        )
            out[name] = list(seen.values())
    batch_ids = {ref.batch_id for found_refs in out.values() for ref in found_refs}
    if batch_ids:
        batches = {b.id: b for b in session.scalars(select(Batch).where(Batch.id.in_(batch_ids)))}
        for found_refs in out.values():
            for ref in found_refs:
                found_batch = batches.get(ref.batch_id)
                if found_batch is not None:
                    ref.file_name, ref.received_at = found_batch.file_name, found_batch.received_at
    return out
