"""Fixtures of the mapping tests: the real CLI and HTTP operations on the test database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from fhir_gateway.cli import _register_subcommands, app
from fhir_gateway.fhir import writes
from fhir_gateway.fhir.context import unit_of_work
from fhir_gateway.kit import jsonutil
from fhir_gateway.mapping.commands import _access
from fhir_gateway.settings import Settings, get_settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.tables import resource

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "partner-formats" / "samples"
SAAD = "Organization/saad-42"
DC = "Organization/domicile-connect-42"
MDPH_CLIENT_ORG = "Organization/mdph-042"

CliRun = Callable[..., Result]


@pytest.fixture
def cli(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRun]:
    """Run ``fhir-gateway ARGS`` in-process against the test database."""
    monkeypatch.setenv("FHIR_GATEWAY_DATABASE_URL", database.url)
    get_settings.cache_clear()
    _register_subcommands()
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), catch_exceptions=False)

    yield run
    get_settings.cache_clear()


def put(database: Database, settings: Settings, body: dict[str, Any]) -> None:
    """Store a resource as a trusted operator (test set-up, through the service layer)."""
    access = _access("test:setup", "Organization/setup")
    with unit_of_work(database, settings, access, write=True, audit_sink=lambda _e: None) as ctx:
        writes.update(ctx, body["resourceType"], body["id"], body, None)


@pytest.fixture
def organizations(database: Database, settings: Settings) -> None:
    for ref, name in ((SAAD, "SAAD Loire"), (DC, "Aides Domicile Connect"), (MDPH_CLIENT_ORG, "MDPH Loire")):
        put(database, settings, {"resourceType": "Organization", "id": ref.split("/")[1], "name": name})


def stored(database: Database, res_type: str) -> list[dict[str, Any]]:
    """The current resources of a type, straight from the table (test oracle)."""
    with database.engine.connect() as conn:
        rows = conn.execute(
            resource.select().where(resource.c.res_type == res_type, resource.c.deleted.is_(False))
        ).all()
    return [jsonutil.loads(r.content) for r in rows]


def versions(database: Database) -> dict[str, int]:
    with database.engine.connect() as conn:
        rows = conn.execute(resource.select()).all()
    return {f"{r.res_type}/{r.res_id}": r.version for r in rows if r.res_type != "AuditEvent"}


def audit_count(database: Database) -> int:
    with database.engine.connect() as conn:
        return len(conn.execute(resource.select().where(resource.c.res_type == "AuditEvent")).all())
