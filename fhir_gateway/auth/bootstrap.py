"""Start-up duties of the auth module: the development demo client, production checks."""

from __future__ import annotations

from fhir_gateway.auth.registry import new_secret, register
from fhir_gateway.settings import Settings
from fhir_gateway.storage import client_repository
from fhir_gateway.storage.database import Database

DEMO_CLIENT = "demo"


def ensure_demo_client(database: Database, settings: Settings) -> tuple[str, str] | None:
    """In development, create the trusted ``demo`` client once; (id, secret) when created."""
    if settings.env != "development" or not settings.demo_client:
        return None
    with database.transaction() as conn:
        if client_repository.get_client(conn, DEMO_CLIENT) is not None:
            return None
    secret = new_secret()
    register(database, DEMO_CLIENT, "system/*.cruds", secret=secret, trusted=True)
    return DEMO_CLIENT, secret


def check_production_settings(settings: Settings) -> list[str]:
    """What makes ``settings`` unsafe for production (empty when fine)."""
    problems = []
    if settings.is_sqlite and not settings.allow_sqlite_in_production:
        problems.append(
            "SQLite in production: set FHIR_GATEWAY_DATABASE_URL to PostgreSQL "
            "(or FHIR_GATEWAY_ALLOW_SQLITE_IN_PRODUCTION=true)"
        )
    if not settings.base_url.startswith("https://"):
        problems.append("FHIR_GATEWAY_BASE_URL must be https:// in production (token endpoint and audience)")
    if any(i.strip().startswith("http://") for i in settings.trusted_issuers.split(",") if i.strip()):
        problems.append("FHIR_GATEWAY_TRUSTED_ISSUERS must all be https:// in production")
    if "change-me" in settings.database_url:
        problems.append("the database password is the default 'change-me'")
    return problems
