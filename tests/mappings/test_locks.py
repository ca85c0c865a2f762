"""A large import holds one advisory lock, not one per row (PostgreSQL's lock table is bounded
by max_locks_per_transaction; 100,000 rows in one transaction must not exhaust it)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from fhir_gateway.fhir.context import unit_of_work
from fhir_gateway.mapping.commands import _access
from fhir_gateway.mapping.importer import ImportOptions
from fhir_gateway.mapping.service import find_format, import_file
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from tests.mappings.conftest import SAAD, SAMPLES


def test_one_advisory_lock_per_import(database: Database, settings: Settings, organizations: None) -> None:
    if database.dialect != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's")
    fmt = find_format(settings, "saad-beneficiaires", "import")
    access = _access("test:import", SAAD)
    with (
        unit_of_work(database, settings, access, write=True, audit_sink=lambda _e: None) as ctx,
        (SAMPLES / "saad-beneficiaires.csv").open("rb") as handle,
    ):
        summary = import_file(ctx, fmt, handle, SAAD, ImportOptions())
        assert summary.created == 6
        held = ctx.conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        ).scalar_one()
    assert held == 1
