"""A person's search tests its token criteria on the rows' own ``tokens`` (``search.row_tokens``,
FHIR R4 search.html#token): every token form answers as through the index rows, for rows with
their terms and for rows without (stored before migration 0014, or whose values cannot be terms),
after updates, and for the rows the upgrade fills."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, select, update
from starlette.testclient import TestClient

from fhir_gateway.search.indexing import extract_index_rows
from fhir_gateway.search.row_tokens import TS, tokens_of
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import alembic_config, upgrade
from fhir_gateway.storage.tables import idx_token, resource
from tests.operations.support import put
from tests.support.databases import temporary_database_url

CODES = "urn:fhir-gateway:test:codes"
VISITS = "urn:fhir-gateway:test:visits"


def _task(
    task_id: str, person: str, status: str, coding: dict[str, str], visit: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "status": status,
        "intent": "order",
        "code": {"coding": [coding]},
        "for": {"reference": f"Patient/{person}"},
    }
    if visit is not None:
        body["identifier"] = [{"system": VISITS, "value": visit}]
    return body


def _ids(fhir: TestClient, query: str) -> list[str]:
    response = fhir.get(f"/fhir/Task?{query}")
    assert response.status_code == 200, response.text
    return sorted(e["resource"]["id"] for e in response.json().get("entry", []))


@pytest.fixture
def tasks(fhir: TestClient) -> TestClient:
    for person in ("p1", "p2"):
        put(fhir, {"resourceType": "Patient", "id": person})
    toilette = {"system": CODES, "code": "toilette", "display": "Aide à la toilette"}
    put(fhir, _task("t1", "p1", "requested", toilette, visit="V1"))
    put(fhir, _task("t2", "p1", "accepted", {"code": "toilette"}))
    put(fhir, _task("t3", "p1", "completed", {"system": CODES, "code": "repas"}, visit="V3"))
    put(fhir, _task("t4", "p2", "requested", {"system": CODES, "code": "toilette"}, visit="V1"))
    return fhir


# (query after ``patient=Patient/p1&``, the Tasks of p1 it must answer)
PERSON_SEARCHES = [
    ("status=requested", ["t1"]),
    ("status=requested,accepted", ["t1", "t2"]),
    ("status:not=completed", ["t1", "t2"]),
    ("status:not=requested,accepted", ["t3"]),
    ("status=cancelled", []),
    ("code=toilette", ["t1", "t2"]),  # any system
    (f"code={CODES}|toilette", ["t1"]),
    ("code=|toilette", ["t2"]),  # no system
    (f"code={CODES}|", ["t1", "t3"]),  # any code of the system
    (f"code={CODES}|toilette,|toilette", ["t1", "t2"]),
    (f"identifier={VISITS}|V1", ["t1"]),
    ("identifier=V3", ["t3"]),
    ("status=requested&code=repas", []),
    ("status=completed&code=repas", ["t3"]),
    ("status=requested&status=accepted", []),  # AND of two values of one parameter
    ("code:text=aide", ["t1"]),  # not a term: the index rows answer
    ("identifier:missing=true", ["t2"]),
]


@pytest.mark.parametrize(("query", "expected"), PERSON_SEARCHES)
def test_a_person_s_search_by_token(tasks: TestClient, query: str, expected: list[str]) -> None:
    assert _ids(tasks, f"patient=Patient/p1&{query}") == expected


def test_rows_without_tokens_are_answered_from_the_index(tasks: TestClient, database: Database) -> None:
    """Rows stored before migration 0014 filled them (or whose values cannot be terms): NULL."""
    with database.transaction(write=True) as conn:
        conn.execute(update(resource).where(resource.c.res_id.in_(["t1", "t3"])).values(tokens=None))
    for query, expected in PERSON_SEARCHES:
        assert _ids(tasks, f"patient=Patient/p1&{query}") == expected, query


def test_an_update_moves_the_row_to_its_new_values(tasks: TestClient) -> None:
    put(tasks, _task("t1", "p1", "completed", {"system": CODES, "code": "repas"}))
    assert _ids(tasks, "patient=Patient/p1&status=requested") == []
    assert _ids(tasks, "patient=Patient/p1&status=completed") == ["t1", "t3"]
    assert _ids(tasks, f"patient=Patient/p1&identifier={VISITS}|V1") == []
    deleted = tasks.delete("/fhir/Task/t3")
    assert deleted.status_code in (200, 204), deleted.text
    assert _ids(tasks, "patient=Patient/p1&status=completed") == ["t1"]


def test_a_value_that_could_reach_across_terms_finds_nothing(tasks: TestClient) -> None:
    """A searched code holding the terms' separator cannot join two stored terms into one."""
    response = tasks.get(
        "/fhir/Task", params={"patient": "Patient/p1", "status": f"requested{TS}code\x1ftoilette"}
    )
    assert response.status_code == 200, response.text
    assert response.json().get("entry", []) == []


def test_the_terms_of_a_resource() -> None:
    rows = extract_index_rows(_task("t", "p", "requested", {"system": CODES, "code": "toilette"}, visit="V1"))
    terms = tokens_of(rows)
    assert terms is not None
    assert terms.startswith(TS)
    assert terms.endswith(TS)
    assert set(terms.strip(TS).split(TS)) >= {
        "status\x1frequested",
        "status\x1e\x1erequested",
        "code\x1ftoilette",
        f"code\x1e{CODES}\x1etoilette",
        f"identifier\x1e{VISITS}\x1eV1",
    }
    assert tokens_of({}) == TS  # no token value: found by no token criterion
    system_only = {"token": [{"param": "identifier", "system": VISITS, "code": None}]}
    assert tokens_of(system_only) == f"{TS}identifier\x1e{VISITS}\x1e{TS}"
    for unfit in (f"a{TS}b", "a\x1fb", "a\x1eb", "a\x1db", ""):
        assert tokens_of({"token": [{"param": "status", "system": None, "code": unfit}]}) is None


def test_migration_0014_fills_the_stored_rows(tmp_path: Path) -> None:
    task = _task("t1", "p1", "requested", {"system": CODES, "code": "toilette"}, visit="V1")
    rows = extract_index_rows(task)
    row = {"version": 1, "deleted": False, "method": "POST", "last_updated": datetime(2026, 1, 1)}
    with temporary_database_url(tmp_path) as url:
        database = Database(url)
        try:
            upgrade(database, "0013")
            with database.transaction(write=True) as conn:
                conn.execute(
                    insert(resource),
                    [
                        {**row, "res_type": "Task", "res_id": "t1", "content": "{}", "patient_id": "p1"},
                        {**row, "res_type": "Patient", "res_id": "p1", "content": "{}", "patient_id": "p1"},
                        {
                            **row,
                            "res_type": "AuditEvent",
                            "res_id": "a1",
                            "content": "{}",
                            "patient_id": "p1",
                        },
                    ],
                )
                conn.execute(
                    insert(idx_token),
                    [{**r, "res_type": "Task", "res_id": "t1", "display": None} for r in rows["token"]],
                )
            upgrade(database, "0014")
            with database.transaction() as conn:
                filled = dict(conn.execute(select(resource.c.res_id, resource.c.tokens)).all())
            command.downgrade(alembic_config(url), "0013")
        finally:
            database.dispose()
    expected = tokens_of(rows)
    assert expected is not None
    assert filled["t1"] is not None
    assert sorted(filled["t1"].split(TS)) == sorted(expected.split(TS))  # in any order
    assert (filled["p1"], filled["a1"]) == (TS, None)


def test_the_terms_of_a_row_answer_for_it(tasks: TestClient, database: Database) -> None:
    """A person's search reads the row's terms, not its index rows, when the row has them."""
    with database.transaction(write=True) as conn:
        conn.execute(update(resource).where(resource.c.res_id == "t1").values(tokens=TS))
    assert _ids(tasks, "patient=Patient/p1&status=requested") == []
    assert _ids(tasks, "status=requested") == ["t1", "t4"]  # no person: the index rows
