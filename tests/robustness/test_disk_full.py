"""A full disk (issue 11): reported, never hidden, nothing half-written, and recovery.

The database lives on a small tmpfs mounted for the test (the SQLite file; for PostgreSQL a
tablespace holding the whole test database), which a filler file then fills up. Writes are
answered 503 with an OperationOutcome naming the cause (no SQL, no stack trace) while reads
go on; a transaction Bundle refused half-way leaves none of its entries; once the filler is
removed, writes succeed again without a restart. Mounting needs root (CAP_SYS_ADMIN): where
it is refused the test is skipped and says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.faults import FULL
from fhir_gateway.storage.migrate import upgrade
from tests.e2e.conftest import BIN
from tests.mappings.conftest import SAMPLES
from tests.support.auth import issue_token, register_client
from tests.support.bulky import big_patient, big_transaction
from tests.support.databases import DEFAULT_PG_URL, engine_kind
from tests.support.filesystems import fill, tiny_filesystem

FHIR = "application/fhir+json"


@contextmanager
def _database_on(folder: Path) -> Iterator[str]:
    """A migrated database stored on ``folder``'s filesystem."""
    if engine_kind() == "sqlite":
        yield f"sqlite:///{folder / 'gateway.db'}"
        return
    server = os.environ.get("FHIR_GATEWAY_TEST_PG_URL", DEFAULT_PG_URL).rsplit("/", 1)[0]
    space = folder / "tablespace"
    space.mkdir()
    shutil.chown(space, "postgres", "postgres")
    name = f"fgw_full_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE TABLESPACE {name} LOCATION '{space}'"))
            conn.execute(text(f'CREATE DATABASE "{name}" TABLESPACE {name}'))
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f"DROP TABLESPACE IF EXISTS {name}"))
        admin.dispose()


ORG = "Organization/saad"


def _cli_import(url: str) -> subprocess.CompletedProcess[str]:
    sample = SAMPLES / "saad-beneficiaires.csv"
    return subprocess.run(
        [
            str(BIN / "fhir-gateway"),
            "import",
            "saad-beneficiaires",
            str(sample),
            "--organization",
            "Organization/saad",
        ],
        env={**os.environ, "FHIR_GATEWAY_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_full_disk_is_reported_nothing_is_half_written_and_writes_resume() -> None:
    size = "6m" if engine_kind() == "sqlite" else "24m"
    with tiny_filesystem(size) as folder, _database_on(folder) as url:
        database = Database(url)
        upgrade(database)
        client_id, secret = register_client(database, "full", "system/*.cruds", trusted=True)
        settings = Settings(database_url=url, base_url="http://testserver", audit_mode="sync",
                            subscription_worker_in_serve=False, demo_client=False)  # fmt: skip
        with TestClient(create_app(settings, database), raise_server_exceptions=False) as client:
            client.headers.update({"Authorization": f"Bearer {issue_token(client, client_id, secret)}"})
            client.headers.update({"Content-Type": FHIR, "Accept": FHIR})
            assert client.put("/fhir/Patient/before", json=big_patient("before")).status_code == 201
            org = {"resourceType": "Organization", "id": "saad", "name": "SAAD"}
            assert client.put("/fhir/Organization/saad", json=org).status_code == 201
            # reads go on over the connections already open: a new PostgreSQL session writes its
            # relation cache file into the database's own directory, on the full disk
            assert client.get("/fhir/Patient/before").status_code == 200
            filler = fill(folder)

            refused = None
            for attempt in range(60):  # pages and WAL frames already there may take a few writes
                answer = client.post("/fhir", json=big_transaction(f"b{attempt}"))
                if answer.status_code != 200:
                    refused = (attempt, answer)
                    break
            assert refused is not None, "the full disk never refused a write"
            attempt, answer = refused
            assert answer.status_code == 503, answer.text
            issue = answer.json()["issue"][0]
            assert answer.json()["resourceType"] == "OperationOutcome"
            assert issue["diagnostics"] == FULL
            assert answer.headers["Retry-After"]
            for word in ("SQL", "INSERT", "Traceback", "sqlite", "psycopg", "No space"):
                assert word not in answer.text
            for k in range(5):  # the transaction refused half-way left none of its entries
                missing = client.get(f"/fhir/Patient/b{attempt}-{k}")
                assert missing.status_code == 404, missing.text
            assert client.get("/fhir/Patient/before").status_code == 200  # reads go on
            imported = _cli_import(url)  # the operator's command says it too, no traceback
            assert imported.returncode == 1, imported.stderr
            assert f"error: {FULL}; nothing of the file was written" in imported.stderr
            traces = [line for line in imported.stderr.splitlines() if line.startswith("Traceback")]
            assert not traces, imported.stderr[-3000:]
            assert "b0-0" not in imported.stderr + answer.text  # logs hold no values (hide_parameters)
            patients = client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]

            filler.unlink()  # space freed: writes resume, no restart
            assert client.put("/fhir/Patient/after", json=big_patient("after")).status_code == 201
            assert client.post("/fhir", json=big_transaction(f"b{attempt}")).status_code == 200
            assert client.get(f"/fhir/Patient/b{attempt}-4").status_code == 200
            assert _cli_import(url).returncode == 0
            after = client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]
            rows = len((SAMPLES / "saad-beneficiaires.csv").read_bytes().strip().splitlines()) - 1
            assert after == patients + 1 + 5 + rows  # nothing of the refused import had stayed
        database.dispose()
