"""AuditEvents have one version, their ``resource`` row, and no ``resource_history`` rows
(``storage.tables.SINGLE_VERSION_TYPES``): vread, instance, type and system history still
answer as FHIR R4 http.html#vread and #history say, on the test engine."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import func, insert, select
from starlette.testclient import TestClient

from fhir_gateway.fhir.resource_types import APPEND_ONLY_TYPES
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade
from fhir_gateway.storage.tables import SINGLE_VERSION_TYPES, resource_history
from tests.support.databases import temporary_database_url

FHIR = "application/fhir+json"
MOMENT = datetime(2026, 11, 26, 12, 0)


def _audit_history_rows(database: Database) -> int:
    with database.transaction() as conn:
        query = select(func.count()).where(resource_history.c.res_type == "AuditEvent")
        return int(conn.execute(query).scalar_one())


def _history(fhir: TestClient, path: str, **params: str) -> dict[str, object]:
    response = fhir.get(f"/fhir/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_only_append_only_types_are_single_version() -> None:
    assert SINGLE_VERSION_TYPES <= APPEND_ONLY_TYPES


def test_audit_events_are_read_by_version_and_history_without_history_rows(
    fhir: TestClient, database: Database
) -> None:
    created = fhir.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR})
    patient = created.json()
    fhir.get(f"/fhir/Patient/{patient['id']}")
    posted = fhir.post(
        "/fhir/AuditEvent",
        json={
            "resourceType": "AuditEvent",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
            "recorded": "2026-11-26T10:00:00Z",
            "agent": [{"who": {"display": "DUI"}, "requestor": True}],
            "source": {"observer": {"display": "DUI"}},
        },
        headers={"Content-Type": FHIR},
    )
    assert posted.status_code == 201, posted.text
    events = _history(fhir, "AuditEvent", _count="100")["entry"]
    assert len(events) >= 3  # the create, the read and the posted one (this search's comes after)
    assert _audit_history_rows(database) == 0

    for entry in events:  # type: ignore[attr-defined]
        event = entry["resource"]
        vread = fhir.get(f"/fhir/AuditEvent/{event['id']}/_history/1")
        assert vread.status_code == 200
        assert vread.json() == event
        assert vread.headers["ETag"] == 'W/"1"'
        assert fhir.get(f"/fhir/AuditEvent/{event['id']}/_history/2").status_code == 404
        instance = _history(fhir, f"AuditEvent/{event['id']}/_history")
        assert instance["total"] == 1
        assert [e["resource"] for e in instance["entry"]] == [event]  # type: ignore[attr-defined]
        assert instance["entry"][0]["request"] == {"method": "POST", "url": "AuditEvent"}  # type: ignore[index]

    typed = _history(fhir, "AuditEvent/_history", _count="100")
    assert {e["resource"]["id"] for e in typed["entry"]} >= {e["resource"]["id"] for e in events}  # type: ignore[attr-defined]
    assert all(e["resource"]["resourceType"] == "AuditEvent" for e in typed["entry"])  # type: ignore[attr-defined]


def test_system_history_merges_both_tables_newest_first_and_pages_across_them(fhir: TestClient) -> None:
    for n in range(3):
        body = {"resourceType": "Patient", "id": f"sys{n}", "gender": "male"}
        assert fhir.put(f"/fhir/Patient/sys{n}", json=body, headers={"Content-Type": FHIR}).status_code == 201
        fhir.get(f"/fhir/Patient/sys{n}")
    whole = _history(fhir, "_history", _count="1000")
    entries = whole["entry"]
    assert whole["total"] == len(entries)  # type: ignore[arg-type]
    types = {e["resource"]["resourceType"] for e in entries}  # type: ignore[attr-defined]
    assert types == {"Patient", "AuditEvent"}
    stamps = [e["response"]["lastModified"] for e in entries]  # type: ignore[attr-defined]
    assert stamps == sorted(stamps, reverse=True)

    seen: list[str] = []
    page = _history(fhir, "_history", _count="2")
    while True:
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page["entry"]]  # type: ignore[attr-defined]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]  # type: ignore[attr-defined]
        if not following:
            break
        page = fhir.get(following[0]).json()
    # every version listed at first is found by paging: each page's request adds a newer
    # AuditEvent, which only moves the older entries to later pages
    listed = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries]  # type: ignore[attr-defined]
    assert set(listed) <= set(seen)


def test_migration_0008_deletes_audit_history_rows_and_keeps_the_others(tmp_path: Path) -> None:
    with temporary_database_url(tmp_path) as url:
        database = Database(url)
        try:
            upgrade(database, "0007")
            row = {"version": 1, "deleted": False, "method": "POST", "content": "{}", "patient_id": None}
            with database.transaction(write=True) as conn:
                conn.execute(
                    insert(resource_history),
                    [
                        {**row, "res_type": "AuditEvent", "res_id": "a1", "last_updated": MOMENT},
                        {**row, "res_type": "Task", "res_id": "t1", "last_updated": MOMENT},
                    ],
                )
            upgrade(database)
            with database.transaction() as conn:
                kept = conn.execute(select(resource_history.c.res_type)).scalars().all()
        finally:
            database.dispose()
    assert kept == ["Task"]
