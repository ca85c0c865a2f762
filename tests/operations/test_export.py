"""Bulk ``$export`` (FHIR Bulk Data Access IG v2): asynchronous kick-off, status, files, cancel;
what a partner gets is what the persons' consent lets it see when the job runs."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from fhir_gateway.exports.worker import ExportWorker
from fhir_gateway.settings import Settings
from fhir_gateway.storage import client_repository, export_repository
from fhir_gateway.storage.database import Database
from tests.conftest import ClientFactory
from tests.operations.support import DAC, SAAD, audit_events, deny, organization, permit, person, put
from tests.support.auth import issue_token, register_client

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database.url,
        base_url="http://testserver",
        audit_mode="sync",
        subscription_worker_in_serve=False,
        export_worker_in_serve=False,
        export_dir=str(tmp_path / "exports"),
        export_file_max_resources=3,  # Task files split
        export_page_size=2,  # several pages (and lease renewals) per type
    )


@pytest.fixture
def worker(app: FastAPI, database: Database, settings: Settings) -> Iterator[ExportWorker]:
    running = ExportWorker(database, settings, audit_sink=app.state.audit_writer.submit)
    yield running
    running.stop()


@pytest.fixture
def saad(make_client: ClientFactory) -> TestClient:
    return make_client("system/*.rs", organization=SAAD, headers={"X-Purpose-Of-Use": "TREAT"})


def kick_off(client: TestClient, path: str = "/fhir/$export", **params: str) -> str:
    """The status URL (path) of a new job."""
    response = client.get(path, params=params, headers=ASYNC)
    assert response.status_code == 202, response.text
    return response.headers["Content-Location"].replace("http://testserver", "")


def export(
    client: TestClient, worker: ExportWorker, path: str = "/fhir/$export", **params: str
) -> dict[str, Any]:
    """Kick off, run the job, and answer the manifest."""
    status = kick_off(client, path, **params)
    assert client.get(status).status_code == 202
    assert worker.run_once() == 1
    response = client.get(status)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Expires" in response.headers
    return dict(response.json())


def contents(client: TestClient, found: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Resources of every file of a manifest, by type, downloaded with ``client``'s token."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in found["output"]:
        response = client.get(item["url"].replace("http://testserver", ""))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert len(lines) == item["count"]
        assert all(r["resourceType"] == item["type"] for r in lines)
        out.setdefault(item["type"], []).extend(lines)
    return out


def refs(by_type: dict[str, list[dict[str, Any]]]) -> set[str]:
    return {f"{t}/{r['id']}" for t, rows in by_type.items() for r in rows}


def test_system_export_writes_ndjson_files_per_type(fhir: TestClient, worker: ExportWorker) -> None:
    organization(fhir, SAAD)
    person(fhir, "p1", tasks=4)
    person(fhir, "p2", tasks=1)
    found = export(fhir, worker)
    assert found["requiresAccessToken"] is True
    assert found["request"].endswith("/fhir/$export")
    assert found["error"] == []
    files = [o["url"].rsplit("/", 1)[1] for o in found["output"] if o["type"] == "Task"]
    assert files == ["Task-1.ndjson", "Task-2.ndjson"]  # 5 Tasks, 3 per file
    exported = contents(fhir, found)
    assert {r["id"] for r in exported["Task"]} == {"p1-t0", "p1-t1", "p1-t2", "p1-t3", "p2-t0"}
    assert sorted(r["id"] for r in exported["Patient"]) == ["p1", "p2"]
    assert [r["id"] for r in exported["Organization"]] == ["saad"]
    assert "AuditEvent" not in exported  # only when _type asks for it


def test_partner_export_is_consent_filtered(fhir: TestClient, saad: TestClient, worker: ExportWorker) -> None:
    organization(fhir, DAC)
    for pid in ("allowed", "refused", "unknown"):
        person(fhir, pid, tasks=2)
    permit(fhir, "allowed", SAAD, "c-allowed")
    deny(fhir, "refused", SAAD, "d-refused")
    system = refs(contents(saad, export(saad, worker)))
    assert system == {
        "Patient/allowed",
        "Task/allowed-t0",
        "Task/allowed-t1",
        "CarePlan/allowed-plan",
        "Consent/c-allowed",
        "Organization/dac",
    }
    patients = refs(contents(saad, export(saad, worker, "/fhir/Patient/$export")))
    assert patients == system - {"Organization/dac"}  # compartments only


def test_consent_is_evaluated_when_the_job_runs(
    fhir: TestClient, saad: TestClient, worker: ExportWorker
) -> None:
    person(fhir, "p1", tasks=1)
    permit(fhir, "p1", SAAD, "c1")
    status = kick_off(saad, "/fhir/Patient/$export")
    revoked = fhir.get("/fhir/Consent/c1").json()
    revoked["status"] = "inactive"
    put(fhir, revoked)
    worker.run_once()
    assert saad.get(status).json()["output"] == []


def test_job_is_bound_to_its_client(
    fhir: TestClient, saad: TestClient, make_client: ClientFactory, worker: ExportWorker
) -> None:
    person(fhir, "p1", tasks=1)
    permit(fhir, "p1", SAAD, "c1")
    status = kick_off(saad)
    colleague = make_client("system/*.rs", organization=SAAD)  # same organisation, another client
    assert colleague.get(status).status_code == 404
    assert fhir.get(status).status_code == 404  # even a trusted one
    worker.run_once()
    found = saad.get(status).json()
    file_url = found["output"][0]["url"].replace("http://testserver", "")
    assert colleague.get(file_url).status_code == 404
    assert colleague.delete(status).status_code == 404
    assert saad.get(file_url).status_code == 200
    assert saad.get("/fhir/$export-status/not-a-job").status_code == 404


def test_type_since_and_transaction_time(fhir: TestClient, worker: ExportWorker) -> None:
    person(fhir, "p1", tasks=2)
    only_tasks = export(fhir, worker, _type="Task")
    assert {o["type"] for o in only_tasks["output"]} == {"Task"}
    assert export(fhir, worker, _since="2999-01-01T00:00:00Z")["output"] == []
    status = kick_off(fhir, _type="Patient")
    put(fhir, {"resourceType": "Patient", "id": "late", "name": [{"family": "after the kick-off"}]})
    worker.run_once()
    found = fhir.get(status).json()
    assert refs(contents(fhir, found)) == {"Patient/p1"}  # "late" comes with the next _since export
    since = found["transactionTime"]
    assert refs(contents(fhir, export(fhir, worker, _type="Patient", _since=since))) == {"Patient/late"}


def test_cancel_stops_the_job_and_drops_its_files(
    fhir: TestClient, worker: ExportWorker, settings: Settings
) -> None:
    person(fhir, "p1", tasks=1)
    waiting = kick_off(fhir)
    assert fhir.delete(waiting).status_code == 202
    assert fhir.get(waiting).status_code == 404
    assert worker.run_once() == 0  # nothing left to run
    status = kick_off(fhir)
    worker.run_once()
    file_url = fhir.get(status).json()["output"][0]["url"].replace("http://testserver", "")
    assert fhir.delete(status).status_code == 202
    assert fhir.get(file_url).status_code == 404
    assert fhir.delete(status).status_code == 404
    assert not (settings.export_path / status.rsplit("/", 1)[1]).exists()


def test_group_export_covers_the_members_the_caller_may_see(
    fhir: TestClient, saad: TestClient, make_client: ClientFactory, worker: ExportWorker
) -> None:
    for pid in ("m1", "m2", "outsider"):
        person(fhir, pid, tasks=1)
    permit(fhir, "m1", SAAD, "c-m1")
    permit(fhir, "outsider", SAAD, "c-outsider")
    deny(fhir, "m2", SAAD, "d-m2")
    group = {
        "resourceType": "Group",
        "id": "caseload",
        "type": "person",
        "actual": True,
        "managingEntity": {"reference": SAAD},
        "member": [{"entity": {"reference": "Patient/m1"}}, {"entity": {"reference": "Patient/m2"}}],
    }
    put(fhir, group)
    exported = refs(contents(saad, export(saad, worker, "/fhir/Group/caseload/$export")))
    assert exported == {"Patient/m1", "Task/m1-t0", "CarePlan/m1-plan", "Consent/c-m1"}
    dac = make_client("system/*.rs", organization=DAC)
    assert dac.get("/fhir/Group/caseload").status_code == 404  # another organisation's list
    assert dac.get("/fhir/Group/caseload/$export", headers=ASYNC).status_code == 404
    assert saad.get("/fhir/Group", params={"member": "Patient/m1"}).json()["total"] == 1


def test_kick_off_checks(fhir: TestClient, make_client: ClientFactory) -> None:
    assert fhir.get("/fhir/$export").status_code == 400  # no Prefer: respond-async
    bad_format = {"_outputFormat": "text/csv"}
    assert fhir.get("/fhir/$export", params=bad_format, headers=ASYNC).status_code == 400
    assert (
        fhir.get("/fhir/$export", params={"_typeFilter": "Task?status=x"}, headers=ASYNC).status_code == 400
    )
    lenient = {**ASYNC, "Prefer": "respond-async, handling=lenient"}
    assert fhir.get("/fhir/$export", params={"_typeFilter": "x"}, headers=lenient).status_code == 202
    assert fhir.get("/fhir/$export", params={"_type": "Observation"}, headers=ASYNC).status_code == 400
    assert fhir.get("/fhir/Group/none/$export", headers=ASYNC).status_code == 404
    tasks_only = make_client("system/Task.rs", trusted=True)
    assert tasks_only.get("/fhir/$export", params={"_type": "Patient"}, headers=ASYNC).status_code == 403
    glass = make_client("system/*.rs", organization="Organization/samu", break_glass=True)
    headers = {**ASYNC, "X-Break-Glass": "urgence"}
    assert glass.get("/fhir/$export", headers=headers).status_code == 403


def test_one_audit_event_per_job_and_per_download(
    fhir: TestClient, saad: TestClient, worker: ExportWorker
) -> None:
    person(fhir, "p1", tasks=4)
    permit(fhir, "p1", SAAD, "c1")
    found = export(saad, worker, _type="Task")
    contents(saad, found)
    mine = [
        e
        for e in audit_events(fhir)
        if e["subtype"][0]["code"] == "operation" and e["agent"][0]["who"].get("reference") == SAAD
    ]
    queries = [next(ent["query"] for ent in e["entity"] if "query" in ent) for e in mine]
    decoded = [base64.b64decode(q).decode() for q in queries]
    assert sum("_operation=export&" in q for q in decoded) == 1
    assert sum("_operation=export-file" in q for q in decoded) == len(found["output"]) == 2


def test_revoked_client_export_fails(
    app: FastAPI, http: TestClient, database: Database, fhir: TestClient, worker: ExportWorker
) -> None:
    person(fhir, "p1", tasks=1)
    client_id, secret = register_client(database, "soon-revoked", "system/*.rs", trusted=True)
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {issue_token(http, client_id, secret)}"
    status = kick_off(client)
    with database.transaction(write=True) as conn:
        client_repository.revoke_client(conn, client_id)
    worker.run_once()
    with database.transaction() as conn:
        job = export_repository.get(conn, status.rsplit("/", 1)[1])
    assert job is not None
    assert job.status == "failed"
    assert job.output == ()
