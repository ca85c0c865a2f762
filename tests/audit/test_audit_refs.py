"""AuditEvents' reference parameters and ``date`` (FHIR R4 auditevent.html#search) find the same
events on both engines, though on PostgreSQL they are columns of the event's ``audit_terms`` row
(``storage.audit_refs``) and on SQLite generic index rows.

Events of the gateway's own shape and of another (a trusted client's: an agent with a name) are
stored by the audit store; each criterion's expected events come from the events' own reference
index rows (``search.indexing``), so the test holds whichever way an engine keeps them. Every
other kind of search that reads references is exercised: ``_include``, ``_revinclude``, ``_has``,
chains, ``:missing``, ``_sort`` and ``$everything``'s referenced resources.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Table, func, insert, select
from sqlalchemy import table as sa_table
from starlette.testclient import TestClient

from fhir_gateway.audit.store import store_audit_events
from fhir_gateway.search.indexing import extract_index_rows
from fhir_gateway.storage.audit_refs import SEP
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import alembic_config, upgrade
from fhir_gateway.storage.tables import audit_terms, idx_date, idx_reference, resource
from tests.support.databases import temporary_database_url

BASE = "http://testserver/fhir"


def _event(
    n: int, recorded: str, agents: list[dict[str, Any]], what: list[str], **more: Any
) -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "id": f"x-{n}",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "action": "R" if n % 2 == 0 else "C",
        "recorded": recorded,
        "outcome": "0",
        "agent": agents,
        "source": {"site": "fhir-gateway", "observer": {"display": "fhir-gateway"}},
        "entity": [{"what": {"reference": ref}, **_role(ref)} for ref in what],
        **more,
    }


def _role(ref: str) -> dict[str, Any]:
    """The person an event is about has the entity role Patient (their compartment: ``patient_id``)."""
    patient = ref.startswith("Patient/")
    return (
        {"role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}
        if patient
        else {}
    )


def _names(table: Table) -> list[str]:
    return [c.name for c in table.columns]


def _who(ref: str) -> dict[str, Any]:
    return {"who": {"reference": ref}, "requestor": True}


@pytest.fixture
def world(fhir: TestClient, database: Database) -> dict[str, str]:
    """Two people, an organisation and a Task over HTTP; events about them in the audit store."""
    ids: dict[str, str] = {}
    for key, body in {
        "org": {"resourceType": "Organization", "name": "SAAD Les Tilleuls"},
        "p1": {"resourceType": "Patient", "name": [{"family": "Durand"}]},
        "p2": {"resourceType": "Patient", "name": [{"family": "Martin"}]},
    }.items():
        response = fhir.post(f"/fhir/{body['resourceType']}", json=body)
        assert response.status_code == 201, response.text
        ids[key] = response.json()["id"]
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": f"Patient/{ids['p1']}"},
    }
    response = fhir.post("/fhir/Task", json=task)
    assert response.status_code == 201, response.text
    ids["task"] = response.json()["id"]
    org, p1, p2, t1 = (
        f"Organization/{ids['org']}",
        f"Patient/{ids['p1']}",
        f"Patient/{ids['p2']}",
        f"Task/{ids['task']}",
    )
    events = [
        _event(0, "2026-01-01T10:00:00.000Z", [_who(org)], [t1, p1]),
        _event(1, "2026-02-01T10:00:00.000Z", [_who(org)], [p2]),
        _event(
            2,
            "2026-02-15T08:30:00.250Z",
            [{"who": {"identifier": {"value": "bench"}}, "requestor": True}],
            [f"{BASE}/{t1}"],
        ),
        _event(
            3,
            "2026-03-01T00:00:00Z",
            [{**_who(p1), "name": "Madame Durand"}],
            ["urn:uuid:4a1e0c2e-9a63-4f3e-8f0b-0e3a2b1c9d7f"],
        ),
        _event(
            4,
            "2026-04-01",
            [_who("Device/d1")],
            [],
            source={"site": "x", "observer": {"reference": "Device/d1"}},
        ),
    ]
    with database.transaction(write=True) as conn:
        store_audit_events(conn, events)
    ids["events"] = "x-0,x-1,x-2,x-3,x-4"
    return ids


def _found(fhir: TestClient, query: str) -> tuple[list[str], list[str]]:
    """The events (``x-``) a search matches, in order, and the ids of what it includes."""
    response = fhir.get(f"/fhir/{query}&_count=100")
    assert response.status_code == 200, (query, response.text)
    entries = response.json().get("entry", [])
    matched = [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"]
    included = [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in entries
        if e["search"]["mode"] == "include"
    ]
    return [i for i in matched if i.startswith("x-")], sorted(included)


def _expected(events: list[dict[str, Any]], param: str, test: Any) -> list[str]:
    """The events whose ``param`` reference rows pass ``test`` (a row's type, id, url)."""
    found = []
    for event in events:
        rows = [r for r in extract_index_rows(event).get("reference", []) if r["param"] == param]
        if test(rows):
            found.append(event["id"])
    return found


def test_reference_criteria_find_the_events_that_hold_them(
    fhir: TestClient, world: dict[str, str], database: Database
) -> None:
    events = [fhir.get(f"/fhir/AuditEvent/x-{n}").json() for n in range(5)]
    org, p1, t1 = f"Organization/{world['org']}", f"Patient/{world['p1']}", f"Task/{world['task']}"
    urn = "urn:uuid:4a1e0c2e-9a63-4f3e-8f0b-0e3a2b1c9d7f"

    def typed(t: str, i: str) -> Any:
        return lambda rows: any(r.get("target_type") == t and r.get("target_id") == i for r in rows)

    def by_id(i: str) -> Any:
        return lambda rows: any(r.get("target_id") == i for r in rows)

    cases = {
        f"patient={p1}": _expected(events, "patient", typed("Patient", world["p1"])),
        f"patient={world['p1']}": _expected(events, "patient", by_id(world["p1"])),
        f"agent={org}": _expected(events, "agent", typed("Organization", world["org"])),
        f"agent={world['org']}": _expected(events, "agent", by_id(world["org"])),
        f"entity={t1}": _expected(events, "entity", typed("Task", world["task"])),
        f"entity={world['task']}": _expected(events, "entity", by_id(world["task"])),
        f"entity:Task={world['task']}": _expected(events, "entity", typed("Task", world["task"])),
        f"entity={BASE}/{t1}": _expected(
            events,
            "entity",
            lambda rows: any(
                r.get("url") == f"{BASE}/{t1}"
                or (r.get("target_type"), r.get("target_id")) == ("Task", world["task"])
                for r in rows
            ),
        ),
        f"entity={urn}": _expected(events, "entity", by_id(urn)),
        "source=Device/d1": _expected(events, "source", typed("Device", "d1")),
        f"entity={t1},{p1}": _expected(
            events,
            "entity",
            lambda rows: typed("Task", world["task"])(rows) or typed("Patient", world["p1"])(rows),
        ),
        f"entity:not={t1}": [
            e["id"]
            for e in events
            if e["id"] not in _expected(events, "entity", typed("Task", world["task"]))
        ],
        "patient:missing=true": _expected(events, "patient", lambda rows: not rows),
        "patient:missing=false": _expected(events, "patient", bool),
        "entity:missing=true": _expected(events, "entity", lambda rows: not rows),
        "agent=Organization/unknown": [],
        f"patient={p1}&action=R": [
            e
            for e in _expected(events, "patient", typed("Patient", world["p1"]))
            if e in ("x-0", "x-2", "x-4")
        ],
    }
    assert cases[f"patient={p1}"] == ["x-0", "x-3"]  # the oracle sees what the events hold
    assert cases[f"entity={t1}"] == ["x-0", "x-2"]
    for query, expected in cases.items():
        found, _ = _found(fhir, f"AuditEvent?{query}&_sort=_id")
        assert found == expected, query
    if database.engine.dialect.name == "postgresql":  # none of them in the generic index there
        with database.transaction() as conn:
            for table in (idx_reference, idx_date):
                held = select(func.count()).where(
                    table.c.res_type == "AuditEvent", table.c.res_id.like("x-%")
                )
                assert conn.execute(held).scalar_one() == 0, table.name
            moved = select(func.count()).where(
                audit_terms.c.res_id.like("x-%"), audit_terms.c.refs.is_not(None)
            )
            assert conn.execute(moved).scalar_one() == 5


def test_date_criteria_and_sorts(fhir: TestClient, world: dict[str, str]) -> None:
    cases = {
        "date=2026-02": ["x-1", "x-2"],
        "date=ge2026-02-15": ["x-2", "x-3", "x-4"],
        "date=lt2026-02-15T08:30:00.250Z": ["x-0", "x-1"],
        "date=2026-02-15T08:30:00.250Z": ["x-2"],
        "date=ge2026-02&date=le2026-03-01": ["x-1", "x-2", "x-3"],
        "date=sa2026-03-01": ["x-4"],
        "date=eb2026-01-02": ["x-0"],
        "date:missing=true": [],
        "date:missing=false": ["x-0", "x-1", "x-2", "x-3", "x-4"],
    }
    for query, expected in cases.items():
        found, _ = _found(fhir, f"AuditEvent?{query}&_id={world['events']}&_sort=_id")
        assert found == expected, query
    assert _found(fhir, f"AuditEvent?_id={world['events']}&_sort=date")[0] == [
        "x-0",
        "x-1",
        "x-2",
        "x-3",
        "x-4",
    ]
    assert _found(fhir, f"AuditEvent?_id={world['events']}&_sort=-date")[0] == [
        "x-4",
        "x-3",
        "x-2",
        "x-1",
        "x-0",
    ]
    by_entity = _found(fhir, "AuditEvent?_id=x-0,x-1&_sort=entity,_id")[0]
    expected = sorted(
        ["x-0", "x-1"], key=lambda e: min(world["task"], world["p1"]) if e == "x-0" else world["p2"]
    )
    assert by_entity == expected


def test_includes_has_chains_and_everything(fhir: TestClient, world: dict[str, str]) -> None:
    org, p1, p2, t1 = (
        f"Organization/{world['org']}",
        f"Patient/{world['p1']}",
        f"Patient/{world['p2']}",
        f"Task/{world['task']}",
    )
    assert _found(fhir, "AuditEvent?_id=x-0&_include=AuditEvent:patient")[1] == [p1]
    assert _found(fhir, "AuditEvent?_id=x-0&_include=AuditEvent:agent")[1] == [org]
    assert _found(fhir, "AuditEvent?_id=x-0,x-1&_include=AuditEvent:entity")[1] == sorted([t1, p1, p2])
    assert _found(fhir, "AuditEvent?_id=x-0,x-1&_include=AuditEvent:entity:Task")[1] == [t1]
    assert _found(fhir, "AuditEvent?_id=x-2&_include=AuditEvent:entity")[1] == [t1]  # an absolute URL to here

    response = fhir.get(
        "/fhir/Patient", params={"_id": f"{world['p1']},{world['p2']}", "_revinclude": "AuditEvent:patient"}
    )
    revincluded = sorted(
        e["resource"]["id"] for e in response.json()["entry"] if e["search"]["mode"] == "include"
    )
    assert [i for i in revincluded if i.startswith("x-")] == ["x-0", "x-1", "x-3"]  # x-1: p2 as entity
    response = fhir.get("/fhir/Task", params={"_id": world["task"], "_revinclude": "AuditEvent:entity"})
    revincluded = sorted(
        e["resource"]["id"] for e in response.json()["entry"] if e["search"]["mode"] == "include"
    )
    assert [i for i in revincluded if i.startswith("x-")] == ["x-0", "x-2"]

    def patients(query: str) -> list[str]:
        response = fhir.get(f"/fhir/Patient?_id={world['p1']},{world['p2']}&{query}")
        assert response.status_code == 200, response.text
        return sorted(f"Patient/{e['resource']['id']}" for e in response.json().get("entry", []))

    assert patients("_has:AuditEvent:entity:_id=x-1") == [p2]  # (the requests' own events aside)
    assert patients("_has:AuditEvent:patient:_id=x-0,x-1") == [p1, p2]
    assert patients("_has:AuditEvent:agent:_id=x-3") == [p1]  # the person as agent
    assert patients("_has:AuditEvent:agent:_id=x-0") == []

    assert _found(fhir, "AuditEvent?patient.family=Durand&_sort=_id")[0] == ["x-0", "x-3"]
    assert _found(fhir, "AuditEvent?entity:Task.status=requested&_sort=_id")[0] == ["x-0", "x-2"]
    assert _found(fhir, "AuditEvent?agent:Organization.name=saad&_sort=_id")[0] == ["x-0", "x-1"]

    response = fhir.get(f"/fhir/Patient/{world['p1']}/$everything", params={"_type": "AuditEvent"})
    assert response.status_code == 200, response.text
    included = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in response.json()["entry"]
        if e["search"]["mode"] == "include"
    }
    assert org in included  # x-0's agent, an event of the person's compartment


def test_migration_0013_moves_the_stored_events_rows_and_back(tmp_path: Path) -> None:
    """The events stored before keep the same search index, moved on PostgreSQL (and back by the
    downgrade); other types' rows stay where they are."""
    event = _event(0, "2026-01-01T10:00:00.000Z", [_who("Organization/o1")], ["Task/t1", "Patient/p1"])
    rows = extract_index_rows(event)
    generic = {
        "reference": [
            ("AuditEvent", "x-0", r["param"], r["target_type"], r["target_id"], r["url"])
            for r in rows["reference"]
        ],
        "date": [("AuditEvent", "x-0", r["param"], r["low"], r["high"]) for r in rows["date"]],
    }
    task_reference = ("Task", "t1", "subject", "Patient", "p1", None)
    with temporary_database_url(tmp_path) as url:
        database = Database(url)
        try:
            upgrade(database, "0012")
            row = {"version": 1, "deleted": False, "method": "POST", "last_updated": datetime(2026, 1, 1)}
            with database.transaction(write=True) as conn:
                conn.execute(
                    insert(resource),
                    [
                        {
                            **row,
                            "res_type": "AuditEvent",
                            "res_id": "x-0",
                            "content": json.dumps(event),
                            "patient_id": "p1",
                        }
                    ],
                )
                conn.execute(
                    insert(idx_reference),
                    [
                        dict(zip(_names(idx_reference), r, strict=True))
                        for r in [*generic["reference"], task_reference]
                    ],
                )
                conn.execute(
                    insert(idx_date), [dict(zip(_names(idx_date), r, strict=True)) for r in generic["date"]]
                )
            upgrade(database, "0013")
            postgresql = database.engine.dialect.name == "postgresql"
            with database.transaction() as conn:
                references = {tuple(r) for r in conn.execute(select(idx_reference))}
                dates = {tuple(r) for r in conn.execute(select(idx_date))}
                terms = conn.execute(select(audit_terms.c.refs, audit_terms.c.recorded_low)).all()
            if postgresql:
                assert references == {task_reference}
                assert dates == set()
                keys = set(terms[0][0].split(SEP))
                assert keys == {
                    "agent|Organization/o1",
                    "entity|Task/t1",
                    "entity|Patient/p1",
                    "patient|Patient/p1",
                }
                assert terms[0][1] == rows["date"][0]["low"]
            else:
                assert references == {*generic["reference"], task_reference}
                assert terms == []
            command.downgrade(alembic_config(url), "0012")
            with database.transaction() as conn:
                references = {tuple(r) for r in conn.execute(select(idx_reference))}
                dates = {tuple(r) for r in conn.execute(select(idx_date))}
                left = conn.execute(select(func.count()).select_from(sa_table("audit_terms"))).scalar_one()
        finally:
            database.dispose()
    assert references == {*generic["reference"], task_reference}
    assert dates == set(generic["date"])
    assert left == 0  # the rows made without terms are gone with the columns


def test_an_audit_event_a_client_stores_is_found_by_its_references(
    fhir: TestClient, world: dict[str, str]
) -> None:
    """A trusted client's AuditEvent (REST create, alone and in a transaction) is searchable by its
    references and date as the audit store's are."""
    p2 = f"Patient/{world['p2']}"
    alone = _event(10, "2026-05-01T09:00:00Z", [{**_who("Device/dui-1"), "name": "DUI"}], [p2])
    del alone["id"]
    created = fhir.post("/fhir/AuditEvent", json=alone)
    assert created.status_code == 201, created.text
    bundled = {**alone, "agent": [{**_who("Device/dui-2"), "name": "DUI 2"}]}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": bundled, "request": {"method": "POST", "url": "AuditEvent"}}],
    }
    response = fhir.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text

    def ids(query: str) -> set[str]:
        response = fhir.get(f"/fhir/AuditEvent?{query}")
        assert response.status_code == 200, response.text
        return {e["resource"]["id"] for e in response.json().get("entry", [])}

    stored = {created.json()["id"], response.json()["entry"][0]["response"]["location"].split("/")[1]}
    assert ids(f"entity={p2}&date=2026-05-01") == stored
    assert ids("agent=Device/dui-1") == {created.json()["id"]}
    assert ids(f"patient={p2}&agent=Device/dui-2&date=ge2026-05") == stored - {created.json()["id"]}
