"""Deployment settings, read from the environment (prefix ``FHIR_GATEWAY_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """All settings of one gateway process; every field maps to ``FHIR_GATEWAY_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FHIR_GATEWAY_", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development", description="production refuses unsafe defaults"
    )
    database_url: str = Field(
        f"sqlite:///{Path.cwd() / 'fhir-gateway.db'}",
        description=(
            "SQLAlchemy URL: sqlite:///file.db or postgresql+psycopg://user@host/db"
            " (requests connect with asyncpg, the CLI with psycopg, from the same URL)"
        ),
    )
    log_level: str = Field("INFO", description="log level of the JSON logs (DEBUG, INFO, WARNING)")
    allow_sqlite_in_production: bool = Field(False, description="let production mode run on SQLite")
    database_pool_size: int = Field(24, description="connections kept open per worker (PostgreSQL)")
    base_url: str = Field(
        "http://127.0.0.1:8000", description="public URL of the server, used in links and token audience"
    )
    max_body_bytes: int = Field(10 * 1024 * 1024, description="largest accepted request body (413 above)")
    max_bundle_entries: int = Field(5000, description="largest accepted batch/transaction Bundle")
    default_count: int = Field(20, description="page size when _count is absent")
    max_count: int = Field(1000, description="largest _count honoured")
    max_include: int = Field(1000, description="most resources added by _include/_revinclude per page")
    max_json_depth: int = Field(64, description="deepest JSON nesting accepted in a request body")
    paging_cursor_ttl_seconds: int = Field(
        3600,
        ge=1,
        description="how long a paging link (its _cursor, bound to the client) stays valid; older: 410",
    )
    rate_limit_per_second: float = Field(0.0, description="requests per second per client (0: no limit)")
    rate_limit_burst: int = Field(100, description="requests a client may send at once above its rate")

    # security (issue 3)
    token_lifetime_seconds: int = Field(300, description="access token lifetime")
    trusted_issuers: str = Field("", description="comma-separated external OIDC issuers trusted for tokens")
    issuer_organization_claim: str = Field(
        "organization", description="claim of an external token that names the client's Organization"
    )
    external_audience: str = Field(
        "fhir-gateway", description="audience accepted in tokens of external issuers (besides the FHIR base)"
    )
    demo_client: bool = Field(True, description="create a demo client on start (development only)")

    # audit
    audit_mode: Literal["process", "batched", "sync"] = Field(
        "process",
        description="process: AuditEvents written in batches by a process of their own beside each "
        "server process; batched: by a background task of the server process; sync: before each response",
    )
    audit_flush_seconds: float = Field(
        0.05,
        description="longest wait before batched AuditEvents are written (what a killed process loses)",
    )
    tune_gc: bool = Field(
        True,
        description="after start-up, freeze the loaded application out of the garbage collector's "
        "sight and run young collections less often (less CPU per request)",
    )

    # consent (issue 4)
    consent_default_policy: Literal["care-team-opt-out", "opt-in"] = Field(
        "care-team-opt-out", description="decision when no Consent applies"
    )
    default_purpose_of_use: str = Field("COC", description="v3 PurposeOfUse when none is given")

    # profiles (issue 6)
    profiles_dir: str = Field(
        "", description="folder of the FHIR profiles (default: the project's profiles/)"
    )
    enforce_profiles: str = Field(
        "",
        description="profiles every write of a type must meet, as Type=<url>,Type=<url> "
        "(e.g. Patient=https://fhir-gateway.org/fhir/StructureDefinition/fg-patient)",
    )

    # subscriptions (issue 7)
    subscription_worker_in_serve: bool = Field(
        True, description="deliver notifications inside `fhir-gateway serve` (else: `fhir-gateway worker`)"
    )
    subscription_allow_private_endpoints: bool = Field(
        False, description="let Subscriptions call loopback and private network addresses (SSRF guard off)"
    )
    subscription_max_attempts: int = Field(
        8, description="failed deliveries in a row after which a Subscription goes to status error"
    )
    subscription_retry_seconds: float = Field(2.0, description="first retry delay; doubles, jittered")
    subscription_retry_max_seconds: float = Field(900.0, description="longest delay between two retries")
    subscription_timeout_seconds: float = Field(10.0, description="HTTP timeout of one notification")
    subscription_poll_seconds: float = Field(1.0, description="how often an idle worker looks for work")
    subscription_lease_seconds: float = Field(
        120.0, description="how long a worker holds a subscription before another may take it over"
    )

    # partner mappings (issue 5)
    mappings_dir: str = Field("", description="folder of partner formats (default: the project's mappings/)")
    analyze_after_rows: int = Field(
        5000,
        ge=1,
        description="resources a partner file import must write to refresh the planner's statistics after it",
    )
    sqlite_analyze_interval_seconds: float = Field(
        30.0,
        ge=0,
        description="SQLite: how often a server checks whether the store has grown enough to refresh the "
        "planner's statistics (0: never)",
    )

    # bulk export (issue 8)
    export_dir: str = Field(
        "",
        description="folder of the bulk $export NDJSON files (default: ./exports in the working directory)",
    )
    export_worker_in_serve: bool = Field(
        True, description="run bulk $export jobs inside `fhir-gateway serve` (else: `fhir-gateway worker`)"
    )
    export_file_max_resources: int = Field(
        100_000, description="most resources in one NDJSON file of an export (then a new file begins)"
    )
    export_page_size: int = Field(
        1000, description="resources read per query (and lease renewal) by an export"
    )
    export_retention_seconds: float = Field(
        86_400.0, description="how long the files of a finished $export are kept (Expires)"
    )
    export_lease_seconds: float = Field(
        120.0, description="how long a worker holds an export job before another may take it over"
    )

    @model_validator(mode="after")
    def _lease_outlasts_a_delivery(self) -> Settings:
        """A worker's lease must outlast two deliveries, or another worker could take the
        subscription over mid-delivery and break the order of notifications."""
        if self.subscription_lease_seconds < 2 * self.subscription_timeout_seconds:
            raise ValueError(
                "FHIR_GATEWAY_SUBSCRIPTION_LEASE_SECONDS must be at least twice "
                "FHIR_GATEWAY_SUBSCRIPTION_TIMEOUT_SECONDS"
            )
        return self

    @property
    def fhir_base(self) -> str:
        """The FHIR base URL (FHIR R4 http.html#root)."""
        return self.base_url.rstrip("/") + "/fhir"

    @property
    def export_path(self) -> Path:
        """Where export files go (``export_dir``, default ``./exports``)."""
        return Path(self.export_dir) if self.export_dir else Path.cwd() / "exports"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process settings, read once from the environment."""
    return Settings()
