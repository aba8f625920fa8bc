"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is expected at 127.0.0.1:5432 (trust auth, database ``test``), or wherever
``QAMQOR_TEST_POSTGRES_URL`` points. Without it the PostgreSQL half skips with the reason,
except when ``CI`` is set: then it fails, so CI can never pass without PostgreSQL.
The schema is built by the real Alembic migrations, in a schema of its own per test session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from qamqor.kit import migrate
from qamqor.kit.db import Base, make_engine, use_engine
from qamqor.kit.settings import get_settings

POSTGRES_URL = os.environ.get(
    "QAMQOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("QAMQOR_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _postgres_engine(schema: str) -> Engine:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any connection failure means "no PostgreSQL here"
        admin.dispose()
        reason = f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so PostgreSQL tests may not skip. {reason}")
        pytest.skip(reason)
    admin.dispose()
    return make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})


@contextmanager
def fresh_engine(kind: str, directory: Path) -> Iterator[Engine]:
    """An engine on a database nothing has touched: a new SQLite file or PostgreSQL schema."""
    if kind == "sqlite":
        engine = make_engine(f"sqlite:///{directory / 'qamqor.db'}")
        yield engine
        engine.dispose()
        return
    schema = f"test_{uuid.uuid4().hex[:10]}"
    engine = _postgres_engine(schema)  # skips, or fails when CI is set, without PostgreSQL
    try:
        yield engine
    finally:
        engine.dispose()
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def migrated_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """An engine on an empty database migrated to head, one per backend per session."""
    with fresh_engine(request.param, tmp_path_factory.mktemp("db")) as engine:
        migrate.upgrade(engine)
        yield engine


@pytest.fixture
def engine(migrated_engine: Engine) -> Iterator[Engine]:
    """The migrated database, emptied after the test; also the process-wide engine."""
    use_engine(migrated_engine)
    yield migrated_engine
    use_engine(None)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with migrated_engine.begin() as conn:
        if migrated_engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            # append-only tables refuse DELETE by trigger: set the triggers aside to empty them
            triggers = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
            ).all()
            for name, _sql in triggers:
                conn.execute(text(f'DROP TRIGGER "{name}"'))
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
            for _name, sql in triggers:
                conn.execute(text(sql))
