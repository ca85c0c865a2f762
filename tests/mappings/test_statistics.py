"""A large import refreshes the planner's statistics once committed (``storage.statistics``):
over HTTP and from the CLI, on SQLite and PostgreSQL; a small one leaves them to autovacuum."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from tests.mappings.conftest import SAAD, SAMPLES, CliRun

BENEFICIARIES = SAMPLES / "saad-beneficiaires.csv"  # 6 persons: 6 Patients, CareTeams...


def _forget_statistics(database: Database) -> None:
    with database.engine.begin() as conn:
        if database.dialect == "postgresql":
            return  # emptying the tables between tests resets their row estimate (reltuples -1)
        if conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
            conn.execute(text("DELETE FROM sqlite_stat1"))


def _analysed(database: Database) -> bool:
    """The store's main table has statistics that count its rows."""
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM resource")).scalar_one()
        if database.dialect == "postgresql":
            estimate = conn.execute(
                text("SELECT reltuples FROM pg_class WHERE relname = 'resource'")
            ).scalar_one()
            return bool(rows > 0 and estimate == rows)
        if not conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
            return False
        stat = conn.execute(text("SELECT stat FROM sqlite_stat1 WHERE tbl = 'resource' LIMIT 1")).scalar()
        return bool(rows > 0 and stat is not None and int(str(stat).split()[0]) == rows)


def _import_over_http(fhir: TestClient, **params: str) -> None:
    answer = fhir.post(
        "/fhir/$import-partner",
        params={"format": "saad-beneficiaires", "organization": SAAD, **params},
        content=BENEFICIARIES.read_bytes(),
        headers={"Content-Type": "text/csv"},
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.usefixtures("organizations")
def test_an_import_over_the_threshold_refreshes_the_statistics(
    fhir: TestClient, settings: Settings, database: Database
) -> None:
    _forget_statistics(database)
    settings.analyze_after_rows = 5
    _import_over_http(fhir)
    assert _analysed(database)


@pytest.mark.usefixtures("organizations")
def test_a_small_import_leaves_them_to_autovacuum(
    fhir: TestClient, settings: Settings, database: Database
) -> None:
    _forget_statistics(database)
    assert settings.analyze_after_rows == 5000
    _import_over_http(fhir)
    assert not _analysed(database)


@pytest.mark.usefixtures("organizations")
def test_the_import_command_refreshes_them_too(
    cli: CliRun, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forget_statistics(database)
    monkeypatch.setenv("FHIR_GATEWAY_ANALYZE_AFTER_ROWS", "5")
    assert cli("import", "saad-beneficiaires", str(BENEFICIARIES), "--organization", SAAD).exit_code == 0
    assert _analysed(database)


@pytest.mark.usefixtures("organizations")
def test_a_dry_run_writes_nothing_and_analyses_nothing(
    fhir: TestClient, settings: Settings, database: Database
) -> None:
    _forget_statistics(database)
    settings.analyze_after_rows = 1
    _import_over_http(fhir, **{"dry-run": "true"})
    assert not _analysed(database)
