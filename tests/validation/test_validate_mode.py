"""``$validate`` honours ``mode`` (FHIR R4 resource-operation-validate.html): create, update,
delete and profile, from the query string or a Parameters body."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.validation.examples import valid

JSON = {"Content-Type": "application/fhir+json"}


def _patient() -> dict[str, Any]:
    resource = valid("fg-patient")
    del resource["meta"]
    return resource


def _issues(answer: Any) -> list[tuple[str, str]]:
    assert answer.status_code == 200, answer.text
    return [(i["severity"], i["code"]) for i in answer.json()["issue"]]


def test_unknown_mode_is_a_bad_request(fhir: TestClient) -> None:
    answer = fhir.post("/fhir/Patient/$validate", params={"mode": "merge"}, json=_patient(), headers=JSON)
    assert answer.status_code == 400
    assert answer.json()["issue"][0]["expression"] == ["mode"]


def test_create_checks_the_scope_and_warns_of_an_id(fhir: TestClient, make_client: ClientFactory) -> None:
    assert _issues(fhir.post("/fhir/Patient/$validate?mode=create", json=_patient(), headers=JSON)) == [
        ("information", "informational")
    ]
    with_id = {**_patient(), "id": "given"}
    assert _issues(fhir.post("/fhir/Patient/$validate?mode=create", json=with_id, headers=JSON)) == [
        ("warning", "informational")
    ]
    reader = make_client("system/Patient.rs", organization="Organization/stranger")
    answer = reader.post("/fhir/Patient/$validate?mode=create", json=_patient(), headers=JSON)
    assert ("error", "forbidden") in _issues(answer)
    assert (
        reader.post("/fhir/Patient/$validate", json=_patient(), headers=JSON).json()["issue"][0]["severity"]
        == "information"
    )  # mode profile: the content only


def test_mode_from_parameters_and_update_of_append_only(fhir: TestClient) -> None:
    event = {
        "resourceType": "AuditEvent",
        "type": {"code": "rest"},
        "recorded": "2025-01-01T00:00:00Z",
        "agent": [{"requestor": True}],
        "source": {"observer": {"display": "x"}},
    }
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "mode", "valueCode": "create"}, {"name": "resource", "resource": event}],
    }
    assert _issues(fhir.post("/fhir/AuditEvent/$validate", json=parameters, headers=JSON)) == [
        ("information", "informational")
    ]
    created = fhir.post("/fhir/AuditEvent", json=event, headers=JSON)
    assert created.status_code == 201, created.text
    stored = created.json()
    answer = fhir.post(
        f"/fhir/AuditEvent/{stored['id']}/$validate", params={"mode": "update"}, json=stored, headers=JSON
    )
    assert ("error", "not-supported") in _issues(answer)


def test_update_checks_the_id_and_the_scope(fhir: TestClient, make_client: ClientFactory) -> None:
    patient_id = fhir.post("/fhir/Patient", json=_patient(), headers=JSON).json()["id"]
    body = {**_patient(), "id": patient_id}
    assert _issues(
        fhir.post(f"/fhir/Patient/{patient_id}/$validate?mode=update", json=body, headers=JSON)
    ) == [("information", "informational")]
    assert _issues(fhir.post("/fhir/Patient/$validate?mode=update", json=body, headers=JSON)) == [
        ("information", "informational")
    ]
    assert ("error", "required") in _issues(
        fhir.post("/fhir/Patient/$validate?mode=update", json=_patient(), headers=JSON)
    )
    reader = make_client("system/Patient.rs", organization="Organization/stranger")
    answer = reader.post(
        "/fhir/Patient/$validate?mode=update", json={**_patient(), "id": "new-one"}, headers=JSON
    )
    assert ("error", "forbidden") in _issues(answer)  # an update that would create it: scope c


def test_delete_ignores_the_content(fhir: TestClient, make_client: ClientFactory) -> None:
    patient_id = fhir.post("/fhir/Patient", json=_patient(), headers=JSON).json()["id"]
    answer = fhir.post(
        f"/fhir/Patient/{patient_id}/$validate?mode=delete",
        json={"resourceType": "Patient", "gender": 3},
        headers=JSON,
    )
    assert _issues(answer) == [("information", "informational")]
    assert "may be deleted" in answer.json()["issue"][0]["diagnostics"]
    assert fhir.post("/fhir/Patient/$validate?mode=delete", json=_patient(), headers=JSON).status_code == 400
    assert fhir.get("/fhir/Patient/unknown/$validate?mode=delete").status_code == 404
    no_delete = make_client("system/Patient.cru", organization="Organization/saad-1")
    trusted_reader = no_delete.get(f"/fhir/Patient/{patient_id}/$validate?mode=delete")
    assert trusted_reader.status_code in (200, 404)  # hidden by consent, or refused by scope
    if trusted_reader.status_code == 200:
        assert ("error", "forbidden") in _issues(trusted_reader)
