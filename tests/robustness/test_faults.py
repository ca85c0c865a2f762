"""Faults (issue 11): the database drops its connections under load, becomes read-only, or
refuses writes. Requests fail cleanly (503 OperationOutcome, Retry-After), nothing answered
201 is lost, and the gateway recovers by itself."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from tests.e2e.conftest import running_gateway
from tests.support.auth import issue_token, register_client
from tests.support.databases import engine_kind

FHIR = "application/fhir+json"
postgres_only = pytest.mark.skipif(engine_kind() != "postgresql", reason="PostgreSQL server faults")


def _admin(database: Database) -> tuple[Engine, str]:
    url = database.engine.url
    return create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT"), str(url.database)


def _drop_connections(database: Database) -> None:
    """What a PostgreSQL restart does to the gateway: every server connection is cut."""
    admin, name = _admin(database)
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": name},
        )
    admin.dispose()


def _trusted_headers(server: Any, name: str) -> dict[str, str]:
    """A trusted client registered with the live gateway's CLI, and its token's headers."""
    secret = f"s3cret-{name}"
    added = server.cli("clients", "add", name, "--scope", "system/*.cruds", "--secret", secret, "--trusted")
    assert added.returncode == 0
    token = httpx.post(
        server.base_url + "/auth/token", data={"grant_type": "client_credentials"}, auth=(name, secret)
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}", "Content-Type": FHIR}


def _patient(n: str) -> dict[str, object]:
    return {"resourceType": "Patient", "id": n, "name": [{"family": f"F{n}"}]}


@postgres_only
def test_connections_cut_under_load_give_503_then_recovery_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    """A live ``fhir-gateway serve`` (one event loop, its real pools) under 4 concurrent clients."""
    with running_gateway(tmp_path) as server:
        headers = _trusted_headers(server, "load")
        acknowledged: list[str] = []
        statuses: list[int] = []
        lock = threading.Lock()

        def load(worker: int) -> None:
            with httpx.Client(base_url=server.fhir, headers=headers, timeout=30) as client:
                for k in range(40):
                    pid = f"w{worker}-{k}"
                    answer = client.put(f"/Patient/{pid}", json=_patient(pid))
                    read = client.get(f"/Patient/w{worker}-{max(k - 1, 0)}")
                    with lock:
                        statuses.extend([answer.status_code, read.status_code])
                        if answer.status_code == 201:
                            acknowledged.append(pid)
                        for response in (answer, read):
                            if response.status_code == 503:
                                assert response.json()["resourceType"] == "OperationOutcome"
                                assert response.headers["Retry-After"]

        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        database = Database(server.env["FHIR_GATEWAY_DATABASE_URL"])
        for _ in range(3):
            time.sleep(0.3)
            _drop_connections(database)
        for thread in threads:
            thread.join()
        database.dispose()
        assert set(statuses) <= {200, 201, 404, 503}, sorted(set(statuses))
        with httpx.Client(base_url=server.fhir, headers=headers) as client:
            for pid in acknowledged:  # recovered, and every acknowledged write is there
                answer = client.get(f"/Patient/{pid}")
                assert answer.status_code == 200, answer.text
            assert client.put("/Patient/after", json=_patient("after")).status_code == 201


def _wait_until_cut(database: Database) -> None:
    """Until the server has ended every session of the gateway's database (it does so
    asynchronously after ``pg_terminate_backend``)."""
    admin, name = _admin(database)
    with admin.connect() as conn:
        for _ in range(100):
            left = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"),
                {"db": name},
            ).scalar()
            if left == 0:
                break
            time.sleep(0.05)
    admin.dispose()


@postgres_only
def test_connections_cut_while_idle_cost_no_request_an_error(tmp_path: Path) -> None:
    """A PostgreSQL restart between requests: the gateway's kept and pooled connections are
    all dead, and the next reads and writes still succeed (the dead ones are noticed
    before use, not by failing a request)."""
    with running_gateway(tmp_path) as server:
        headers = _trusted_headers(server, "idle")

        def busy(worker: int) -> None:  # several connections of each kind open and kept
            with httpx.Client(base_url=server.fhir, headers=headers, timeout=30) as client:
                for k in range(8):
                    pid = f"i{worker}-{k}"
                    assert client.put(f"/Patient/{pid}", json=_patient(pid)).status_code == 201
                    assert client.get(f"/Patient/{pid}").status_code == 200

        threads = [threading.Thread(target=busy, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        database = Database(server.env["FHIR_GATEWAY_DATABASE_URL"])
        _drop_connections(database)
        _wait_until_cut(database)
        database.dispose()
        with httpx.Client(base_url=server.fhir, headers=headers) as client:
            answers = [client.get(f"/Patient/i{w}-0") for w in range(8)]
            answers += [client.put(f"/Patient/after-{n}", json=_patient(f"after-{n}")) for n in range(3)]
            answers.append(client.get("/Patient", params={"_count": "5"}))
        failed = [(a.request.url, a.status_code, a.text) for a in answers if a.status_code >= 300]
        assert not failed, failed


@postgres_only
def test_a_read_only_postgresql_is_reported_and_reads_go_on(fhir: TestClient) -> None:
    database: Database = fhir.app.state.database
    assert (
        fhir.put("/fhir/Patient/before", json=_patient("before"), headers={"Content-Type": FHIR}).status_code
        == 201
    )
    admin, name = _admin(database)
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    try:
        _drop_connections(database)
        answers = [
            fhir.put("/fhir/Patient/x", json=_patient("x"), headers={"Content-Type": FHIR}) for _ in range(3)
        ]
        refused = answers[-1]
        assert refused.status_code == 503
        assert "read-only" in refused.json()["issue"][0]["diagnostics"]
        assert "SQL" not in refused.text
        assert fhir.get("/fhir/Patient/before").status_code == 200
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))
        admin.dispose()
        _drop_connections(database)
    assert fhir.put("/fhir/Patient/x", json=_patient("x"), headers={"Content-Type": FHIR}).status_code in (
        201,
        503,
    )
    assert fhir.put("/fhir/Patient/y", json=_patient("y"), headers={"Content-Type": FHIR}).status_code == 201


@postgres_only
def test_a_write_whose_session_the_server_ends_midway_gets_503_and_stores_nothing(fhir: TestClient) -> None:
    """The server ends the session during a write's statement (a restart, an administrator's
    ``pg_terminate_backend``): asyncpg reports the connection closed midway; the client gets a
    503 OperationOutcome with Retry-After, not a 500, nothing of the write is stored, and the
    next write goes through on a new connection."""
    database: Database = fhir.app.state.database
    with database.transaction(write=True) as conn:
        conn.execute(
            text(
                "CREATE FUNCTION cut_session() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF NEW.res_id = 'cut' THEN PERFORM pg_terminate_backend(pg_backend_pid());"
                " PERFORM pg_sleep(1); END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER cut_session BEFORE INSERT ON resource"
                " FOR EACH ROW EXECUTE FUNCTION cut_session()"
            )
        )
    try:
        cut = fhir.put("/fhir/Patient/cut", json=_patient("cut"), headers={"Content-Type": FHIR})
        assert cut.status_code == 503, cut.text
        assert cut.json()["resourceType"] == "OperationOutcome"
        assert cut.headers["Retry-After"]
        assert "SQL" not in cut.text
        kept = fhir.put("/fhir/Patient/kept", json=_patient("kept"), headers={"Content-Type": FHIR})
        assert kept.status_code == 201
        assert fhir.get("/fhir/Patient/cut").status_code == 404
    finally:
        with database.transaction(write=True) as conn:
            conn.execute(text("DROP TRIGGER cut_session ON resource"))
            conn.execute(text("DROP FUNCTION cut_session()"))


def test_a_read_only_sqlite_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / f"ro-{uuid.uuid4().hex[:6]}.db"
    writable = Database(f"sqlite:///{path}")
    from fhir_gateway.storage.migrate import upgrade

    upgrade(writable)
    client_id, secret = register_client(writable, "ro", "system/*.cruds", trusted=True)

    def app_on(url: str) -> TestClient:
        settings = Settings(database_url=url, base_url="http://testserver", audit_mode="sync",
                            subscription_worker_in_serve=False, demo_client=False)  # fmt: skip
        return TestClient(create_app(settings, Database(url)), raise_server_exceptions=False)

    token = issue_token(app_on(f"sqlite:///{path}"), client_id, secret)  # signing key created while writable
    writable.dispose()
    client = app_on(f"sqlite:///file:{path}?mode=ro&uri=true")
    client.headers.update({"Authorization": f"Bearer {token}"})
    assert client.get("/fhir/Patient").status_code == 200
    refused = client.put("/fhir/Patient/x", json=_patient("x"), headers={"Content-Type": FHIR})
    assert refused.status_code == 503
    assert "read-only" in refused.json()["issue"][0]["diagnostics"]


class _DiskFull(Exception):
    """What psycopg raises when PostgreSQL refuses a new session for lack of WAL space."""

    sqlstate = "53100"


def test_a_session_refused_because_the_storage_is_full_says_so(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While PostgreSQL's WAL filesystem is full, even opening a session can fail with SQLSTATE
    53100 (seen in tests/robustness/test_wal_full.py): the 503 names the full storage instead of
    an unreachable server; any other connection failure stays "not reachable"."""
    from sqlalchemy.exc import OperationalError

    from fhir_gateway.kit.errors import ServiceUnavailable
    from fhir_gateway.storage.faults import FULL

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("connect", {}, _DiskFull("could not write to file"))

    monkeypatch.setattr(database.engine, "connect", refuse)
    with pytest.raises(ServiceUnavailable) as caught, database.transaction(write=True):
        pass
    assert caught.value.diagnostics == FULL
    assert caught.value.headers["Retry-After"]

    def down(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("connect", {}, ConnectionRefusedError("refused"))

    monkeypatch.setattr(database.engine, "connect", down)
    with pytest.raises(ServiceUnavailable) as caught, database.transaction():
        pass
    assert caught.value.diagnostics == "The database is not reachable; try again shortly"
