from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import Engine

from qamqor.kit.db import make_engine
from qamqor.kit.settings import Settings, get_settings


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
