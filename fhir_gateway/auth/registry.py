"""Registering OAuth clients (used by the CLI, the demo bootstrap and the tests)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from fhir_gateway.auth.scopes import parse_scopes
from fhir_gateway.auth.secrets import hash_secret
from fhir_gateway.kit.timeutil import utcnow
from fhir_gateway.storage import client_repository
from fhir_gateway.storage.client_repository import ClientRecord
from fhir_gateway.storage.database import Database


class RegistrationError(ValueError):
    """The registration request is not acceptable (message says why)."""


def register(
    database: Database,
    client_id: str,
    scope: str,
    *,
    secret: str | None = None,
    jwks_file: Path | None = None,
    jwks_url: str | None = None,
    organization: str | None = None,
    trusted: bool = False,
    patient: str | None = None,
    break_glass: bool = False,
) -> ClientRecord:
    """Store a new client; exactly one credential and one of organization/trusted."""
    if sum(x is not None for x in (secret, jwks_file, jwks_url)) != 1:
        raise RegistrationError("give exactly one of --secret, --jwks-file, --jwks-url")
    if trusted == (organization is not None) and patient is None:
        raise RegistrationError("give exactly one of --organization Organization/ID or --trusted")
    if organization is not None and not organization.startswith("Organization/"):
        raise RegistrationError("--organization must look like Organization/<id>")
    if not parse_scopes(scope):
        raise RegistrationError(f"no SMART scope in {scope!r} (e.g. system/*.cruds)")
    jwks = None
    if jwks_file is not None:
        try:
            data = json.loads(jwks_file.read_text())
        except (OSError, ValueError) as exc:
            raise RegistrationError(f"cannot read the JWKS file: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise RegistrationError('the JWKS file must hold {"keys": [...]}')
        jwks = json.dumps(data)
    record = ClientRecord(
        client_id=client_id,
        scope=scope,
        secret_hash=hash_secret(secret) if secret is not None else None,
        jwks=jwks,
        jwks_url=jwks_url,
        organization=organization,
        trusted=trusted,
        patient=patient.removeprefix("Patient/") if patient else None,
        break_glass=break_glass,
        revoked=False,
    )
    with database.transaction(write=True) as conn:
        if not client_repository.add_client(conn, record, utcnow().replace(tzinfo=None)):
            raise RegistrationError(f"a client named {client_id!r} already exists")
    return record


def new_secret() -> str:
    return secrets.token_urlsafe(24)
