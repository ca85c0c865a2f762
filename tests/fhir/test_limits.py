"""Configured limits answer with an OperationOutcome and the right status (issue 11)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from tests.support.auth import issue_token, register_client

FHIR = "application/fhir+json"


def _client(settings: Settings, database: Database, **overrides: object) -> TestClient:
    app: FastAPI = create_app(settings.model_copy(update=overrides), database)
    client = TestClient(app)
    client_id, secret = register_client(database, "limited", "system/*.cruds", trusted=True)
    client.headers["Authorization"] = f"Bearer {issue_token(client, client_id, secret)}"
    return client


def test_json_nested_too_deep_is_400(settings: Settings, database: Database) -> None:
    client = _client(settings, database, max_json_depth=10)
    deep: dict[str, object] = {"url": "http://example.org/x"}
    for _ in range(12):
        deep = {"url": "http://example.org/x", "extension": [deep]}
    body = {"resourceType": "Patient", "extension": [deep]}
    response = client.post("/fhir/Patient", json=body, headers={"Content-Type": FHIR})
    assert response.status_code == 400
    assert "nested deeper" in response.json()["issue"][0]["diagnostics"]


def test_body_over_configured_size_is_413(settings: Settings, database: Database) -> None:
    client = _client(settings, database, max_body_bytes=200)
    body = {"resourceType": "Patient", "name": [{"family": "x" * 300}]}
    response = client.post("/fhir/Patient", json=body, headers={"Content-Type": FHIR})
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"


def test_rate_limit_answers_429_with_retry_after(settings: Settings, database: Database) -> None:
    client = _client(settings, database, rate_limit_per_second=0.5, rate_limit_burst=3)
    statuses = [client.get("/fhir/Patient/x").status_code for _ in range(4)]
    assert statuses[:3] == [404, 404, 404]
    assert statuses[3] == 429
    limited = client.get("/fhir/Patient/x")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["issue"][0]["code"] == "throttled"


def test_dates_at_the_ends_of_the_calendar_are_stored_and_searched(
    settings: Settings, database: Database
) -> None:
    """Were a 500 (date arithmetic overflowing year 9999 or year 1 shifted to UTC)."""
    client = _client(settings, database)
    for pid, born in (("last", "9999-12-31"), ("first", "0001-01-01")):
        body = {"resourceType": "Patient", "id": pid, "birthDate": born}
        assert (
            client.put(f"/fhir/Patient/{pid}", json=body, headers={"Content-Type": FHIR}).status_code == 201
        )
    task = {"resourceType": "Task", "id": "t", "status": "requested", "intent": "order",
            "authoredOn": "0001-01-01T00:00:00+01:00",
            "executionPeriod": {"end": "9999-12-31T23:59:59-01:00"}}  # fmt: skip
    assert client.put("/fhir/Task/t", json=task, headers={"Content-Type": FHIR}).status_code == 201
    found = client.get("/fhir/Patient", params={"birthdate": "9999-12-31"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["last"]
    for value in ("ge9999-12-31T23:59:59-01:00", "le0001-01-01T00:00:00+01:00", "9999", "0001"):
        assert client.get("/fhir/Patient", params={"birthdate": value}).status_code == 200


def test_a_code_too_long_to_search_is_422_on_both_databases(settings: Settings, database: Database) -> None:
    """PostgreSQL refused it with a database error, SQLite stored it: now both say why."""
    client = _client(settings, database)
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "v" * 256}]}
    answer = client.post("/fhir/Patient", json=body, headers={"Content-Type": FHIR})
    assert answer.status_code == 422
    issue = answer.json()["issue"][0]
    assert issue["code"] == "too-long"
    assert issue["expression"] == ["identifier"]
    assert client.get("/fhir/Patient").json()["total"] == 0
    body["identifier"][0]["value"] = "v" * 255
    assert client.post("/fhir/Patient", json=body, headers={"Content-Type": FHIR}).status_code == 201


def test_count_and_cursor_are_bounded(settings: Settings, database: Database) -> None:
    client = _client(settings, database, max_count=3)
    for k in range(5):
        body = {"resourceType": "Patient", "id": f"p{k}"}
        assert client.put(f"/fhir/Patient/p{k}", json=body, headers={"Content-Type": FHIR}).status_code == 201
    page = client.get("/fhir/Patient", params={"_count": "1000000"}).json()
    assert len(page["entry"]) == 3  # _count above the maximum: the maximum
    assert "_count=3" in next(x["url"] for x in page["link"] if x["relation"] == "next")
    for name, value in (("_count", "-1"), ("_count", "1e3"), ("_cursor", "x"), ("_cursor", "a" * 10**4)):
        refused = client.get("/fhir/Patient", params={name: value})
        assert refused.status_code == 400
        assert refused.json()["issue"][0]["expression"] == [name]


def test_include_fan_out_is_bounded(settings: Settings, database: Database) -> None:
    client = _client(settings, database, max_include=4)
    assert client.put("/fhir/Patient/p", json={"resourceType": "Patient", "id": "p"},
                      headers={"Content-Type": FHIR}).status_code == 201  # fmt: skip
    for k in range(10):
        task = {"resourceType": "Task", "id": f"t{k}", "status": "requested", "intent": "order",
                "for": {"reference": "Patient/p"}}  # fmt: skip
        assert client.put(f"/fhir/Task/t{k}", json=task, headers={"Content-Type": FHIR}).status_code == 201
    bundle = client.get("/fhir/Patient", params={"_id": "p", "_revinclude": "Task:patient"}).json()
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes.count("match") == 1
    assert modes.count("include") == 4


def test_a_partner_file_over_the_body_limit_is_413(settings: Settings, database: Database) -> None:
    client = _client(settings, database, max_body_bytes=1000)
    answer = client.post("/fhir/$import-partner", params={"format": "saad-beneficiaires"},
                         content=b"x;" * 1000, headers={"Content-Type": "text/csv"})  # fmt: skip
    assert answer.status_code == 413
    assert answer.json()["resourceType"] == "OperationOutcome"
