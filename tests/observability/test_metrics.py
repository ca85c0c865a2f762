"""Prometheus metrics at /metrics (issue 10): requests and latency by interaction and type,
consent denials, audit queue depth; the outbox depth is tested in
tests/subscriptions/test_outbox.py and the partner import rows in tests/mappings/test_http.py."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.support.metrics import metric

FHIR = {"Content-Type": "application/fhir+json"}


def test_requests_are_counted_and_timed_by_interaction_and_type(fhir: TestClient) -> None:
    before = {
        kind: metric(fhir, "fhir_requests_total", interaction=kind, resource_type=t, status=s)
        for kind, t, s in (
            ("create", "Patient", "201"),
            ("read", "Patient", "200"),
            ("search-type", "Task", "200"),
            ("transaction", "", "200"),
        )
    }
    seconds_before = metric(fhir, "fhir_request_seconds_count", interaction="read", resource_type="Patient")
    patient = fhir.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()
    fhir.get(f"/fhir/Patient/{patient['id']}")
    fhir.get(f"/fhir/Patient/{patient['id']}")
    fhir.get("/fhir/Task")
    fhir.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": []}, headers=FHIR)
    after = {
        kind: metric(fhir, "fhir_requests_total", interaction=kind, resource_type=t, status=s)
        for kind, t, s in (
            ("create", "Patient", "201"),
            ("read", "Patient", "200"),
            ("search-type", "Task", "200"),
            ("transaction", "", "200"),
        )
    }
    assert {k: after[k] - before[k] for k in after} == {
        "create": 1,
        "read": 2,
        "search-type": 1,
        "transaction": 1,
    }
    seconds = metric(fhir, "fhir_request_seconds_count", interaction="read", resource_type="Patient")
    assert seconds - seconds_before == 2
    text = fhir.get("/metrics").text
    assert 'fhir_request_seconds_bucket{interaction="read",le="0.005",resource_type="Patient"}' in text


def test_unknown_types_are_one_label(fhir: TestClient) -> None:
    before = metric(
        fhir, "fhir_requests_total", interaction="search-type", resource_type="unknown", status="404"
    )
    fhir.get("/fhir/Dupont")
    fhir.get("/fhir/Martin")
    after = metric(
        fhir, "fhir_requests_total", interaction="search-type", resource_type="unknown", status="404"
    )
    assert after - before == 2
    assert "Dupont" not in fhir.get("/metrics").text


def test_consent_denials_and_audit_queue(fhir: TestClient, make_client: ClientFactory) -> None:
    patient = fhir.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()
    before = metric(fhir, "fhir_consent_denials_total", resource_type="Patient")
    partner = make_client("system/*.rs", organization="Organization/outsider")
    assert partner.get(f"/fhir/Patient/{patient['id']}").status_code == 404
    assert metric(fhir, "fhir_consent_denials_total", resource_type="Patient") - before == 1
    assert "fhir_audit_queue_depth 0.0" in fhir.get("/metrics").text  # sync audit in tests


def test_metrics_need_a_token(http: TestClient) -> None:
    assert http.get("/metrics").status_code == 401
