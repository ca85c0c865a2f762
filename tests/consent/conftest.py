"""A real database of the engine under test (``FHIR_GATEWAY_TEST_DATABASE``: SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_gateway.storage.database import Database
from fhir_gateway.storage.schema import full_metadata
from tests.support.databases import empty_all_tables, engine_kind, temporary_database_url


@pytest.fixture(scope="session", params=[engine_kind()])
def engine_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One database per engine for the session; every table made by ``metadata.create_all``."""
    tmp: Path = tmp_path_factory.mktemp(f"consent-{request.param}")
    with temporary_database_url(tmp, request.param) as url:
        db = Database(url)
        full_metadata().create_all(db.engine)
        yield db
        db.dispose()


@pytest.fixture
def consent_db(engine_db: Database) -> Iterator[Database]:
    """The engine's database, emptied after the test."""
    yield engine_db
    empty_all_tables(engine_db)
