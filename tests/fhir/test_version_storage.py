"""A resource's current version is stored once, its ``resource`` row; ``resource_history`` holds
its earlier versions only (migration 0012; AuditEvents, never changed, have no history row):
vread, instance, type and system history still answer as FHIR R4 http.html#vread and #history
say, on the test engine."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import func, insert, select
from starlette.testclient import TestClient

from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade
from fhir_gateway.storage.tables import resource, resource_history
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


def _history_versions(database: Database, res_type: str, res_id: str) -> list[tuple[int, str, bool]]:
    with database.transaction() as conn:
        h = resource_history
        query = select(h.c.version, h.c.method, h.c.content.is_(None)).where(
            h.c.res_type == res_type, h.c.res_id == res_id
        )
        return sorted((int(v), str(m), bool(empty)) for v, m, empty in conn.execute(query))


def test_every_version_is_stored_once_and_read_back_by_vread_and_history(
    fhir: TestClient, database: Database
) -> None:
    path = "/fhir/Patient/once"
    headers = {"Content-Type": FHIR}
    assert fhir.put(path, json={"resourceType": "Patient", "id": "once"}, headers=headers).status_code == 201
    assert _history_versions(database, "Patient", "once") == []  # version 1 is the resource row only
    body = {"resourceType": "Patient", "id": "once", "gender": "female"}
    assert fhir.put(path, json=body, headers=headers).status_code == 200
    patch = [{"op": "add", "path": "/birthDate", "value": "1940-02-03"}]
    patched = fhir.patch(path, json=patch, headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200, patched.text
    assert fhir.delete(path).status_code in (200, 204)
    again = fhir.put(path, json={"resourceType": "Patient", "id": "once", "gender": "male"}, headers=headers)
    assert again.status_code == 201, again.text
    # the four earlier versions moved to history as they were replaced (the deletion without content)
    assert _history_versions(database, "Patient", "once") == [
        (1, "PUT", False),
        (2, "PUT", False),
        (3, "PATCH", False),
        (4, "DELETE", True),
    ]

    history = _history(fhir, "Patient/once/_history")
    assert history["total"] == 5
    requests = [(e["request"]["method"], "resource" in e) for e in history["entry"]]  # type: ignore[attr-defined]
    assert requests == [("PUT", True), ("DELETE", False), ("PATCH", True), ("PUT", True), ("PUT", True)]
    assert fhir.get(f"{path}/_history/1").json().get("gender") is None
    assert fhir.get(f"{path}/_history/2").json()["gender"] == "female"
    assert fhir.get(f"{path}/_history/3").json()["birthDate"] == "1940-02-03"
    assert fhir.get(f"{path}/_history/4").status_code == 410
    current = fhir.get(f"{path}/_history/5")
    assert current.json()["gender"] == "male"
    assert current.json() == fhir.get(path).json()
    assert fhir.get(f"{path}/_history/6").status_code == 404
    typed = _history(fhir, "Patient/_history", _count="100")
    mine = [e for e in typed["entry"] if e["fullUrl"].endswith("/Patient/once")]  # type: ignore[attr-defined]
    assert [e["response"]["etag"] for e in mine] == ['W/"5"', 'W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']


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


def test_migration_0012_keeps_the_earlier_versions_only_and_the_current_method(tmp_path: Path) -> None:
    history_row = {"deleted": False, "content": "{}", "patient_id": None, "last_updated": MOMENT}
    current_row = {**history_row, "res_type": "Task", "deleted": False}
    with temporary_database_url(tmp_path) as url:
        database = Database(url)
        try:
            upgrade(database, "0011")
            with database.transaction(write=True) as conn:
                conn.execute(
                    insert(resource_history),
                    [
                        {**history_row, "res_type": "Task", "res_id": "t1", "version": 1, "method": "POST"},
                        {**history_row, "res_type": "Task", "res_id": "t1", "version": 2, "method": "PATCH"},
                        {**history_row, "res_type": "Task", "res_id": "t2", "version": 1, "method": "PUT"},
                        {**history_row, "res_type": "Task", "res_id": "t3", "version": 1, "method": "POST"},
                        {
                            **history_row,
                            "res_type": "Task",
                            "res_id": "t2",
                            "version": 2,
                            "method": "DELETE",
                            "deleted": True,
                            "content": None,
                        },
                    ],  # fmt: skip
                )
                conn.execute(
                    resource.insert().values(
                        [
                            {**current_row, "res_id": "t1", "version": 2},
                            {**current_row, "res_id": "t2", "version": 2, "deleted": True},
                            {**current_row, "res_id": "t3", "version": 1},
                        ]
                    )
                )
            upgrade(database)
            with database.transaction() as conn:
                h, r = resource_history, resource
                earlier = conn.execute(select(h.c.res_id, h.c.version, h.c.method).order_by(h.c.res_id)).all()
                methods = conn.execute(select(r.c.res_id, r.c.method).order_by(r.c.res_id)).all()
        finally:
            database.dispose()
    assert [tuple(row) for row in earlier] == [("t1", 1, "POST"), ("t2", 1, "PUT")]
    assert [tuple(row) for row in methods] == [("t1", "PATCH"), ("t2", "DELETE"), ("t3", "POST")]
