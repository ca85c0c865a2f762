"""Every profile through the real HTTP API: valid examples stored, each defect refused with
the exact element path, on create, update and patch, and the same answers from ``$validate``."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.validation.examples import BASE, CASES, VALID, broken, valid

JSON = {"Content-Type": "application/fhir+json"}


def _expressions(outcome: dict[str, Any]) -> list[str]:
    return [e for issue in outcome["issue"] for e in issue.get("expression", [])]


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_example_is_stored(fhir: TestClient, name: str) -> None:
    resource = valid(name)
    created = fhir.post(f"/fhir/{resource['resourceType']}", json=resource, headers=JSON)
    assert created.status_code == 201, created.text
    assert created.json()["meta"]["profile"] == [BASE + name]


@pytest.mark.parametrize(("name", "defect", "patch", "path"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_defect_is_refused_with_its_path(
    fhir: TestClient, name: str, defect: str, patch: list[dict[str, Any]], path: str
) -> None:
    resource = broken(name, patch)
    res_type = resource["resourceType"]
    answer = fhir.post(f"/fhir/{res_type}", json=resource, headers=JSON)
    assert answer.status_code == 422, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert _expressions(outcome) == [path], outcome
    assert fhir.get(f"/fhir/{res_type}").json().get("total", 0) == 0

    validated = fhir.post(f"/fhir/{res_type}/$validate", json=resource, headers=JSON)
    assert validated.status_code == 200, validated.text
    assert _expressions(validated.json()) == [path]
    assert validated.json()["issue"][0]["severity"] == "error"


def test_update_and_patch_are_validated(fhir: TestClient) -> None:
    created = fhir.post("/fhir/Patient", json=valid("fg-patient"), headers=JSON).json()
    url = f"/fhir/Patient/{created['id']}"
    bad = dict(created)
    bad.pop("birthDate")
    answer = fhir.put(url, json=bad, headers=JSON)
    assert answer.status_code == 422
    assert _expressions(answer.json()) == ["Patient.birthDate"]
    patched = fhir.patch(
        url,
        json=[{"op": "replace", "path": "/identifier/0/value", "value": "178066942012369"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 422
    assert _expressions(patched.json()) == ["Patient.identifier[0].value"]
    assert "fg-nir-1" in patched.json()["issue"][0]["diagnostics"]
    assert fhir.get(url).json()["meta"]["versionId"] == "1"


def test_unknown_profile_is_refused(fhir: TestClient) -> None:
    resource = valid("fg-patient")
    resource["meta"]["profile"] = [BASE + "fg-unknown"]
    answer = fhir.post("/fhir/Patient", json=resource, headers=JSON)
    assert answer.status_code == 422
    issue = answer.json()["issue"][0]
    assert issue["code"] == "not-supported"
    assert issue["expression"] == ["Patient.meta.profile[0]"]
    assert "fg-unknown" in issue["diagnostics"]
    assert "is not a profile of this server" in issue["diagnostics"]


def test_profile_of_another_type_is_refused(fhir: TestClient) -> None:
    resource = valid("fg-patient")
    resource["meta"]["profile"] = [BASE + "fg-consent"]
    answer = fhir.post("/fhir/Patient", json=resource, headers=JSON)
    assert answer.status_code == 422
    assert "constrains Consent, not Patient" in answer.json()["issue"][0]["diagnostics"]


def test_core_profile_claim_checks_structure_only(fhir: TestClient) -> None:
    resource = {
        "resourceType": "Patient",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/Patient"]},
    }
    assert fhir.post("/fhir/Patient", json=resource, headers=JSON).status_code == 201


def test_resources_without_a_profile_are_not_profiled(fhir: TestClient) -> None:
    resource = valid("fg-patient")
    del resource["meta"]
    del resource["birthDate"]
    assert fhir.post("/fhir/Patient", json=resource, headers=JSON).status_code == 201


def test_transaction_entries_are_validated(fhir: TestClient) -> None:
    bad = broken("fg-careteam-circle-of-care", [{"op": "remove", "path": "/participant/0/period"}])
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": valid("fg-patient"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": bad, "request": {"method": "POST", "url": "CareTeam"}},
        ],
    }
    answer = fhir.post("/fhir", json=bundle, headers=JSON)
    assert answer.status_code == 422, answer.text
    assert "CareTeam.participant[0].period" in _expressions(answer.json())
    assert fhir.get("/fhir/Patient").json().get("total", 0) == 0
