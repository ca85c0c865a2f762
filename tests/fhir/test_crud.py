"""FHIR R4 http.html interactions through HTTP: create, read, vread, update, patch, delete, history."""

from __future__ import annotations

from starlette.testclient import TestClient

FHIR = "application/fhir+json"


def patient(identifier: str = "P1", family: str = "Martin") -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": identifier}],
        "name": [{"family": family, "given": ["Jeanne"]}],
        "birthDate": "1941-03-02",
    }


def create(fhir: TestClient, resource: dict[str, object]) -> dict[str, object]:
    response = fhir.post(f"/fhir/{resource['resourceType']}", json=resource, headers={"Content-Type": FHIR})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_create_sets_id_meta_and_headers(fhir: TestClient) -> None:
    response = fhir.post("/fhir/Patient", json=patient(), headers={"Content-Type": FHIR})
    assert response.status_code == 201
    body = response.json()
    assert body["meta"]["versionId"] == "1"
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert response.headers["Last-Modified"].endswith("GMT")
    assert response.headers["content-type"].startswith("application/fhir+json")


def test_read_returns_what_was_written(fhir: TestClient) -> None:
    created = create(fhir, patient())
    response = fhir.get(f"/fhir/Patient/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["ETag"] == 'W/"1"'


def test_read_unknown_is_404_operation_outcome(fhir: TestClient) -> None:
    response = fhir.get("/fhir/Patient/does-not-exist")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "not-found"


def test_unknown_type_is_404(fhir: TestClient) -> None:
    response = fhir.get("/fhir/Observation/1")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_update_makes_a_new_version_and_vread_keeps_the_old(fhir: TestClient) -> None:
    created = create(fhir, patient())
    changed = {**created, "name": [{"family": "Durand"}]}
    response = fhir.put(f"/fhir/Patient/{created['id']}", json=changed, headers={"Content-Type": FHIR})
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "2"
    old = fhir.get(f"/fhir/Patient/{created['id']}/_history/1").json()
    assert old["name"][0]["family"] == "Martin"
    assert fhir.get(f"/fhir/Patient/{created['id']}").json()["name"][0]["family"] == "Durand"


def test_update_without_change_keeps_the_version(fhir: TestClient) -> None:
    created = create(fhir, patient())
    response = fhir.put(f"/fhir/Patient/{created['id']}", json=created, headers={"Content-Type": FHIR})
    assert response.status_code == 200
    assert response.json()["meta"]["versionId"] == "1"


def test_create_on_update_with_client_id(fhir: TestClient) -> None:
    resource = {**patient(), "id": "mdph-123"}
    response = fhir.put("/fhir/Patient/mdph-123", json=resource, headers={"Content-Type": FHIR})
    assert response.status_code == 201
    assert fhir.get("/fhir/Patient/mdph-123").status_code == 200


def test_update_id_mismatch_is_400(fhir: TestClient) -> None:
    resource = {**patient(), "id": "a"}
    response = fhir.put("/fhir/Patient/b", json=resource, headers={"Content-Type": FHIR})
    assert response.status_code == 400
    assert "does not match" in response.json()["issue"][0]["diagnostics"]


def test_if_match_mismatch_is_412(fhir: TestClient) -> None:
    created = create(fhir, patient())
    url = f"/fhir/Patient/{created['id']}"
    changed = {**created, "gender": "female"}
    stale = fhir.put(url, json=changed, headers={"Content-Type": FHIR, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    fresh = fhir.put(url, json=changed, headers={"Content-Type": FHIR, "If-Match": 'W/"1"'})
    assert fresh.status_code == 200


def test_delete_then_read_is_410_and_history_keeps_it(fhir: TestClient) -> None:
    created = create(fhir, patient())
    url = f"/fhir/Patient/{created['id']}"
    assert fhir.delete(url).status_code == 204
    gone = fhir.get(url)
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    history = fhir.get(f"{url}/_history").json()
    assert history["type"] == "history"
    assert history["total"] == 2
    assert history["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in history["entry"][0]


def test_json_patch(fhir: TestClient) -> None:
    created = create(fhir, patient())
    ops = [{"op": "replace", "path": "/birthDate", "value": "1941-03-03"}]
    response = fhir.patch(
        f"/fhir/Patient/{created['id']}", json=ops, headers={"Content-Type": "application/json-patch+json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["birthDate"] == "1941-03-03"
    assert response.json()["meta"]["versionId"] == "2"


def test_json_patch_that_breaks_the_resource_is_422(fhir: TestClient) -> None:
    created = create(fhir, patient())
    ops = [{"op": "replace", "path": "/birthDate", "value": 12}]
    response = fhir.patch(
        f"/fhir/Patient/{created['id']}", json=ops, headers={"Content-Type": "application/json-patch+json"}
    )
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Patient.birthDate"]


def test_prefer_return_minimal_and_operation_outcome(fhir: TestClient) -> None:
    minimal = fhir.post(
        "/fhir/Patient", json=patient(), headers={"Content-Type": FHIR, "Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert "Location" in minimal.headers
    outcome = fhir.post(
        "/fhir/Patient",
        json=patient("P2"),
        headers={"Content-Type": FHIR, "Prefer": "return=OperationOutcome"},
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"


def test_malformed_json_is_400(fhir: TestClient) -> None:
    response = fhir.post("/fhir/Patient", content=b"{not json", headers={"Content-Type": FHIR})
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "structure"


def test_wrong_content_type_is_415(fhir: TestClient) -> None:
    response = fhir.post("/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/xml"})
    assert response.status_code == 415


def test_invalid_resource_is_422_with_expression(fhir: TestClient) -> None:
    bad = {"resourceType": "Task", "status": "requested", "intent": "order", "for": "Patient/1"}
    response = fhir.post("/fhir/Task", json=bad, headers={"Content-Type": FHIR})
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Task.for"]


def test_resource_type_mismatch_is_400(fhir: TestClient) -> None:
    response = fhir.post("/fhir/Task", json=patient(), headers={"Content-Type": FHIR})
    assert response.status_code == 400


def test_too_large_body_is_413(fhir: TestClient, settings: object) -> None:
    big = patient()
    big["text"] = {"status": "generated", "div": "<div>" + "x" * (11 * 1024 * 1024) + "</div>"}
    response = fhir.post("/fhir/Patient", json=big, headers={"Content-Type": FHIR})
    assert response.status_code == 413


def test_method_not_allowed_is_405(fhir: TestClient) -> None:
    response = fhir.put("/fhir/Patient", json=patient(), headers={"Content-Type": FHIR})
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_audit_event_is_append_only(fhir: TestClient) -> None:
    event = {
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
        "recorded": "2026-11-24T10:00:00Z",
        "agent": [{"requestor": True, "who": {"display": "batch"}}],
        "source": {"observer": {"display": "test"}},
    }
    created = create(fhir, event)
    assert (
        fhir.put(
            "/fhir/AuditEvent/imported-1", json={**event, "id": "imported-1"}, headers={"Content-Type": FHIR}
        ).status_code
        == 201
    )
    response = fhir.put(f"/fhir/AuditEvent/{created['id']}", json=created, headers={"Content-Type": FHIR})
    assert response.status_code == 405
    assert fhir.delete(f"/fhir/AuditEvent/{created['id']}").status_code == 405


def test_type_and_system_history(fhir: TestClient) -> None:
    create(fhir, patient("A"))
    create(fhir, patient("B"))
    org = create(fhir, {"resourceType": "Organization", "name": "SAAD Les Tilleuls"})
    assert fhir.get("/fhir/Patient/_history").json()["total"] == 2
    system = fhir.get("/fhir/_history", params={"_count": 2}).json()
    assert system["total"] >= 3
    assert len(system["entry"]) == 2
    assert any(link["relation"] == "next" for link in system["link"])
    newest = fhir.get("/fhir/_history", params={"_count": 50}).json()["entry"]
    stored = [e["resource"] for e in newest if e["resource"]["resourceType"] != "AuditEvent"]
    assert stored[0]["id"] == org["id"]


def test_history_since_and_bad_since(fhir: TestClient) -> None:
    created = create(fhir, patient("H1"))
    stamp = created["meta"]["lastUpdated"]
    fhir.put(
        f"/fhir/Patient/{created['id']}", json={**created, "gender": "male"}, headers={"Content-Type": FHIR}
    )
    since = fhir.get(f"/fhir/Patient/{created['id']}/_history", params={"_since": stamp}).json()
    assert since["total"] == 2
    later = fhir.get(f"/fhir/Patient/{created['id']}/_history", params={"_since": "2999-01-01"}).json()
    assert later["total"] == 0
    bad = fhir.get(f"/fhir/Patient/{created['id']}/_history", params={"_since": "yesterday"})
    assert bad.status_code == 400
    assert "_since" in bad.json()["issue"][0]["diagnostics"]
