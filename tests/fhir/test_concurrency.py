"""Concurrency (FHIR R4 http.html#concurrency, #ccreate): nothing duplicated, nothing overwritten.

Twenty threads hit the real database at once through the HTTP app.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from starlette.testclient import TestClient

FHIR = "application/fhir+json"
WORKERS = 20


def _all_at_once(count: int, action: object) -> list[int]:
    barrier = Barrier(count)

    def run(i: int) -> int:
        barrier.wait()
        return action(i)  # type: ignore[operator, no-any-return]

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_concurrent_conditional_creates_make_exactly_one(fhir: TestClient) -> None:
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "2410375123456"}],
    }
    headers = {"Content-Type": FHIR, "If-None-Exist": "identifier=urn:oid:1.2.250.1.213.1.4.8|2410375123456"}
    statuses = _all_at_once(
        WORKERS, lambda _i: fhir.post("/fhir/Patient", json=resource, headers=headers).status_code
    )
    assert sorted(statuses) == [200] * (WORKERS - 1) + [201]
    found = fhir.get(
        "/fhir/Patient", params={"identifier": "urn:oid:1.2.250.1.213.1.4.8|2410375123456"}
    ).json()
    assert found["total"] == 1


def test_concurrent_updates_with_same_if_match_one_wins(fhir: TestClient) -> None:
    created = fhir.post(
        "/fhir/Task",
        json={"resourceType": "Task", "status": "requested", "intent": "order"},
        headers={"Content-Type": FHIR},
    ).json()
    url = f"/fhir/Task/{created['id']}"

    def update(i: int) -> int:
        body = {**created, "description": f"writer {i}"}
        return fhir.put(url, json=body, headers={"Content-Type": FHIR, "If-Match": 'W/"1"'}).status_code

    statuses = _all_at_once(WORKERS, update)
    assert sorted(statuses) == [200] + [412] * (WORKERS - 1)
    final = fhir.get(url).json()
    assert final["meta"]["versionId"] == "2"
    assert fhir.get(f"{url}/_history").json()["total"] == 2


def test_concurrent_create_on_update_same_id(fhir: TestClient) -> None:
    def put(i: int) -> int:
        body = {"resourceType": "Organization", "id": "saad-tilleuls", "name": f"SAAD {i}"}
        return fhir.put(
            "/fhir/Organization/saad-tilleuls", json=body, headers={"Content-Type": FHIR}
        ).status_code

    statuses = _all_at_once(WORKERS, put)
    assert statuses.count(201) == 1
    assert all(s in (200, 201, 409) for s in statuses)
    history = fhir.get("/fhir/Organization/saad-tilleuls/_history").json()
    assert history["total"] == statuses.count(201) + statuses.count(200)
