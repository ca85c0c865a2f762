"""Operational safety: a database outage is a clean 503, and logs carry no personal data."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade

FHIR = "application/fhir+json"


def test_unreachable_database_answers_503_operation_outcome() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/unreachable"
    app = create_app(Settings(database_url=url, base_url="http://testserver"), Database(url))
    client = TestClient(app, raise_server_exceptions=False)
    token = client.post("/auth/token", data={"grant_type": "client_credentials"}, auth=("a", "b"))
    assert token.status_code == 503
    assert token.json()["resourceType"] == "OperationOutcome"
    assert "psycopg" not in token.text
    assert "127.0.0.1:1" not in token.text
    ready = client.get("/health/ready")
    assert ready.status_code == 503


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> _Collect:
    from fhir_gateway.observability.logs import JsonFormatter

    handler = _Collect()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("fhir_gateway")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_logs_hold_no_personal_data_on_a_full_cycle(fhir: TestClient, log_lines: _Collect) -> None:
    nir, family = "2410375123456", "Lefebvre-Secret"
    patient = {
        "resourceType": "Patient",
        "name": [{"family": family}],
        "birthDate": "1941-03-02",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": nir}],
    }
    created = fhir.post("/fhir/Patient", json=patient, headers={"Content-Type": FHIR}).json()
    fhir.get(f"/fhir/Patient/{created['id']}")
    fhir.get("/fhir/Patient", params={"family": family, "identifier": nir})
    fhir.put(
        f"/fhir/Patient/{created['id']}", json={**created, "gender": "female"}, headers={"Content-Type": FHIR}
    )
    fhir.post("/fhir/Patient", json={**patient, "birthDate": 5}, headers={"Content-Type": FHIR})
    assert len(log_lines.lines) >= 5
    text = "\n".join(log_lines.lines)
    for secret in (nir, family, "1941-03-02"):
        assert secret not in text
    assert '"route":"/fhir/{res_type}/{res_id}"' in text
    assert '"request_id"' in text


def test_metrics_count_interactions_and_consent_denials(fhir: TestClient, make_client: object) -> None:
    patient = fhir.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR}
    ).json()
    fhir.get(f"/fhir/Patient/{patient['id']}")
    partner = make_client("system/*.rs", organization="Organization/outsider")  # type: ignore[operator]
    partner.get(f"/fhir/Patient/{patient['id']}")
    text = fhir.get("/metrics").text
    assert 'fhir_requests_total{interaction="read",resource_type="Patient",status="200"}' in text
    assert 'fhir_consent_denials_total{resource_type="Patient"}' in text
    assert "fhir_request_seconds_bucket" in text
    assert "fhir_audit_queue_depth" in text


def test_metrics_need_a_token(http: TestClient) -> None:
    assert http.get("/metrics").status_code == 401


def test_ready_only_when_the_schema_is_at_the_newest_migration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    database = Database(url)
    client = TestClient(create_app(Settings(database_url=url, subscription_worker_in_serve=False), database))
    pending = client.get("/health/ready")
    assert pending.status_code == 503
    assert pending.json()["database"] == "migrations pending"
    upgrade(database)
    assert client.get("/health/ready").json() == {"status": "ok"}
