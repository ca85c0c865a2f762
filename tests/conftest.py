"""Shared fixtures: a real database (SQLite or PostgreSQL), the app, and real tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.migrate import upgrade
from tests.support.auth import issue_token, register_client
from tests.support.databases import empty_all_tables, temporary_database_url
from tests.support.worker_process import WorkerProcesses

# Property tests check behaviour, never speed (speed is measured in bench/): no per-example
# deadline, which a busy CI machine would turn into random failures.
hypothesis_settings.register_profile("gateway", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("gateway")

EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "fhir-examples"


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One migrated database for the session (tables emptied between tests)."""
    with temporary_database_url(tmp_path_factory.mktemp("db")) as url:
        db = Database(url, pool_size=4)  # per event loop; tests open several loops at once
        upgrade(db)
        yield db
        db.dispose()


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "database" not in request.fixturenames:
        return
    empty_all_tables(request.getfixturevalue("database"))


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database.url,
        base_url="http://testserver",
        env="development",
        audit_mode="sync",
        subscription_worker_in_serve=False,  # tests drive SubscriptionWorker.run_once themselves
        export_worker_in_serve=False,  # and ExportWorker.run_once
        export_dir=str(tmp_path / "exports"),
        tune_gc=False,  # a full collection per test app would cost minutes (tests/kit/test_gc_tuning.py)
    )


@pytest.fixture
def app(settings: Settings, database: Database) -> FastAPI:
    return create_app(settings, database)


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    """An unauthenticated client."""
    with TestClient(app) as client:
        yield client


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(app: FastAPI, database: Database, http: TestClient) -> Iterator[ClientFactory]:
    """Factory: a TestClient holding a real token for a newly registered OAuth client."""
    opened: list[TestClient] = []
    counter = iter(range(10_000))

    def factory(
        scope: str = "system/*.cruds",
        *,
        organization: str | None = None,
        trusted: bool = False,
        patient: str | None = None,
        break_glass: bool = False,
        headers: dict[str, str] | None = None,
    ) -> TestClient:
        name = f"client-{next(counter)}"
        client_id, secret = register_client(
            database,
            name,
            scope,
            organization=organization,
            trusted=trusted,
            patient=patient,
            break_glass=break_glass,
        )
        token = issue_token(http, client_id, secret)
        client = TestClient(app)
        client.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
        client.headers.update(headers or {})
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.close()


@pytest.fixture
def fhir(make_client: ClientFactory) -> TestClient:
    """A trusted system client (platform integration) with every scope."""
    return make_client("system/*.cruds", trusted=True)


@pytest.fixture
def worker_processes(tmp_path: Path) -> Iterator[WorkerProcesses]:
    """Start ``fhir-gateway worker`` processes; those left running are killed at the test's end."""
    started = WorkerProcesses(tmp_path)
    yield started
    started.kill_left()
