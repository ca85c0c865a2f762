"""What ``fhir-gateway serve`` does before accepting requests."""

from __future__ import annotations

import typer

from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade


def prepare(settings: Settings, *, migrate: bool) -> list[str]:
    """Check production settings, migrate, check the database (production) or create the
    demo client (development); the problems that forbid starting."""
    from fhir_gateway.auth.bootstrap import (
        check_production_database,
        check_production_settings,
        ensure_demo_client,
    )

    if settings.env == "production":
        problems = check_production_settings(settings)
        if problems:
            return problems
    database = Database(settings.database_url)
    try:
        if migrate:
            upgrade(database)
        if settings.env == "production":
            problems = check_production_database(database)
            if problems:
                return problems
        demo = ensure_demo_client(database, settings)
    finally:
        database.dispose()
    if demo is not None:
        client_id, secret = demo
        token_url = settings.base_url.rstrip("/") + "/auth/token"
        typer.echo("A demo client was created (development mode). Get a token with:")
        typer.echo(
            f"  curl -s -u {client_id}:{secret} -d grant_type=client_credentials "
            f"-d 'scope=system/*.cruds' {token_url}"
        )
    return []
