"""Start-up duties of the auth module: the development demo client, production checks."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

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


# passwords nobody should run production with (compose and tutorial defaults)
DEFAULT_PASSWORDS = frozenset({"change-me", "changeme", "postgres", "password", "secret", "admin"})


def check_production_settings(settings: Settings) -> list[str]:
    """What makes ``settings`` unsafe for production (empty when fine); each problem says
    which variable to change and how."""
    problems = []
    if settings.is_sqlite and not settings.allow_sqlite_in_production:
        problems.append(
            "SQLite in production: set FHIR_GATEWAY_DATABASE_URL to PostgreSQL "
            "(or FHIR_GATEWAY_ALLOW_SQLITE_IN_PRODUCTION=true)"
        )
    if not settings.base_url.startswith("https://"):
        problems.append(
            f"FHIR_GATEWAY_BASE_URL must be https:// in production, not {settings.base_url!r}: "
            "the token endpoint (/auth/token), the token audience and every link derive from it"
        )
    plain = [i.strip() for i in settings.trusted_issuers.split(",") if i.strip().startswith("http://")]
    if plain:
        problems.append(
            "FHIR_GATEWAY_TRUSTED_ISSUERS must all be https:// in production "
            f"(their keys and token endpoints would travel in clear): {', '.join(plain)}"
        )
    problem = _default_database_password(settings.database_url)
    if problem:
        problems.append(problem)
    return problems


def _default_database_password(url: str) -> str | None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "FHIR_GATEWAY_DATABASE_URL is not a database URL"
    password = parsed.password
    if password is None:
        return None
    if str(password).lower() in DEFAULT_PASSWORDS:
        return f"the database password in FHIR_GATEWAY_DATABASE_URL is the well-known default {password!r}"
    if parsed.username and str(password) == parsed.username:
        return "the database password in FHIR_GATEWAY_DATABASE_URL is the user name"
    return None


def check_production_database(database: Database) -> list[str]:
    """What in the (migrated) database is unsafe for production: the development demo
    client, whose secret was printed on a development start, must not serve tokens."""
    with database.transaction() as conn:
        if client_repository.is_active(conn, DEMO_CLIENT):
            return [
                f"the development demo client '{DEMO_CLIENT}' (trusted, system/*.cruds) is still "
                f"registered: revoke it with `fhir-gateway clients revoke {DEMO_CLIENT}`"
            ]
    return []
