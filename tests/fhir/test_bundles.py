"""Batch and transaction Bundles (FHIR R4 http.html#transaction) through HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from fhir_gateway.storage import subscription_repository
from fhir_gateway.storage.database import Database
from tests.conftest import ClientFactory

FHIR = "application/fhir+json"


def _post(fhir: TestClient, entries: list[dict[str, Any]], kind: str = "transaction") -> Any:
    return fhir.post(
        "/fhir",
        json={"resourceType": "Bundle", "type": kind, "entry": entries},
        headers={"Content-Type": FHIR},
    )


def _person_bundle(nir: str) -> list[dict[str, Any]]:
    return [
        {
            "fullUrl": "urn:uuid:org",
            "resource": {"resourceType": "Organization", "name": "SAAD du Lac"},
            "request": {"method": "POST", "url": "Organization"},
        },
        {
            "fullUrl": "urn:uuid:pat",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": nir}],
            },
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}",
            },
        },
        {
            "fullUrl": "urn:uuid:team",
            "resource": {
                "resourceType": "CareTeam",
                "status": "active",
                "subject": {"reference": "urn:uuid:pat"},
                "participant": [{"member": {"reference": "urn:uuid:org"}}],
            },
            "request": {"method": "POST", "url": "CareTeam"},
        },
        {
            "resource": {
                "resourceType": "Task",
                "status": "requested",
                "intent": "order",
                "for": {"reference": "urn:uuid:pat"},
                "owner": {"reference": "urn:uuid:org"},
            },
            "request": {"method": "POST", "url": "Task"},
        },
    ]


def _count(fhir: TestClient, res_type: str) -> int:
    return int(fhir.get(f"/fhir/{res_type}", params={"_summary": "count"}).json()["total"])


def test_transaction_creates_all_and_rewrites_placeholders(fhir: TestClient) -> None:
    response = _post(fhir, _person_bundle("1234567890123"))
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    assert statuses == ["201 Created"] * 4
    org_id = bundle["entry"][0]["response"]["location"].split("/")[1]
    patient_id = bundle["entry"][1]["response"]["location"].split("/")[1]
    task = bundle["entry"][3]["resource"]
    assert task["for"]["reference"] == f"Patient/{patient_id}"
    assert task["owner"]["reference"] == f"Organization/{org_id}"
    found = fhir.get("/fhir/Task", params={"patient": f"Patient/{patient_id}"}).json()
    assert found["total"] == 1


def test_transaction_if_none_exist_does_not_duplicate(fhir: TestClient) -> None:
    first = _post(fhir, _person_bundle("2222222222222")).json()
    second = _post(fhir, _person_bundle("2222222222222")).json()
    assert second["entry"][1]["response"]["status"] == "200 OK"
    assert first["entry"][1]["response"]["location"] == second["entry"][1]["response"]["location"]
    assert _count(fhir, "Patient") == 1


def test_failing_last_entry_leaves_nothing_behind(fhir: TestClient) -> None:
    entries = _person_bundle("3333333333333")
    entries.append(
        {
            "resource": {"resourceType": "Task", "status": "requested", "intent": 12},
            "request": {"method": "POST", "url": "Task"},
        }
    )
    response = _post(fhir, entries)
    assert response.status_code == 422
    assert "Bundle.entry[4]" in response.json()["issue"][0]["diagnostics"]
    for res_type in ("Organization", "Patient", "CareTeam", "Task"):
        assert _count(fhir, res_type) == 0


def _tasks_bundle(count: int) -> list[dict[str, Any]]:
    person = {
        "fullUrl": "urn:uuid:person",
        "resource": {"resourceType": "Patient", "name": [{"family": "Martin"}]},
        "request": {"method": "POST", "url": "Patient"},
    }
    task = {"resourceType": "Task", "status": "requested", "intent": "order"}
    tasks = [
        {
            "resource": {**task, "for": {"reference": "urn:uuid:person"}, "description": f"visit {n}"},
            "request": {"method": "POST", "url": "Task"},
        }
        for n in range(count)
    ]
    return [person, *tasks]


def _statements_of(fhir: TestClient, entries: list[dict[str, Any]], pattern: str) -> int:
    """The statements containing ``pattern`` (any engine, any connection) a transaction of
    ``entries`` ran."""
    found = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if pattern in statement:
            found.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        response = _post(fhir, entries)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert response.status_code == 200, response.text
    return len(found)


def test_the_creates_of_a_transaction_are_stored_together(fhir: TestClient) -> None:
    """Plain creates are checked one by one and stored in a few statements, not per entry."""
    assert _statements_of(fhir, _tasks_bundle(20), "INSERT") == _statements_of(
        fhir, _tasks_bundle(2), "INSERT"
    )
    assert _count(fhir, "Task") == 22
    for task in fhir.get("/fhir/Task", params={"_count": "50"}).json()["entry"]:
        assert task["resource"]["meta"]["versionId"] == "1"


def test_the_subscriptions_of_every_type_written_are_looked_up_at_once(
    fhir: TestClient, database: Database
) -> None:
    with database.transaction(write=True) as conn:
        subscription_repository.restamp(conn)  # a change this server has not seen: it must ask
    assert _statements_of(fhir, _tasks_bundle(3), "JOIN subscription ON") == 1  # Patient and Task
    assert _statements_of(fhir, _tasks_bundle(3), "JOIN subscription ON") == 0  # unchanged since


def test_later_entries_see_the_creates_before_them(fhir: TestClient) -> None:
    """A conditional create and a search of the same transaction see its plain creates."""
    nir = {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1555555555555"}
    entries = [
        {
            "resource": {"resourceType": "Patient", "identifier": [nir]},
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {"resourceType": "Patient", "identifier": [nir]},
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={nir['system']}|{nir['value']}",
            },
        },
        {"request": {"method": "GET", "url": f"Patient?identifier={nir['system']}|{nir['value']}"}},
    ]
    bundle = _post(fhir, entries).json()
    created, matched, search = bundle["entry"]
    assert created["response"]["status"] == "201 Created"
    assert matched["response"]["status"] == "200 OK"
    assert matched["response"]["location"] == created["response"]["location"]
    assert search["resource"]["total"] == 1
    assert _count(fhir, "Patient") == 1


def test_conditional_reference_is_resolved(fhir: TestClient) -> None:
    _post(fhir, _person_bundle("4444444444444"))
    entries = [
        {
            "resource": {
                "resourceType": "Goal",
                "lifecycleStatus": "active",
                "description": {"text": "Rester à domicile"},
                "subject": {"reference": "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|4444444444444"},
            },
            "request": {"method": "POST", "url": "Goal"},
        }
    ]
    response = _post(fhir, entries)
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["resource"]["subject"]["reference"].startswith("Patient/")


def test_conditional_reference_without_match_fails(fhir: TestClient) -> None:
    entries = [
        {
            "resource": {
                "resourceType": "Goal",
                "lifecycleStatus": "active",
                "description": {"text": "x"},
                "subject": {"reference": "Patient?identifier=urn:x|none"},
            },
            "request": {"method": "POST", "url": "Goal"},
        }
    ]
    assert _post(fhir, entries).status_code == 412


def test_processing_order_delete_before_post(fhir: TestClient) -> None:
    created = fhir.post(
        "/fhir/Organization",
        json={"resourceType": "Organization", "name": "old"},
        headers={"Content-Type": FHIR},
    ).json()
    entries = [
        {
            "resource": {"resourceType": "Organization", "name": "new"},
            "request": {"method": "POST", "url": "Organization"},
        },
        {"request": {"method": "DELETE", "url": f"Organization/{created['id']}"}},
        {"request": {"method": "GET", "url": "Organization?name=new"}},
    ]
    bundle = _post(fhir, entries).json()
    assert [e["response"]["status"] for e in bundle["entry"]] == ["201 Created", "204 No Content", "200 OK"]
    assert bundle["entry"][2]["resource"]["total"] == 1


def test_patch_entry_with_binary(fhir: TestClient) -> None:
    created = fhir.post(
        "/fhir/Organization",
        json={"resourceType": "Organization", "name": "avant"},
        headers={"Content-Type": FHIR},
    ).json()
    patch = [{"op": "replace", "path": "/name", "value": "après"}]
    entries = [
        {
            "resource": {
                "resourceType": "Binary",
                "contentType": "application/json-patch+json",
                "data": base64.b64encode(json.dumps(patch).encode()).decode(),
            },
            "request": {"method": "PATCH", "url": f"Organization/{created['id']}"},
        }
    ]
    bundle = _post(fhir, entries).json()
    assert bundle["entry"][0]["resource"]["name"] == "après"


def test_batch_entries_are_independent(fhir: TestClient) -> None:
    entries = [
        {
            "resource": {"resourceType": "Organization", "name": "ok"},
            "request": {"method": "POST", "url": "Organization"},
        },
        {"request": {"method": "GET", "url": "Organization/does-not-exist"}},
        {
            "resource": {"resourceType": "Task", "status": "requested", "intent": 3},
            "request": {"method": "POST", "url": "Task"},
        },
    ]
    bundle = _post(fhir, entries, kind="batch").json()
    assert bundle["type"] == "batch-response"
    assert [e["response"]["status"] for e in bundle["entry"]] == ["201 Created", "404", "422"]
    assert bundle["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert _count(fhir, "Organization") == 1


def test_bundle_over_entry_limit_is_413(fhir: TestClient, settings: Any) -> None:
    entries = [{"request": {"method": "GET", "url": "Patient/x"}}] * (settings.max_bundle_entries + 1)
    assert _post(fhir, entries, kind="batch").status_code == 413


def test_malformed_bundles_are_400(fhir: TestClient) -> None:
    assert (
        fhir.post("/fhir", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR}).status_code
        == 400
    )
    assert _post(fhir, [{"resource": {"resourceType": "Patient"}}]).status_code == 400
    assert (
        _post(fhir, [{"request": {"method": "POST", "url": "Observation"}, "resource": {}}]).status_code
        == 400
    )


def test_scopes_apply_to_transaction_and_batch_entries(make_client: ClientFactory) -> None:
    reader = make_client("system/Organization.rs system/Patient.rs", trusted=True)
    transaction = _post(
        reader,
        [
            {
                "resource": {"resourceType": "Organization", "name": "x"},
                "request": {"method": "POST", "url": "Organization"},
            }
        ],
    )
    assert transaction.status_code == 403
    batch = _post(
        reader,
        [
            {
                "resource": {"resourceType": "Organization", "name": "x"},
                "request": {"method": "POST", "url": "Organization"},
            }
        ],
        kind="batch",
    ).json()
    assert batch["entry"][0]["response"]["status"] == "403"
