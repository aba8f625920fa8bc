from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from qamqor.kit import db
from qamqor.kit.db import make_engine, session_scope
from qamqor.kit.settings import Settings, get_settings
from tests.conftest import POSTGRES_URL, fresh_engine


def test_embedded_default_is_sqlite_under_var(tmp_path: Path) -> None:
    settings = get_settings()  # QAMQOR_VAR_DIR points into tmp_path (conftest)
    assert (
        settings.effective_database_url == f"sqlite:///{(tmp_path / 'var' / 'qamqor.db').resolve()}"
    )


def test_database_url_switches_to_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAMQOR_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert Settings().effective_database_url == "postgresql+psycopg://u@h/db"


def test_unknown_database_is_refused_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QAMQOR_DATABASE_URL", "mysql://root@localhost/db")
    with pytest.raises(ValidationError, match="QAMQOR_DATABASE_URL"):
        Settings()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_both_databases_answer(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def _backend_pid(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(text("SELECT pg_backend_pid()")))


def _terminate(pid: int) -> None:
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


def test_an_idle_connection_that_died_is_replaced_before_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fresh_engine("postgresql", tmp_path) as engine:
        first = _backend_pid(engine)
        _terminate(first)
        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # idle "long enough"
        assert _backend_pid(engine) != first  # pinged, found dead, connected afresh


def test_a_connection_used_just_now_is_not_pinged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cost of not pinging every checkout: a connection that died within the last second
    fails one transaction, and the pool is then renewed for the next."""
    with fresh_engine("postgresql", tmp_path) as engine:
        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
        first = _backend_pid(engine)
        _terminate(first)
        with pytest.raises(DBAPIError) as failed:
            _backend_pid(engine)
        assert failed.value.connection_invalidated
        assert _backend_pid(engine) != first
