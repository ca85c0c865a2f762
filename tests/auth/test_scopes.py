"""SMART scopes (v2 and v1 forms) and their enforcement on every interaction (403)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from fhir_gateway.auth.scopes import narrow, parse_scope
from tests.conftest import ClientFactory

FHIR = "application/fhir+json"


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("system/Task.rs", ("system", "Task", "rs")),
        ("system/*.cruds", ("system", "*", "cdrsu")),
        ("patient/Patient.read", ("patient", "Patient", "rs")),
        ("user/CarePlan.write", ("user", "CarePlan", "cdu")),
        ("system/Consent.*", ("system", "Consent", "cdrsu")),
        ("system/Task.c", ("system", "Task", "c")),
    ],
)
def test_scope_forms(scope: str, expected: tuple[str, str, str]) -> None:
    grant = parse_scope(scope)
    assert grant is not None
    assert (grant.context, grant.resource_type, "".join(sorted(grant.interactions))) == expected


@pytest.mark.parametrize(
    "scope", ["openid", "launch/patient", "system/Task.sr", "system/Task.x", "Task.read"]
)
def test_non_fhir_or_malformed_scopes_grant_nothing(scope: str) -> None:
    assert parse_scope(scope) is None


def test_narrowing_keeps_only_covered_scopes() -> None:
    assert narrow("system/Task.rs system/Patient.c", "system/Task.cruds") == "system/Task.rs"
    assert narrow(None, "system/*.rs") == "system/*.rs"
    assert narrow("system/*.r", "system/Task.rs") == ""


@pytest.fixture
def task_id(fhir: TestClient) -> str:
    body = {"resourceType": "Task", "status": "requested", "intent": "order"}
    return str(fhir.post("/fhir/Task", json=body, headers={"Content-Type": FHIR}).json()["id"])


def test_scope_too_narrow_for_each_interaction(make_client: ClientFactory, task_id: str) -> None:
    patient_only = make_client("system/Patient.cruds", trusted=True)
    read_only = make_client("system/Task.r", trusted=True)
    task = {"resourceType": "Task", "id": task_id, "status": "accepted", "intent": "order"}
    checks = {
        "read": patient_only.get(f"/fhir/Task/{task_id}"),
        "search": read_only.get("/fhir/Task"),
        "create": read_only.post("/fhir/Task", json=task, headers={"Content-Type": FHIR}),
        "update": read_only.put(f"/fhir/Task/{task_id}", json=task, headers={"Content-Type": FHIR}),
        "delete": read_only.delete(f"/fhir/Task/{task_id}"),
        "history": read_only.get("/fhir/Task/_history"),
        "system history": read_only.get("/fhir/_history"),
        "vread": patient_only.get(f"/fhir/Task/{task_id}/_history/1"),
    }
    for name, response in checks.items():
        assert response.status_code == 403, name
        assert response.json()["issue"][0]["code"] == "forbidden", name
    assert read_only.get(f"/fhir/Task/{task_id}").status_code == 200


def test_patient_context_token_cannot_read_another_person(
    fhir: TestClient, make_client: ClientFactory
) -> None:
    me = fhir.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR}).json()[
        "id"
    ]
    other = fhir.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR}
    ).json()["id"]
    fhir.post(
        "/fhir/Task",
        json={
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "for": {"reference": f"Patient/{other}"},
        },
        headers={"Content-Type": FHIR},
    )
    person = make_client("patient/*.rs", patient=f"Patient/{me}")
    assert person.get(f"/fhir/Patient/{me}").status_code == 200
    assert person.get(f"/fhir/Patient/{other}").status_code == 404
    tasks = person.get("/fhir/Task").json()
    assert tasks["total"] == 0
    patients = person.get("/fhir/Patient").json()
    assert [e["resource"]["id"] for e in patients["entry"]] == [me]
