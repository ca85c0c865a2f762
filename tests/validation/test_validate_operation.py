"""``$validate`` (FHIR R4 resource-operation-validate.html): type and instance level,
``profile`` from the query or a Parameters body, scopes and consent, CapabilityStatement."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.validation.examples import BASE, VALID, valid

JSON = {"Content-Type": "application/fhir+json"}
PATIENT = BASE + "fg-patient"


def _unprofiled_patient() -> dict[str, Any]:
    resource = valid("fg-patient")
    del resource["meta"]
    return resource


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_examples_answer_one_information_issue(fhir: TestClient, name: str) -> None:
    resource = valid(name)
    answer = fhir.post(f"/fhir/{resource['resourceType']}/$validate", json=resource, headers=JSON)
    assert answer.status_code == 200
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [(i["severity"], i["code"]) for i in outcome["issue"]] == [("information", "informational")]
    assert outcome["issue"][0]["diagnostics"].startswith("valid")


def test_profile_from_the_query(fhir: TestClient) -> None:
    resource = _unprofiled_patient()
    del resource["birthDate"]
    plain = fhir.post("/fhir/Patient/$validate", json=resource, headers=JSON).json()
    assert plain["issue"][0]["severity"] == "information"
    profiled = fhir.post("/fhir/Patient/$validate", params={"profile": PATIENT}, json=resource, headers=JSON)
    assert profiled.status_code == 200
    assert profiled.json()["issue"][0]["expression"] == ["Patient.birthDate"]


def test_profile_and_resource_from_parameters(fhir: TestClient) -> None:
    resource = _unprofiled_patient()
    resource["identifier"][0]["value"] = "178066942012369"
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": resource}, {"name": "profile", "valueUri": PATIENT}],
    }
    answer = fhir.post("/fhir/Patient/$validate", json=parameters, headers=JSON)
    assert answer.status_code == 200
    assert answer.json()["issue"][0]["expression"] == ["Patient.identifier[0].value"]


def test_structure_errors_are_reported(fhir: TestClient) -> None:
    answer = fhir.post("/fhir/Patient/$validate", json={"resourceType": "Patient", "gender": 3}, headers=JSON)
    assert answer.status_code == 200
    assert answer.json()["issue"][0]["severity"] == "error"
    assert answer.json()["issue"][0]["expression"] == ["Patient.gender"]


def test_unknown_profile_parameter_is_a_bad_request(fhir: TestClient) -> None:
    answer = fhir.post(
        "/fhir/Patient/$validate", params={"profile": BASE + "nope"}, json=_unprofiled_patient(), headers=JSON
    )
    assert answer.status_code == 400
    assert answer.json()["issue"][0]["expression"] == ["profile"]


def test_missing_resource_is_a_bad_request(fhir: TestClient) -> None:
    answer = fhir.post("/fhir/Patient/$validate", json={"resourceType": "Parameters"}, headers=JSON)
    assert answer.status_code == 400


def test_instance_level_validates_the_stored_resource(fhir: TestClient) -> None:
    stored = _unprofiled_patient()
    del stored["birthDate"]
    patient_id = fhir.post("/fhir/Patient", json=stored, headers=JSON).json()["id"]
    ok = fhir.get(f"/fhir/Patient/{patient_id}/$validate")
    assert ok.json()["issue"][0]["severity"] == "information"
    refused = fhir.get(f"/fhir/Patient/{patient_id}/$validate", params={"profile": PATIENT})
    assert refused.status_code == 200
    assert refused.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    candidate = _unprofiled_patient() | {"id": patient_id}
    posted = fhir.post(f"/fhir/Patient/{patient_id}/$validate", params={"profile": PATIENT}, json=candidate)
    assert posted.json()["issue"][0]["severity"] == "information"
    assert fhir.get("/fhir/Patient/unknown/$validate").status_code == 404


def test_scopes_and_consent_apply(fhir: TestClient, make_client: ClientFactory) -> None:
    patient_id = fhir.post("/fhir/Patient", json=_unprofiled_patient(), headers=JSON).json()["id"]
    task_only = make_client("system/Task.cruds", organization="Organization/saad-1")
    assert (
        task_only.post("/fhir/Patient/$validate", json=_unprofiled_patient(), headers=JSON).status_code == 403
    )
    reader = make_client("system/Patient.rs", organization="Organization/stranger")
    assert reader.post("/fhir/Patient/$validate", json=_unprofiled_patient(), headers=JSON).status_code == 200
    # not in the person's circle of care: the instance is hidden like a read
    assert reader.get(f"/fhir/Patient/{patient_id}/$validate").status_code == 404


def test_capability_statement_lists_validate_and_profiles(http: TestClient) -> None:
    statement = http.get("/fhir/metadata").json()
    rest = statement["rest"][0]
    assert "validate" in [op["name"] for op in rest["operation"]]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert patient["supportedProfile"] == [PATIENT]
    task = next(r for r in rest["resource"] if r["type"] == "Task")
    assert len(task["supportedProfile"]) == 3
    assert "validate" in [op["name"] for op in task["operation"]]


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Patient", "meta": {"profile": [PATIENT]}, "identifier": "x", "name": 5},
        {
            "resourceType": "Patient",
            "meta": {"profile": [PATIENT]},
            "identifier": [{"system": 3, "value": []}],
        },
        {"resourceType": "Patient", "meta": {"profile": [PATIENT]}, "identifier": [7, None, {"value": 12}]},
        {"resourceType": "Patient", "meta": {"profile": [PATIENT]}, "birthDate": {"a": 1}, "name": [[]]},
        {
            "resourceType": "Task",
            "meta": {"profile": [BASE + "fg-task-home-care-visit"]},
            "output": [{"valueInteger": "x"}],
        },
        {
            "resourceType": "Task",
            "meta": {"profile": [BASE + "fg-task-home-care-visit"]},
            "status": ["cancelled"],
        },
        {
            "resourceType": "ServiceRequest",
            "meta": {"profile": [BASE + "fg-servicerequest-mdph-right"]},
            "category": 1,
        },
        {"resourceType": "Patient", "meta": {"profile": "not-a-list"}},
    ],
)
def test_malformed_resources_get_an_outcome_not_a_crash(fhir: TestClient, resource: dict[str, Any]) -> None:
    answer = fhir.post(f"/fhir/{resource['resourceType']}/$validate", json=resource, headers=JSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["issue"][0]["severity"] == "error"
    assert fhir.post(f"/fhir/{resource['resourceType']}", json=resource, headers=JSON).status_code == 422
