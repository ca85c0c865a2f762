"""``fhir-gateway clients ...`` and ``fhir-gateway keys rotate``: the client registry by CLI."""

from __future__ import annotations

from pathlib import Path

import typer

from fhir_gateway.auth.registry import RegistrationError, register
from fhir_gateway.settings import get_settings
from fhir_gateway.storage import client_repository
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade

clients_app = typer.Typer(help="OAuth clients of the built-in authorization server", no_args_is_help=True)
keys_app = typer.Typer(help="token signing keys", no_args_is_help=True)


def _database() -> Database:
    database = Database(get_settings().database_url)
    upgrade(database)
    return database


@clients_app.command("add")
def add(
    name: str = typer.Argument(..., help="client id"),
    scope: str = typer.Option(..., help='SMART scopes, e.g. "system/*.cruds"'),
    secret: str | None = typer.Option(None, help="client secret (client_secret_basic)"),
    jwks_url: str | None = typer.Option(None, help="URL of the client's JWKS (private_key_jwt)"),
    jwks_file: Path | None = typer.Option(None, help="file holding the client's JWKS (private_key_jwt)"),
    organization: str | None = typer.Option(None, help="Organization/ID the client acts for"),
    trusted: bool = typer.Option(False, "--trusted", help="platform client: exempt from consent, audited"),
    patient: str | None = typer.Option(None, help="Patient/ID for a patient-context client"),
    break_glass: bool = typer.Option(False, "--break-glass", help="may send X-Break-Glass"),
) -> None:
    """Register a client."""
    try:
        record = register(
            _database(),
            name,
            scope,
            secret=secret,
            jwks_file=jwks_file,
            jwks_url=jwks_url,
            organization=organization,
            trusted=trusted,
            patient=patient,
            break_glass=break_glass,
        )
    except RegistrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    actor = "trusted" if record.trusted else record.organization or f"Patient/{record.patient}"
    typer.echo(f"client {record.client_id} added ({actor}; scope {record.scope})")


@clients_app.command("list")
def list_() -> None:
    """List clients."""
    with _database().transaction() as conn:
        for c in client_repository.list_clients(conn):
            actor = "trusted" if c.trusted else c.organization or f"Patient/{c.patient}"
            auth = "secret" if c.secret_hash else "jwks"
            state = "revoked" if c.revoked else "active"
            typer.echo(f"{c.client_id}\t{state}\t{actor}\t{auth}\t{c.scope}")


@clients_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="client id")) -> None:
    """Revoke a client: its tokens stop working at once."""
    with _database().transaction(write=True) as conn:
        found = client_repository.revoke_client(conn, name)
    if not found:
        typer.echo(f"error: no client named {name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"client {name} revoked")


@keys_app.command("rotate")
def rotate() -> None:
    """Create a new signing key; older keys verify until their tokens expire."""
    from fhir_gateway.auth.keys import SigningKeys

    kid = SigningKeys(_database()).rotate()
    typer.echo(f"new signing key {kid}")
