"""Operational safety: a database outage is a clean 503; readiness follows the migrations.

Logs and metrics: tests/observability/."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
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
    assert token.headers["Retry-After"] == "5"  # a 503 always says when to come back
    assert token.json()["resourceType"] == "OperationOutcome"
    assert "psycopg" not in token.text
    assert "127.0.0.1:1" not in token.text
    ready = client.get("/health/ready")
    assert ready.status_code == 503


def test_ready_only_when_the_schema_is_at_the_newest_migration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    database = Database(url)
    client = TestClient(create_app(Settings(database_url=url, subscription_worker_in_serve=False), database))
    pending = client.get("/health/ready")
    assert pending.status_code == 503
    assert pending.json()["database"] == "migrations pending"
    upgrade(database)
    assert client.get("/health/ready").json() == {"status": "ok"}
    with database.engine.begin() as conn:  # a newer release migrated: this replica is the old one
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_next_release'"))
    newer = client.get("/health/ready")
    assert newer.status_code == 503
    assert newer.json()["database"] == "schema newer than this server"


def test_liveness_and_readiness_need_no_token(http: TestClient) -> None:
    live = http.get("/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    ready = http.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok"}
