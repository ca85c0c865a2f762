"""Partner writes of shared resources, those of no person (issue 4, deny by default;
consent.ownership): a partner writes its own Organization and those ``partOf`` it, the roles
of its organisations, the Groups it manages, and the Practitioners its roles name; every
other write of such a resource is a 403 OperationOutcome, audited. Over HTTP, through every
write path: create, conditional create, update, conditional update, JSON Patch, delete,
batch and transaction entries, ``$validate`` modes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory

FHIR = {"Content-Type": "application/fhir+json"}
PATCH = {"Content-Type": "application/json-patch+json"}
SAAD = "Organization/saad"


def _org(org_id: str, parent: str | None = None, name: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Organization",
        "id": org_id,
        "name": name or f"Org {org_id}",
        "identifier": [{"system": "urn:test:org", "value": org_id}],
    }
    if parent:
        body["partOf"] = {"reference": f"Organization/{parent}"}
    return body


def _role(role_id: str, practitioner: str, org: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": role_id,
        "practitioner": {"reference": f"Practitioner/{practitioner}"},
    }
    if org:
        body["organization"] = {"reference": f"Organization/{org}"}
    return body


def _group(group_id: str, manager: str) -> dict[str, Any]:
    return {
        "resourceType": "Group",
        "id": group_id,
        "type": "person",
        "actual": True,
        "managingEntity": {"reference": manager},
    }


def _practitioner(pid: str, family: str = "Durand") -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": pid, "name": [{"family": family}]}


# saad <- saad-east <- saad-east-1 (partOf chains); dac <- dac-sub; nurse works for saad-east,
# doc for dac only.
DIRECTORY = [
    _org("saad"),
    _org("saad-east", "saad"),
    _org("saad-east-1", "saad-east"),
    _org("dac"),
    _org("dac-sub", "dac"),
    _practitioner("nurse"),
    _practitioner("doc"),
    _role("pr-saad", "nurse", "saad-east"),
    _role("pr-dac", "doc", "dac"),
    _group("g-saad", SAAD),
    _group("g-dac", "Organization/dac"),
]


def _without_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "id"}


@pytest.fixture
def directory(fhir: TestClient) -> None:
    for body in DIRECTORY:
        answer = fhir.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers=FHIR)
        assert answer.status_code == 201, answer.text


@pytest.fixture
def saad(make_client: ClientFactory) -> TestClient:
    return make_client("system/*.cruds", organization=SAAD)


def _patch(path: str, value: Any) -> list[dict[str, Any]]:
    return [{"op": "replace", "path": path, "value": value}]


CASES: list[tuple[str, str, str, Any, int]] = [
    # Organization: its own and those partOf it (at any depth), never another's
    ("own organization", "PUT", "Organization/saad", _org("saad", name="SAAD Loire"), 200),
    ("sub-organization", "PUT", "Organization/saad-east-1", _org("saad-east-1", "saad-east", "E1"), 200),
    ("another's organization", "PUT", "Organization/dac", _org("dac", name="Taken"), 403),
    ("another's sub-organization", "PUT", "Organization/dac-sub", _org("dac-sub", "dac", "X"), 403),
    ("move own sub out", "PUT", "Organization/saad-east", _org("saad-east", "dac"), 403),
    ("move another's in", "PUT", "Organization/dac-sub", _org("dac-sub", "saad"), 403),
    ("create under own", "POST", "Organization", _without_id(_org("x", "saad-east")), 201),
    ("create-on-update under own", "PUT", "Organization/saad-west", _org("saad-west", "saad"), 201),
    ("create top-level", "POST", "Organization", _without_id(_org("x")), 403),
    ("create under another", "POST", "Organization", _without_id(_org("x", "dac-sub")), 403),
    ("partOf cycle", "PUT", "Organization/saad-east-1", _org("saad-east-1", "saad-east-1"), 403),
    ("patch own sub", "PATCH", "Organization/saad-east", _patch("/name", "Est"), 200),
    ("patch another's", "PATCH", "Organization/dac", _patch("/name", "Taken"), 403),
    (
        "patch own sub out",
        "PATCH",
        "Organization/saad-east",
        _patch("/partOf", {"reference": "Organization/dac"}),
        403,
    ),
    ("delete own sub", "DELETE", "Organization/saad-east-1", None, 204),
    ("delete another's", "DELETE", "Organization/dac-sub", None, 403),
    # PractitionerRole: organization one of its own, before and after
    ("role in own sub", "POST", "PractitionerRole", _without_id(_role("x", "doc", "saad-east-1")), 201),
    ("role in another's", "POST", "PractitionerRole", _without_id(_role("x", "nurse", "dac")), 403),
    ("role without organization", "POST", "PractitionerRole", _without_id(_role("x", "nurse", None)), 403),
    ("update own role", "PUT", "PractitionerRole/pr-saad", _role("pr-saad", "nurse", "saad"), 200),
    ("move own role out", "PUT", "PractitionerRole/pr-saad", _role("pr-saad", "nurse", "dac"), 403),
    ("take another's role", "PUT", "PractitionerRole/pr-dac", _role("pr-dac", "doc", "saad"), 403),
    ("delete own role", "DELETE", "PractitionerRole/pr-saad", None, 204),
    ("delete another's role", "DELETE", "PractitionerRole/pr-dac", None, 403),
    # Group: managingEntity itself, before and after
    ("own group", "POST", "Group", _without_id(_group("x", SAAD)), 201),
    ("group for another", "POST", "Group", _without_id(_group("x", "Organization/dac")), 403),
    ("group for own sub", "POST", "Group", _without_id(_group("x", "Organization/saad-east")), 403),
    ("update own group", "PUT", "Group/g-saad", {**_group("g-saad", SAAD), "name": "Suivis"}, 200),
    ("give own group away", "PUT", "Group/g-saad", _group("g-saad", "Organization/dac"), 403),
    ("take another's group", "PUT", "Group/g-dac", _group("g-dac", SAAD), 403),
    ("replay another's group", "PUT", "Group/g-dac", _group("g-dac", "Organization/dac"), 403),
    ("patch another's group", "PATCH", "Group/g-dac", _patch("/managingEntity/reference", SAAD), 404),
    ("delete another's group", "DELETE", "Group/g-dac", None, 404),  # hidden from it: a read's 404
    # Practitioner: create; change only those its organisations' roles name
    ("new practitioner", "POST", "Practitioner", _without_id(_practitioner("x")), 201),
    ("new practitioner by id", "PUT", "Practitioner/new-one", _practitioner("new-one"), 201),
    ("own organisation's practitioner", "PUT", "Practitioner/nurse", _practitioner("nurse", "Petit"), 200),
    ("another's practitioner", "PUT", "Practitioner/doc", _practitioner("doc", "Petit"), 403),
    ("patch another's practitioner", "PATCH", "Practitioner/doc", _patch("/name/0/family", "X"), 403),
    ("delete another's practitioner", "DELETE", "Practitioner/doc", None, 403),
    # an unchanged write stores nothing: answered as a read (every partner reads Organizations)
    ("another's organization unchanged", "PUT", "Organization/dac", _org("dac"), 200),
]


@pytest.mark.parametrize(
    ("method", "url", "body", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_partner_writes_of_shared_resources(
    directory: None, fhir: TestClient, saad: TestClient, method: str, url: str, body: Any, status: int
) -> None:
    before = fhir.get(f"/fhir/{url}").json() if "/" in url else None
    headers = PATCH if method == "PATCH" else FHIR
    answer = saad.request(method, f"/fhir/{url}", content=json.dumps(body) if body else None, headers=headers)
    assert answer.status_code == status, answer.text
    if status == 403:
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "forbidden"
        if before is not None:
            assert fhir.get(f"/fhir/{url}").json() == before  # nothing changed
        denials = fhir.get("/fhir/AuditEvent", params={"outcome": "4", "_count": "100"}).json()
        refused = [e["resource"] for e in denials.get("entry", [])]
        assert any(e["agent"][0]["who"]["reference"] == SAAD for e in refused), refused


def test_trusted_clients_are_exempt(directory: None, fhir: TestClient) -> None:
    assert fhir.put("/fhir/Organization/dac", json=_org("dac", "saad"), headers=FHIR).status_code == 200
    assert fhir.delete("/fhir/PractitionerRole/pr-dac").status_code == 204


def test_patient_context_tokens_write_no_shared_resource(directory: None, make_client: ClientFactory) -> None:
    person = make_client("patient/*.cruds", patient="Patient/p1")
    body = _without_id(_practitioner("x"))
    assert person.post("/fhir/Practitioner", json=body, headers=FHIR).status_code == 403
    assert person.post("/fhir/Organization", json=_without_id(_org("x")), headers=FHIR).status_code == 403


def test_conditional_create_and_update_are_checked(directory: None, saad: TestClient) -> None:
    other = _without_id(_org("x", "dac"))
    refused = saad.post("/fhir/Organization", json=other, headers={**FHIR, "If-None-Exist": "name=nobody"})
    assert refused.status_code == 403
    matched = saad.post(
        "/fhir/Organization", json=other, headers={**FHIR, "If-None-Exist": "identifier=urn:test:org|dac"}
    )
    assert matched.status_code == 200  # an existing match is answered, nothing written
    renamed = _without_id(_org("dac", name="Taken"))
    assert (
        saad.put("/fhir/Organization?identifier=urn:test:org|dac", json=renamed, headers=FHIR).status_code
        == 403
    )
    mine = _without_id(_org("saad-east", "saad", "Est"))
    assert (
        saad.put("/fhir/Organization?identifier=urn:test:org|saad-east", json=mine, headers=FHIR).status_code
        == 200
    )


def _entry(method: str, url: str, resource: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"request": {"method": method, "url": url}}
    if resource is not None:
        entry["resource"] = resource
    return entry


def _binary_patch(operations: list[dict[str, Any]]) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(operations).encode()).decode()
    return {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}


@pytest.mark.parametrize(
    "refused",
    [
        _entry("PUT", "Organization/dac", _org("dac", name="Taken")),
        _entry("PATCH", "Organization/dac", _binary_patch(_patch("/name", "Taken"))),
        _entry("POST", "PractitionerRole", _without_id(_role("x", "nurse", "dac"))),
        _entry("DELETE", "Practitioner/doc"),
        _entry("PUT", "Organization?identifier=urn:test:org|dac-sub", _without_id(_org("dac-sub", "saad"))),
    ],
    ids=["put", "patch", "post", "delete", "conditional-put"],
)
def test_a_refused_transaction_entry_rolls_everything_back(
    directory: None, fhir: TestClient, saad: TestClient, refused: dict[str, Any]
) -> None:
    allowed = _entry("PUT", "Organization/saad-east", _org("saad-east", "saad", "Renamed"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [allowed, refused]}
    answer = saad.post("/fhir", json=bundle, headers=FHIR)
    assert answer.status_code == 403, answer.text
    assert "Bundle.entry[1]" in answer.json()["issue"][0]["diagnostics"]
    assert fhir.get("/fhir/Organization/saad-east").json()["name"] == "Org saad-east"


def test_batch_entries_are_checked_one_by_one(directory: None, saad: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            _entry("PUT", "Organization/saad-east", _org("saad-east", "saad", "Renamed")),
            _entry("PUT", "Organization/dac", _org("dac", name="Taken")),
            _entry("POST", "Group", _without_id(_group("x", SAAD))),
        ],
    }
    answer = saad.post("/fhir", json=bundle, headers=FHIR)
    assert answer.status_code == 200, answer.text
    statuses = [e["response"]["status"] for e in answer.json()["entry"]]
    assert [s.split()[0] for s in statuses] == ["200", "403", "201"]


def test_a_transaction_may_create_a_sub_organization_and_its_roles(directory: None, saad: TestClient) -> None:
    sub = {**_without_id(_org("x", "saad")), "name": "Antenne"}
    role = {**_without_id(_role("x", "nurse", None)), "organization": {"reference": "urn:uuid:antenne"}}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {**_entry("POST", "Organization", sub), "fullUrl": "urn:uuid:antenne"},
            _entry("POST", "PractitionerRole", role),
        ],
    }
    answer = saad.post("/fhir", json=bundle, headers=FHIR)
    assert answer.status_code == 200, answer.text


def test_validate_modes_say_what_the_write_would_get(directory: None, saad: TestClient) -> None:
    def errors(url: str, body: dict[str, Any]) -> list[str]:
        outcome = saad.post(url, json=body, headers=FHIR).json()
        return [i["code"] for i in outcome["issue"] if i["severity"] == "error"]

    assert errors("/fhir/Organization/dac/$validate?mode=update", _org("dac", name="X")) == ["forbidden"]
    assert errors("/fhir/Organization/saad-east/$validate?mode=update", _org("saad-east", "saad", "X")) == []
    assert errors("/fhir/Organization/$validate?mode=create", _without_id(_org("x", "dac"))) == ["forbidden"]
    params = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]}
    assert errors("/fhir/Practitioner/doc/$validate", params) == ["forbidden"]
    assert errors("/fhir/Practitioner/nurse/$validate", params) == []
