"""SQL injection attempts in every kind of search parameter, in sorting and paging (issue 11).

Every value reaches the database as a bound parameter: the answers are 200 with nothing the
caller may not see, or 400 naming the parameter; never a 5xx, never a leak, and the tables
are intact afterwards.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory

PAYLOADS = [
    "' OR '1'='1",
    "x' OR 1=1 --",
    "1; DROP TABLE resource; --",
    "') UNION SELECT content FROM resource --",
    "%' OR res_type LIKE '%",
    '" OR ""="',
    "\\'; SELECT pg_sleep(5); --",
    "1e999",
    "\x00",
    "Patient/p1' OR 'a'='a",
]
QUERIES = [
    ("Task", "status"),  # token
    ("Patient", "identifier"),  # token with system|value
    ("Patient", "name"),  # string
    ("Patient", "name:exact"),
    ("Patient", "birthdate"),  # date
    ("Task", "authored-on"),
    ("Task", "patient"),  # reference
    ("Task", "owner"),
    ("Task", "patient.name"),  # chain
    ("Patient", "_has:Task:patient:status"),  # reverse chain
    ("Patient", "_id"),
    ("Patient", "_lastUpdated"),
    ("Task", "_sort"),
    ("Task", "_count"),
    ("Task", "_cursor"),
    ("Task", "_include"),
    ("Task", "_elements"),
    ("Consent", "actor"),
    ("Organization", "name"),
]


@pytest.fixture
def seeded(fhir: TestClient) -> int:
    fhir_json = {"Content-Type": "application/fhir+json"}
    fhir.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "name": [{"family": "Secret"}],
                                       "birthDate": "1940-01-01"}, headers=fhir_json)  # fmt: skip
    task = {"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order",
            "for": {"reference": "Patient/p1"}, "authoredOn": "2026-01-01"}  # fmt: skip
    fhir.put("/fhir/Task/t1", json=task, headers=fhir_json)
    return int(fhir.get("/fhir/Task", params={"_summary": "count"}).json()["total"])


@pytest.mark.parametrize(("res_type", "name"), QUERIES)
def test_injection_attempts_are_inert(
    fhir: TestClient, make_client: ClientFactory, seeded: int, res_type: str, name: str
) -> None:
    partner = make_client("system/*.rs", organization="Organization/stranger")
    for payload in PAYLOADS:
        answer = partner.get(f"/fhir/{res_type}", params={name: payload})
        assert answer.status_code in (200, 400), (name, payload, answer.text[:300])
        body = answer.json()
        if answer.status_code == 400:
            assert body["resourceType"] == "OperationOutcome"
            assert "SELECT" not in body["issue"][0]["diagnostics"].upper().replace(payload.upper(), "")
        else:
            assert body.get("total", 0) == 0, (name, payload)  # the stranger sees nobody
            assert body.get("entry", []) == []
        trusted = fhir.get(f"/fhir/{res_type}", params={name: payload})
        assert trusted.status_code in (200, 400), (name, payload, trusted.text[:300])
        if trusted.status_code == 200 and not name.startswith(
            ("_sort", "_count", "_cursor", "_include", "_elements")
        ):
            assert trusted.json()["total"] == 0, (name, payload)  # a condition, not SQL: matches nothing
    assert int(fhir.get("/fhir/Task", params={"_summary": "count"}).json()["total"]) == seeded
    assert fhir.get("/fhir/Patient/p1").status_code == 200


def test_nul_characters_are_refused_alike_on_every_database(fhir: TestClient) -> None:
    body = '{"resourceType": "Patient", "name": [{"family": "a\\u0000b"}]}'
    answer = fhir.post("/fhir/Patient", content=body, headers={"Content-Type": "application/fhir+json"})
    assert answer.status_code == 400
    assert "NUL" in answer.json()["issue"][0]["diagnostics"]
    assert fhir.get("/fhir/Patient/a%00b").status_code in (400, 404)
    searched = fhir.get("/fhir/Patient", params={"name": "a\x00b"})
    assert searched.status_code == 400
    assert searched.json()["issue"][0]["expression"] == ["name"]
