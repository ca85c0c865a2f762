"""Every access is in the audit trail (issue 4, Audit): reads, searches, writes and refusals."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.audit.events import audit_event_for
from fhir_gateway.audit.store import PreparedAudit, insert_audit_events, prepare_audit_events
from fhir_gateway.audit.writer import PREPARE_STEP, AuditWriter, prepared_in_steps
from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.scopes import parse_scopes
from fhir_gateway.settings import Settings
from fhir_gateway.storage.bulk import JSON_ROWS_UNDER
from fhir_gateway.storage.database import Database
from tests.conftest import ClientFactory
from tests.support.auth import issue_token, register_client

FHIR = "application/fhir+json"


def _events(fhir: TestClient, **params: str) -> list[dict[str, object]]:
    bundle = fhir.get("/fhir/AuditEvent", params={"_count": "100", **params}).json()
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def test_read_search_and_write_are_audited(fhir: TestClient) -> None:
    patient = fhir.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR}
    ).json()
    fhir.get(f"/fhir/Patient/{patient['id']}")
    fhir.get("/fhir/Patient", params={"name": "Martin"})
    events = _events(fhir)
    subtypes = sorted(e["subtype"][0]["code"] for e in events)  # type: ignore[index]
    assert subtypes == ["create", "read", "search-type"]
    read = next(e for e in events if e["subtype"][0]["code"] == "read")  # type: ignore[index]
    assert read["outcome"] == "0"
    assert any(ent.get("what", {}).get("reference") == f"Patient/{patient['id']}" for ent in read["entity"])  # type: ignore[union-attr, attr-defined]


def test_a_search_is_audited_with_its_query_personal_values_masked(fhir: TestClient) -> None:
    """The query's text in the event: its parameters in the request's order, values of
    person-identifying ones replaced (``audit.events.masked_query``), others as sent."""
    fhir.get(
        "/fhir/Patient?family=Lef%C3%A8vre&gender=female&_count=5&birthdate=ge1940-01-01&name:contains=Gh"
    )
    (event,) = [e for e in _events(fhir) if e["subtype"][0]["code"] == "search-type"]  # type: ignore[index]
    (query,) = [entity["query"] for entity in event["entity"] if "query" in entity]  # type: ignore[attr-defined]
    assert base64.b64decode(query).decode() == (
        "Patient?family=***&gender=female&_count=5&birthdate=***&name:contains=***"
    )


def test_refused_read_is_audited_as_a_denial(fhir: TestClient, make_client: ClientFactory) -> None:
    patient = fhir.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR}
    ).json()
    partner = make_client("system/*.rs", organization="Organization/saad")
    assert partner.get(f"/fhir/Patient/{patient['id']}").status_code == 404
    denials = [e for e in _events(fhir) if e["outcome"] == "4"]
    assert len(denials) == 1
    assert denials[0]["agent"][0]["who"]["reference"] == "Organization/saad"  # type: ignore[index]


@pytest.mark.real_clock  # the writer thread's timed waits
def test_batched_writer_writes_after_the_response(settings: Settings, database: Database) -> None:
    app: FastAPI = create_app(
        settings.model_copy(update={"audit_mode": "batched", "audit_flush_seconds": 0.05}), database
    )
    with TestClient(app) as client:
        client_id, secret = register_client(database, "batched", "system/*.cruds", trusted=True)
        client.headers["Authorization"] = f"Bearer {issue_token(client, client_id, secret)}"
        client.get("/fhir/Patient/unknown-but-audited")
        client.get("/fhir/Patient", params={"_id": "x"})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and app.state.audit_writer.pending():
            time.sleep(0.02)
        time.sleep(0.1)
        events = _events(client)
    assert [e["subtype"][0]["code"] for e in events] == ["search-type"]  # type: ignore[index]


def test_batched_writer_flushes_on_shutdown(settings: Settings, database: Database) -> None:
    """Events still waiting when the server stops are written, not lost (thread or loop task)."""
    app: FastAPI = create_app(
        settings.model_copy(update={"audit_mode": "batched", "audit_flush_seconds": 60}), database
    )
    with TestClient(app) as client:
        client_id, secret = register_client(database, "stopping", "system/*.cruds", trusted=True)
        client.headers["Authorization"] = f"Bearer {issue_token(client, client_id, secret)}"
        for _ in range(3):
            assert client.get("/fhir/Patient", params={"_id": "x"}).status_code == 200
        assert app.state.audit_writer.pending() == 3
    with database.transaction() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM resource WHERE res_type = 'AuditEvent' AND content LIKE :kind"),
            {"kind": "%search-type%"},
        ).scalar_one()
    assert stored == 3


def test_a_large_batch_isprepared_in_steps_the_event_loop_serves_between(database: Database) -> None:
    """Turning a few hundred events into rows takes tens of milliseconds: done in steps, other
    tasks of the server's loop (requests) run between them; the rows are those of one go."""
    events = [
        audit_event_for(_caller(), "read", "Patient", f"p{n}", f"p{n}", True, "trusted client", None)
        for n in range(4 * PREPARE_STEP + 3)
    ]
    turns: list[int] = []

    async def scenario() -> tuple[PreparedAudit, int]:
        async def request() -> None:
            while True:
                turns.append(len(turns))
                await asyncio.sleep(0)

        other = asyncio.create_task(request())
        await asyncio.sleep(0)
        before = len(turns)
        prepared = await prepared_in_steps(events)
        during = len(turns) - before
        other.cancel()
        return prepared, during

    prepared, during = asyncio.run(scenario())
    assert during >= 4  # the other task ran between the steps
    at_once = prepare_audit_events(events)
    assert prepared.ids == at_once.ids == [e["id"] for e in events]
    assert [(t.name, len(rows)) for t, rows in prepared.parts] == [(t.name, len(r)) for t, r in at_once.parts]


def test_a_batch_over_the_json_threshold_is_stored_whole_and_searchable(
    database: Database, fhir: TestClient
) -> None:
    count = JSON_ROWS_UNDER + 20  # its index rows are ten times that
    events = [
        audit_event_for(_caller(), "read", "Patient", f"p{n}", f"p{n}", True, "trusted client", None)
        for n in range(count)
    ]

    async def write() -> list[str]:
        prepared = await prepared_in_steps(events)
        return await database.run(lambda conn: insert_audit_events(conn, prepared), write=True)

    assert asyncio.run(write()) == [e["id"] for e in events]
    found = fhir.get("/fhir/AuditEvent", params={"patient": "Patient/p7", "subtype": "read"}).json()
    matches = [e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "match"]
    assert matches == [events[7]["id"]]
    total = fhir.get("/fhir/AuditEvent", params={"entity-type": "1", "_summary": "count"}).json()["total"]
    assert total >= count


def _caller() -> AccessContext:
    return AccessContext(
        client_id="audit-test",
        scopes=parse_scopes("system/*.cruds"),
        organization=None,
        practitioner=None,
        trusted=True,
        patient=None,
        purpose="TREAT",
        break_glass=None,
        raw_scope="system/*.cruds",
        verify_client=False,
    )


def test_events_arriving_during_a_write_wait_for_the_next_tick(database: Database) -> None:
    """They go with the next batch, not each few in a transaction of their own; the final
    flush at shutdown still writes everything."""
    writer = AuditWriter(database, interval=3600)
    first = [_read_event(n) for n in range(2 * PREPARE_STEP + 1)]
    late = [_read_event(n) for n in range(100, 103)]

    async def scenario() -> tuple[int, int]:
        writer.submit(first)

        async def request() -> None:
            writer.submit(late)  # while the batch is prepared

        flushing = asyncio.create_task(writer._flush_in_loop())
        await asyncio.create_task(request())
        await flushing
        waiting = writer.pending()
        await writer._flush_in_loop(drain=True)
        return waiting, writer.pending()

    assert asyncio.run(scenario()) == (len(late), 0)
    with database.transaction() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM resource WHERE res_type = 'AuditEvent'")
        ).scalar_one()
    assert stored == len(first) + len(late)


def _read_event(n: int) -> dict[str, object]:
    return audit_event_for(_caller(), "read", "Patient", f"p{n}", f"p{n}", True, "trusted client", None)


def _transaction(fhir: TestClient, entries: list[dict[str, object]]) -> int:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return fhir.post("/fhir", json=bundle, headers={"Content-Type": FHIR}).status_code


def _task_entry(person: str, n: int) -> dict[str, object]:
    task = {"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": person}}
    return {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}", "resource": task,
            "request": {"method": "POST", "url": "Task"}}  # fmt: skip


def _person_of(event: dict[str, Any]) -> str:
    return next(e["what"]["reference"] for e in event["entity"] if e["role"]["code"] == "1")


def _written_by(event: dict[str, Any]) -> list[str]:
    return [e["what"]["reference"] for e in event["entity"] if e["role"]["code"] == "4"]


def test_a_transaction_is_audited_once_per_person_and_interaction_with_every_resource(
    fhir: TestClient,
) -> None:
    """http.html#transaction: one interaction; its writes are audited per person (audit.grouped)."""
    people = [
        fhir.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR}).json()[
            "id"
        ]
        for _ in range(2)
    ]
    entries = [_task_entry(f"Patient/{people[n % 2]}", n) for n in range(6)]
    entries.append(
        {
            "resource": {"resourceType": "Patient", "id": people[0], "active": True},
            "request": {"method": "PUT", "url": f"Patient/{people[0]}"},
        }  # fmt: skip
    )
    assert _transaction(fhir, entries) == 200
    grouped: list[dict[str, Any]] = _events(
        fhir, subtype="http://hl7.org/fhir/restful-interaction|transaction"
    )
    by_key = {(e["subtype"][0]["code"], _person_of(e)): e for e in grouped}
    assert sorted(by_key) == sorted(
        [("create", f"Patient/{p}") for p in people] + [("update", f"Patient/{people[0]}")]
    )
    for person in people:
        created = by_key[("create", f"Patient/{person}")]
        tasks = _written_by(created)
        assert len(tasks) == 3
        assert all(t.startswith("Task/") for t in tasks)
        assert (created["action"], created["outcome"]) == ("C", "0")
        assert [e["id"] for e in _events(fhir, entity=tasks[0])] == [
            created["id"]
        ]  # the Task finds its event


def test_a_rolled_back_transaction_audits_no_write_as_done(fhir: TestClient) -> None:
    person = fhir.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR}
    ).json()
    entries = [_task_entry(f"Patient/{person['id']}", n) for n in range(3)]
    entries.append({"resource": {"resourceType": "Patient", "birthDate": "not a date"},
                    "request": {"method": "POST", "url": "Patient"}})  # fmt: skip
    assert _transaction(fhir, entries) in (400, 422)
    writes = [e for e in _events(fhir) if e["subtype"][0]["code"] in ("create", "update")]  # type: ignore[index]
    assert [_written_by(e) or [_person_of(e)] for e in writes] == [
        [f"Patient/{person['id']}"]
    ]  # its own create
