"""Resources of a person type that name no person (issue 4, deny by default): a Task without
``for``, a CareTeam without ``subject``. Nobody's consent can let them be shared, so a partner
neither writes nor sees them; a trusted client still may (an organisation's own work list)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory

FHIR = {"Content-Type": "application/fhir+json"}
SAAD = "Organization/saad"


def _task(task_id: str, person: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "status": "requested",
        "intent": "order",
        "description": "Appeler Mme Martin au sujet de sa chute",  # personal data all the same
        "owner": {"reference": SAAD},
    }
    if person is not None:
        body["for"] = person
    return body


@pytest.fixture
def stored(fhir: TestClient) -> None:
    """p1, whose circle of care has the SAAD; a Task for p1 and one for no one."""
    bodies = [
        {"resourceType": "Organization", "id": "saad", "name": "SAAD"},
        {"resourceType": "Patient", "id": "p1"},
        {
            "resourceType": "CareTeam",
            "id": "team-p1",
            "status": "active",
            "subject": {"reference": "Patient/p1"},
            "participant": [{"member": {"reference": SAAD}}],
        },
        _task("t-p1", {"reference": "Patient/p1"}),
        _task("t-none", None),
    ]
    for body in bodies:
        answer = fhir.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers=FHIR)
        assert answer.status_code == 201, answer.text


@pytest.fixture
def saad(make_client: ClientFactory) -> TestClient:
    return make_client("system/*.cruds", organization=SAAD)


def _ids(bundle: dict[str, Any]) -> list[str]:
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match")


@pytest.mark.usefixtures("stored")
def test_a_partner_never_sees_a_task_of_no_person(saad: TestClient) -> None:
    assert saad.get("/fhir/Task/t-p1").status_code == 200
    assert saad.get("/fhir/Task/t-none").status_code == 404
    assert saad.get("/fhir/Task/t-none/_history/1").status_code == 404
    found = saad.get("/fhir/Task", params={"owner": SAAD, "_total": "accurate"}).json()
    assert (_ids(found), found["total"]) == (["t-p1"], 1)
    history = saad.get("/fhir/_history").json()  # rows of several types: the same rule
    assert "Task/t-none" not in {
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in history["entry"]
    }
    assert "Task/t-p1" in {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in history["entry"]}


@pytest.mark.usefixtures("stored")
def test_a_trusted_client_sees_and_writes_them(fhir: TestClient) -> None:
    assert fhir.get("/fhir/Task/t-none").status_code == 200
    created = fhir.post(
        "/fhir/Task", json={k: v for k, v in _task("x", None).items() if k != "id"}, headers=FHIR
    )
    assert created.status_code == 201, created.text


@pytest.mark.parametrize(
    ("person", "why"),
    [
        (None, "no for"),
        (
            {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1234567890123"}},
            "identifier only",
        ),
        ({"reference": "Organization/saad"}, "not a Patient"),
    ],
)
@pytest.mark.usefixtures("stored")
def test_a_partner_may_not_write_a_task_naming_no_person(
    saad: TestClient, person: dict[str, Any] | None, why: str
) -> None:
    body = {k: v for k, v in _task("x", person).items() if k != "id"}
    answer = saad.post("/fhir/Task", json=body, headers=FHIR)
    assert answer.status_code == 403, why
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Task.for must reference the person" in outcome["issue"][0]["diagnostics"]


@pytest.mark.usefixtures("stored")
def test_a_partner_may_not_take_or_change_a_task_of_no_person(saad: TestClient) -> None:
    assert saad.put("/fhir/Task/t-none", json=_task("t-none", None), headers=FHIR).status_code == 403
    # giving it a person it may see does not let it take over what it could not see
    taken = saad.put("/fhir/Task/t-none", json=_task("t-none", {"reference": "Patient/p1"}), headers=FHIR)
    assert taken.status_code == 403
    assert saad.delete("/fhir/Task/t-none").status_code in {403, 404}
    # its own person's Task it writes as before
    accepted = {**_task("t-p1", {"reference": "Patient/p1"}), "status": "accepted"}
    assert saad.put("/fhir/Task/t-p1", json=accepted, headers=FHIR).status_code == 200


@pytest.mark.usefixtures("stored")
def test_a_transaction_with_a_task_of_no_person_leaves_nothing(saad: TestClient, fhir: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _task("ok", {"reference": "Patient/p1"}),
                "request": {"method": "PUT", "url": "Task/ok"},
            },
            {"resource": _task("no-one", None), "request": {"method": "PUT", "url": "Task/no-one"}},
        ],
    }
    answer = saad.post("/fhir", json=bundle, headers=FHIR)
    assert answer.status_code == 403
    assert fhir.get("/fhir/Task/ok").status_code == 404


@pytest.mark.usefixtures("stored")
def test_a_partner_may_not_write_a_care_team_of_no_person(saad: TestClient) -> None:
    team = {"resourceType": "CareTeam", "status": "active", "participant": [{"member": {"reference": SAAD}}]}
    answer = saad.post("/fhir/CareTeam", json=team, headers=FHIR)
    assert answer.status_code == 403
    assert "CareTeam.subject must reference the person" in answer.json()["issue"][0]["diagnostics"]


@pytest.mark.usefixtures("stored")
def test_a_patient_context_token_may_not_write_a_task_of_no_person(make_client: ClientFactory) -> None:
    person = make_client("patient/*.cruds", patient="p1")
    body = {k: v for k, v in _task("x", None).items() if k != "id"}
    assert person.post("/fhir/Task", json=body, headers=FHIR).status_code == 403
    own = {k: v for k, v in _task("x", {"reference": "Patient/p1"}).items() if k != "id"}
    assert person.post("/fhir/Task", json=own, headers=FHIR).status_code == 201
