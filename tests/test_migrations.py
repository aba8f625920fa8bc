"""Alembic migrations: one head, sortable file names, and a schema equal to the models.

Each database test starts from an empty database of its own (not the session's migrated one),
so upgrade, downgrade and upgrade again run on SQLite and PostgreSQL exactly as in production.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from qamqor.kit import migrate
from qamqor.kit.db import Base, import_every_models_module
from tests.conftest import fresh_engine

VERSIONS = Path(migrate.__file__).parent.parent / "migrations" / "versions"
# 2026_11_29_0001_registry_foundation.py: the date first, so `ls` lists them in order.
FILE_NAME = re.compile(r"(?P<date>\d{4}_\d{2}_\d{2})_(?P<rev>\w+?)_(?P<slug>\w+)\.py")


import_every_models_module()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a database nothing has touched: a new SQLite file or PostgreSQL schema."""
    with fresh_engine(request.param, tmp_path) as engine:
        yield engine


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_there_is_exactly_one_head() -> None:
    heads = migrate.heads()
    assert len(heads) == 1, f"several Alembic heads {heads}: merge them (alembic merge)"


def test_migration_file_names_sort_in_revision_order() -> None:
    names = sorted(p.name for p in VERSIONS.glob("*.py") if p.name != "__init__.py")
    assert names, f"no migrations in {VERSIONS}"
    for name in names:
        match = FILE_NAME.fullmatch(name)
        assert match, f"{name} does not start with YYYY_MM_DD_<rev>_"
        dt.datetime.strptime(match["date"], "%Y_%m_%d")  # a real date, not just digits
    script = ScriptDirectory.from_config(migrate.alembic_config_static())
    base_to_head = [Path(rev.path).name for rev in reversed(list(script.walk_revisions()))]
    assert names == base_to_head, "file names must sort in the order the revisions apply"


# SQLite cannot reflect expression indexes; the one such index (a person's whole name, for the
# namesakes of a micro-batch) is PostgreSQL's only, where it is compared.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
def test_upgrade_builds_the_models_schema_and_downgrade_removes_it(empty_engine: Engine) -> None:
    model_tables = set(Base.metadata.tables)
    assert _tables(empty_engine) == set()

    migrate.upgrade(empty_engine)
    assert _tables(empty_engine) == model_tables | {"alembic_version"}
    assert migrate.current_revision(empty_engine) == migrate.heads()[0]
    assert _differences(empty_engine) == [], "models and migrations disagree: add a migration"

    migrate.downgrade(empty_engine, "base")
    assert _tables(empty_engine) - {"alembic_version"} == set()
    assert migrate.current_revision(empty_engine) is None

    migrate.upgrade(empty_engine)
    assert _tables(empty_engine) == model_tables | {"alembic_version"}
    assert _differences(empty_engine) == []
