"""A large import refreshes the planner's statistics once committed (``storage.statistics``):
over HTTP and from the CLI, on SQLite and PostgreSQL; a small one leaves them to autovacuum."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.statistics import SQLITE_FIRST_ROWS
from tests.mappings.conftest import SAAD, SAMPLES, CliRun
from tests.support.databases import engine_kind, forget_statistics, sqlite_statistics

BENEFICIARIES = SAMPLES / "saad-beneficiaires.csv"  # 6 persons: 6 Patients, CareTeams...


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
    forget_statistics(database)
    settings.analyze_after_rows = 5
    _import_over_http(fhir)
    assert _analysed(database)


@pytest.mark.usefixtures("organizations")
def test_a_small_import_leaves_them_to_autovacuum(
    fhir: TestClient, settings: Settings, database: Database
) -> None:
    forget_statistics(database)
    assert settings.analyze_after_rows == 5000
    _import_over_http(fhir)
    assert not _analysed(database)


@pytest.mark.usefixtures("organizations")
def test_the_import_command_refreshes_them_too(
    cli: CliRun, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    forget_statistics(database)
    monkeypatch.setenv("FHIR_GATEWAY_ANALYZE_AFTER_ROWS", "5")
    assert cli("import", "saad-beneficiaires", str(BENEFICIARIES), "--organization", SAAD).exit_code == 0
    assert _analysed(database)


# (a first import creates: its versions are resource rows only, ``resource_history`` stays empty)
STORE_TABLES_WRITTEN = (
    "resource",
    "idx_token",
    "idx_reference",
    "idx_string",
    "idx_date",
)


@pytest.mark.usefixtures("organizations")
def test_the_import_command_analyses_every_table_it_wrote(
    cli: CliRun, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the tables go in two groups analysed at once (``refresh_statistics_of``):
    each of them, whichever group it is in, has statistics counting its rows."""
    forget_statistics(database)
    monkeypatch.setenv("FHIR_GATEWAY_ANALYZE_AFTER_ROWS", "5")
    assert cli("import", "saad-beneficiaires", str(BENEFICIARIES), "--organization", SAAD).exit_code == 0
    with database.engine.connect() as conn:
        for table in STORE_TABLES_WRITTEN:
            rows = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            assert rows > 0, table
            if database.dialect == "postgresql":
                query = "SELECT reltuples FROM pg_class WHERE relname = :t"
                assert conn.execute(text(query), {"t": table}).scalar_one() == rows, table
            else:
                query = "SELECT stat FROM sqlite_stat1 WHERE tbl = :t LIMIT 1"
                stat = conn.execute(text(query), {"t": table}).scalar()
                assert stat is not None, table
                assert int(str(stat).split()[0]) == rows, table


@pytest.mark.usefixtures("organizations")
def test_a_dry_run_writes_nothing_and_analyses_nothing(
    fhir: TestClient, settings: Settings, database: Database
) -> None:
    forget_statistics(database)
    settings.analyze_after_rows = 1
    _import_over_http(fhir, **{"dry-run": "true"})
    assert not _analysed(database)


def _people(fhir: TestClient, count: int) -> None:
    entries = [
        {
            "resource": {"resourceType": "Patient", "active": True},
            "request": {"method": "POST", "url": "Patient"},
        }
        for _ in range(count)
    ]
    assert (
        fhir.post(
            "/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
        ).status_code
        == 200
    )


@pytest.mark.skipif(engine_kind() != "sqlite", reason="PostgreSQL's autovacuum analyses what is committed")
@pytest.mark.usefixtures("organizations")
@pytest.mark.parametrize(("people", "analysed"), [(SQLITE_FIRST_ROWS, True), (10, False)])
def test_an_import_into_a_sqlite_store_never_analysed_analyses_it_first(
    cli: CliRun, fhir: TestClient, database: Database, people: int, analysed: bool
) -> None:
    """Its lookups are then planned with statistics; the import itself is too small to be analysed after."""
    forget_statistics(database)
    _people(fhir, people)
    assert cli("import", "saad-beneficiaires", str(BENEFICIARIES), "--organization", SAAD).exit_code == 0
    assert (sqlite_statistics(database) is not None) is analysed


@pytest.mark.skipif(engine_kind() != "sqlite", reason="PostgreSQL's autovacuum analyses what is committed")
@pytest.mark.usefixtures("organizations")
def test_so_does_one_over_http(fhir: TestClient, database: Database) -> None:
    forget_statistics(database)
    _people(fhir, SQLITE_FIRST_ROWS)
    _import_over_http(fhir)
    assert sqlite_statistics(database) is not None
