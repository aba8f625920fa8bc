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
    resident_threads: int = Field(
        default=1,
        ge=1,
        description=(
            "Threads of the resident DuckDB engine a worker computes its micro-batches in. "
            "One: its tables hold a few thousand households, and a second thread cost 15 % "
            "more CPU for the same wall time while the server and other workers share the "
            "cores."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address `qamqor serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `qamqor serve` listens on.")
    page_size_max: int = Field(
        default=1000, ge=1, description="Largest page an API list endpoint returns."
    )
    audit_key_dir: Path | None = Field(
        default=None,
        description=(
            "Directory of the audit log's Ed25519 signing key (file `audit-log.key`, mode 0600, "
            "created on first use); empty means var/audit. Never stored in the database."
        ),
    )
    audit_origin: str = Field(
        default="qamqor.local/audit",
        description=(
            "Origin line of the audit log's checkpoints and name of its signing key (no spaces "
            "or '+'); verifiers pin it."
        ),
    )

    # --- field encryption and retention (docs/encryption-and-retention.md) ----------------
    keyring_path: Path | None = Field(
        default=None,
        description=(
            "Key file of field encryption (AES-256-GCM keys with ids, mode 0600, created on "
            "first use); empty means var/keys/keyring.json. Never stored in the database."
        ),
    )
    retention_policy: Path | None = Field(
        default=None,
        description=(
            "YAML file of retention periods per data category; empty means the built-in "
            "policy (src/qamqor/privacy/retention.yaml)."
        ),
    )

    # --- privacy: sign-in, sessions, access anomalies (docs/privacy.md) -------------------
    session_ttl_minutes: int = Field(
        default=480, ge=1, description="Lifetime of a page session (cookie) in minutes."
    )
    token_ttl_minutes: int = Field(
        default=60, ge=1, description="Lifetime of a bearer token from /api/v1/auth/token."
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="Send the session cookie only over HTTPS (set true behind TLS).",
    )
    login_max_attempts: int = Field(
        default=5, ge=1, description="Failed sign-ins in a row that lock an account."
    )
    login_lockout_minutes: int = Field(
        default=15, ge=1, description="How long a locked account refuses every sign-in."
    )
    argon2_time_cost: int = Field(
        default=3, ge=1, description="Argon2id passes per password hash (RFC 9106 profile 2)."
    )
    argon2_memory_kib: int = Field(
        default=65536, ge=8, description="Argon2id memory per password hash, in KiB."
    )
    oidc_issuer: str = Field(
        default="",
        description=(
            "OpenID Connect issuer URL for citizen sign-in (discovery at "
            "<issuer>/.well-known/openid-configuration); empty disables OIDC."
        ),
    )
    oidc_client_id: str = Field(default="", description="OIDC client id of Qamqor.")
    oidc_client_secret: str = Field(
        default="", description="OIDC client secret (client_secret_basic at the token endpoint)."
    )
    oidc_redirect_uri: str = Field(
        default="",
        description="Redirect URI registered at the provider (ends in /api/v1/auth/oidc/callback).",
    )
    oidc_iin_claim: str = Field(
        default="iin", description="ID-token claim that carries the citizen's IIN."
    )
    anomaly_daily_households: int = Field(
        default=40,
        ge=1,
        description="Households one officer may open per local day before an alert is raised.",
    )
    anomaly_work_hours: str = Field(
        default="08:00-19:00",
        pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$",
        description="Working hours (local time, Mon-Fri); access outside them raises an alert.",
    )
    local_timezone: str = Field(
        default="Asia/Almaty",
        description="IANA time zone of working hours and of an officer's day.",
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
