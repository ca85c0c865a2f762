"""``HEAD``: the ``GET`` of the same URL without its body (RFC 9110 §9.3.2), through the same
scopes, consent, audit and errors (fhir_gateway/front.py)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.testclient import TestClient

from tests.conftest import ClientFactory

TASK = {
    "resourceType": "Task",
    "status": "requested",
    "intent": "order",
    "for": {"reference": "Patient/p-head"},
}
SAME_HEADERS = ("ETag", "Last-Modified", "Content-Type", "Content-Length")


def _reads_of(fhir: TestClient, task_id: str) -> int:
    bundle = fhir.get("/fhir/AuditEvent", params={"entity": f"Task/{task_id}", "subtype": "read"}).json()
    return int(bundle["total"])


def test_head_of_a_read_has_the_reads_status_and_headers_and_no_body(fhir: TestClient) -> None:
    task_id = fhir.post("/fhir/Task", json=TASK).json()["id"]
    got = fhir.get(f"/fhir/Task/{task_id}")
    reads_before = _reads_of(fhir, task_id)
    head = fhir.head(f"/fhir/Task/{task_id}")
    assert head.status_code == 200
    assert head.content == b""
    assert {h: head.headers[h] for h in SAME_HEADERS} == {h: got.headers[h] for h in SAME_HEADERS}
    assert int(head.headers["Content-Length"]) == len(got.content)
    assert len(head.headers["X-Request-ID"]) == 32
    assert _reads_of(fhir, task_id) == reads_before + 1  # audited as the read it is


def test_head_answers_what_get_answers(app: FastAPI, fhir: TestClient, make_client: ClientFactory) -> None:
    task_id = fhir.post("/fhir/Task", json=TASK).json()["id"]
    partner = make_client("system/Task.rs", organization="Organization/no-consent")
    anonymous = TestClient(app)
    for client, path in [
        (fhir, "/fhir/Task/nobody"),  # 404
        (fhir, "/fhir/Unknown/x"),  # 404, not a type
        (anonymous, f"/fhir/Task/{task_id}"),  # 401
        (partner, f"/fhir/Task/{task_id}"),  # the person's consent decides
        (fhir, "/fhir/Task?patient=Patient/p-head"),  # search
        (fhir, f"/fhir/Task/{task_id}/_history"),
        (anonymous, "/fhir/metadata"),  # a route of FastAPI's stack
        (fhir, "/auth/token"),  # POST only: 405
    ]:
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers.get("WWW-Authenticate") == got.headers.get("WWW-Authenticate"), path
        assert head.headers.get("Allow") == got.headers.get("Allow"), path
    assert fhir.head("/auth/token").status_code == 405
