"""Database engine, sessions and the declarative base shared by every feature's tables.

SQLite is the embedded default and runs in WAL mode with foreign keys on; PostgreSQL is
production. Services never commit: the request, the job or the CLI command owns the
transaction (``session_scope``).
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, TypeDecorator, create_engine, event, exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from qamqor.kit.settings import get_settings

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC, on SQLite too (which stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC timestamp")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # NORMAL is durable in WAL mode except for the last transactions on power loss.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    url = url or get_settings().effective_database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, **kwargs)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle(engine.dialect))
    return engine


# A pooled connection idle for longer than this is pinged before it is handed out; one used
# more recently is not. SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip
# and ~0.25 ms of client CPU for every transaction, a fifth of a wallet payment's. A connection
# that died within the last second (the server restarted) fails its one transaction, and
# SQLAlchemy then invalidates the pool, so the next checkout connects afresh.
PING_AFTER_IDLE_SECONDS = 1.0


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info["qamqor_checked_in"] = time.monotonic()


def _ping_if_idle(dialect: Dialect) -> Any:
    """The pool's checkout hook: ping a connection that has been idle; a dead one is replaced
    (``DisconnectionError`` makes the pool invalidate it and connect again)."""

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("qamqor_checked_in")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.DisconnectionError(f"connection lost while idle: {error}") from error
            raise

    return checkout


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


_engine: Engine | None = None


def get_engine() -> Engine:
    """The process-wide engine for the configured database."""
    global _engine
    if _engine is None:
        _engine = make_engine()
    return _engine


def use_engine(engine: Engine | None) -> None:
    """Make ``engine`` the process-wide engine (tests, embedding); None forgets it."""
    global _engine
    _engine = engine


def reset_engine() -> None:
    global _engine
    if _engine is not None:
        _engine.dispose()
    _engine = None


_factories: weakref.WeakKeyDictionary[Engine, sessionmaker[Session]] = weakref.WeakKeyDictionary()


def _factory(engine: Engine) -> sessionmaker[Session]:
    """One session factory per engine. ``sessionmaker`` builds a class of its own each time,
    and SQLAlchemy sets up that class's event dispatch on its first session: ~0.4 ms of CPU
    per transaction when made anew, a quarter of a wallet payment's client time."""
    factory = _factories.get(engine)
    if factory is None:
        factory = _factories[engine] = sessionmaker(bind=engine, expire_on_commit=False)
    return factory


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = _factory(engine or get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def import_every_models_module() -> None:
    """Register every feature's tables on ``Base.metadata``, not only those someone imported.

    Alembic and the tests compare the whole schema; a feature whose ``models.py`` nothing had
    imported yet would otherwise be missing from both sides and never get a migration.
    """
    import qamqor

    for module in pkgutil.walk_packages(qamqor.__path__, prefix="qamqor."):
        if module.name.rsplit(".", 1)[-1] == "models":
            importlib.import_module(module.name)
