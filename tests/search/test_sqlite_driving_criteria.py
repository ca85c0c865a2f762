"""SQLite starts a search on a selective parameter (a business identifier, a reference that
cannot point at an actor) from the index rows holding the value (``search.compiler.driving_clause``)
instead of testing every resource of the type; the answers are those of the criterion alone (a
redundant condition), with OR-ed values, without system, with other criteria, and ``:not`` (never a
starting point) still excludes. A reference to an actor (the organisation owning every Task) is no
starting point: the scan in id order stops at the page's end."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import ColumnElement, true
from starlette.testclient import TestClient

from fhir_gateway.search.parser import parse_search
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.search_repository import execute_search
from fhir_gateway.storage.statistics import SqliteStatistics
from tests.support.databases import engine_kind

SYSTEM = "urn:x:visits"


def _seed(fhir: TestClient, count: int = 300) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Task",
                    "identifier": [{"system": SYSTEM, "value": f"v{n}"}],
                    "status": "requested" if n % 2 else "completed",
                    "intent": "order",
                    "partOf": [{"reference": f"Task/parent-{n % 50}"}],
                    "owner": {"reference": "Organization/the-service"},
                },
                "request": {"method": "POST", "url": "Task"},
            }
            for n in range(count)
        ],
    }
    assert fhir.post("/fhir", json=bundle).status_code == 200


def _analysed(database: Database) -> None:
    """Statistics of what the store holds now, as the server's statistics loop makes them once
    it holds 100 resources (``storage.statistics``); not those an earlier test left."""
    if database.dialect != "sqlite":
        return
    with database.transaction(write=True) as conn:
        SqliteStatistics().refresh(conn, SqliteStatistics.resource_rows(conn))


def _values(fhir: TestClient, **params: Any) -> list[str]:
    answer = fhir.get("/fhir/Task", params={**params, "_count": 1000})
    assert answer.status_code == 200, answer.text
    return sorted(e["resource"]["identifier"][0]["value"] for e in answer.json().get("entry", []))


def test_identifier_searches_answer_as_the_criterion_says(fhir: TestClient) -> None:
    _seed(fhir)
    assert _values(fhir, identifier=f"{SYSTEM}|v42") == ["v42"]
    assert _values(fhir, identifier="v42") == ["v42"]
    assert _values(fhir, identifier=f"{SYSTEM}|v41,{SYSTEM}|v42") == ["v41", "v42"]
    assert _values(fhir, identifier=f"{SYSTEM}|v41,{SYSTEM}|v42", status="completed") == ["v42"]
    assert _values(fhir, identifier="urn:other|v42") == []
    assert len(_values(fhir, **{"identifier:not": f"{SYSTEM}|v42"})) == 299
    assert fhir.get("/fhir/Task", params={"identifier": f"{SYSTEM}|v7", "_id": "nope"}).json()["total"] == 0
    assert _values(fhir, **{"part-of": "Task/parent-7", "status": "requested"}) == [
        f"v{n}" for n in sorted(range(7, 300, 50), key=str) if n % 2
    ]
    assert len(_values(fhir, owner="Organization/the-service")) == 300


class _Everyone:
    def visible(self, alias: Any, res_type: str | None) -> ColumnElement[bool]:
        return true()

    def visible_key(self) -> str:
        return "everyone"

    def visible_of_person(self, alias: Any, res_type: str, person: ColumnElement[Any]) -> ColumnElement[bool]:
        return true()


def _plan(database: Database, res_type: str, items: list[tuple[str, str]]) -> list[str]:
    """SQLite's plan of the page query ``execute_search`` runs for ``items``."""
    request = parse_search(res_type, items, default_count=20, max_count=100, strict=False)
    with database.transaction() as conn:
        raw = conn.connection.dbapi_connection
        statements: list[str] = []
        raw.set_trace_callback(statements.append)  # type: ignore[union-attr]
        try:
            execute_search(conn, request, _Everyone(), 100)
        finally:
            raw.set_trace_callback(None)  # type: ignore[union-attr]
        page = next(s for s in statements if s.startswith("SELECT resource.res_type"))
        return [row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + page)]  # type: ignore[union-attr]


BY_KEY = "SEARCH resource USING INDEX sqlite_autoindex_resource_1 (res_type=? AND res_id=?)"


@pytest.mark.skipif(engine_kind() != "sqlite", reason="PostgreSQL plans an EXISTS as a join")
def test_sqlite_starts_from_the_index_of_a_selective_parameter(fhir: TestClient, database: Database) -> None:
    _seed(fhir)
    _analysed(database)
    # each Task by its key, from the list the index gives; not every Task tested in turn
    plan = _plan(database, "Task", [("identifier", f"{SYSTEM}|v42")])
    assert plan[0] == BY_KEY, plan
    assert any(step.startswith("SEARCH idx_token_driver USING INDEX") for step in plan), plan
    plan = _plan(database, "Task", [("part-of", "Task/parent-7"), ("status", "requested")])
    assert plan[0] == BY_KEY, plan
    assert any(step.startswith("SEARCH idx_reference_driver USING INDEX") for step in plan), plan
    plan = _plan(database, "Task", [("owner", "Organization/the-service")])
    assert not any("_driver" in step for step in plan), plan
