"""Typed configuration: one ``Settings`` object, read from ``QAMQOR_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting has a ``QAMQOR_`` environment variable (``QAMQOR_DATABASE_URL`` ...).

    The defaults run the embedded system: SQLite in WAL mode under ``var/``.
    """

    model_config = SettingsConfigDict(env_prefix="QAMQOR_", env_file=".env", extra="ignore")

    var_dir: Path = Field(
        default=Path("var"),
        description="Working directory for the embedded database, staging and generated data.",
    )
    database_url: str = Field(
        default="",
        description=(
            "SQLAlchemy URL of the system-of-record database. Empty means SQLite at "
            "var/qamqor.db; postgresql+psycopg://user@host/db switches to PostgreSQL."
        ),
    )
    ingest_memory_limit: str = Field(
        default="3GB",
        description=(
            "Memory of one DuckDB staging engine; ingest keeps at most two (one checking, one "
            "writing) and each spills to disk beyond this."
        ),
    )
    ingest_threads: int = Field(
        default=2, ge=1, description="Threads the DuckDB staging engine may use during ingest."
    )
    compute_memory_limit: str = Field(
        default="8GB",
        description=(
            "Memory of the DuckDB engine that builds profiles and runs quality checks; it "
            "spills to var/staging beyond this."
        ),
    )
    compute_threads: int = Field(
        default=2, ge=1, description="Threads of the DuckDB compute engine (profiles, quality)."
    )
    host: str = Field(default="127.0.0.1", description="Address `qamqor serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `qamqor serve` listens on.")
    page_size_max: int = Field(
        default=1000, ge=1, description="Largest page an API list endpoint returns."
    )

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError(
                "QAMQOR_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL, got "
                f"{value.split(':', 1)[0]!r}"
            )
        return value

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'qamqor.db').resolve()}"

    @property
    def staging_dir(self) -> Path:
        return self.var_dir / "staging"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
