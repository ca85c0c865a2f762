"""A server on SQLite analyses its store as it grows (``storage.statistics``; SQLite has no
autovacuum), and its pooled connections plan with the new statistics at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade
from fhir_gateway.storage.statistics import SQLITE_FIRST_ROWS, SqliteStatistics, refresh_statistics
from tests.support.databases import engine_kind, forget_statistics, sqlite_statistics

pytestmark = pytest.mark.skipif(engine_kind() != "sqlite", reason="PostgreSQL analyses by autovacuum")

# the form the search compiler gives ``Task?patient=Patient/p7&status=requested,accepted``
SEARCH = (
    "SELECT r.res_id FROM resource r WHERE r.res_type = :t AND r.deleted = 0 AND r.patient_id IN (:p) "
    "AND EXISTS (SELECT 1 FROM idx_token i WHERE i.res_type = :t AND i.res_id = r.res_id "
    "AND i.param = :param AND i.code IN (:c1, :c2)) ORDER BY r.res_id LIMIT :n OFFSET 0"
)
VALUES = {"t": "Task", "p": "p7", "param": "status", "c1": "requested", "c2": "accepted", "n": 20}
PERSON_INDEX = "SEARCH r USING INDEX ix_resource_type_patient (res_type=? AND patient_id=?)"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.sqlite_analyze_interval_seconds = 0.05
    return settings


def _plan(database: Database) -> str:
    with database.transaction() as conn:
        return " / ".join(row[3] for row in conn.execute(text("EXPLAIN QUERY PLAN " + SEARCH), VALUES))


def _tasks(count: int) -> dict[str, object]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Task",
                    "status": "requested" if n % 2 else "completed",
                    "intent": "order",
                    "for": {"reference": f"Patient/p{n % 40}"},
                },
                "request": {"method": "POST", "url": "Task"},
            }
            for n in range(count)
        ],
    }


def test_a_growing_store_is_analysed_and_searches_use_the_person_index(
    fhir: TestClient, database: Database
) -> None:
    forget_statistics(database)
    before = _plan(database)  # a pooled connection, kept through the analysis
    # Without statistics SQLite read every Task of the store in id order, until the person index
    # also gave the id order (migration 0011): it is chosen before any analysis now.
    assert PERSON_INDEX in before, before
    for p in range(40):
        assert (
            fhir.put(f"/fhir/Patient/p{p}", json={"resourceType": "Patient", "id": f"p{p}"}).status_code
            == 201
        )
    assert fhir.post("/fhir", json=_tasks(SQLITE_FIRST_ROWS)).status_code == 200
    deadline = time.monotonic() + 20
    while sqlite_statistics(database, "ix_resource_type_patient") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sqlite_statistics(database, "ix_resource_type_patient") is not None
    after = _plan(database)
    assert PERSON_INDEX in after, after


def test_analysed_again_each_time_the_store_doubles() -> None:
    keeper = SqliteStatistics()
    assert not keeper.due(SQLITE_FIRST_ROWS - 1)
    assert keeper.due(SQLITE_FIRST_ROWS)
    keeper.analysed_rows = 1000
    assert not keeper.due(1999)
    assert keeper.due(2000)


def test_a_read_only_file_is_still_read_after_an_analysis(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "read-only.db"
    writable = Database(f"sqlite:///{path}")
    upgrade(writable)
    writable.dispose()
    with database.transaction(write=True) as conn:
        assert refresh_statistics(conn)  # this process's connections are now to reload theirs
    read_only = Database(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with read_only.transaction() as conn:  # SQLite refuses the reload there: not an error
            assert conn.execute(text("SELECT count(*) FROM resource")).scalar() == 0
    finally:
        read_only.dispose()
