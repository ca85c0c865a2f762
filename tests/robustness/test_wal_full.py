"""PostgreSQL's WAL filesystem full (issue 11): reported, nothing half-written, recovery in place.

The shared test server's disk is never filled. A private cluster (``tests.support.private_postgres``:
initdb and pg_ctl of /usr/lib/postgresql/*/bin, as the ``postgres`` user when run as root) keeps its
data directory on one tmpfs and its ``pg_wal`` on a second, small one (1 MiB WAL segments); no
checkpoint runs during the test, so WAL only grows, as behind a stuck replication slot or a failing
``archive_command``. A filler file takes the WAL filesystem's last bytes and writes go on until
PostgreSQL cannot create its next segment (its log shows the PANIC, checked).

What happens then (seen here): the session that needed the segment PANICs, and only that session
is told why (SQLSTATE 53100, a 503 naming the full storage when it is the gateway's request); the
postmaster cuts every other session (503 "not available") and restarts, its recovery needs WAL
space too and gives up, and the server is down (503 "not reachable") until space is freed and it is
started again. Checked: every refusal is a 503 OperationOutcome with ``Retry-After`` and one of those
plain causes, no SQL, no stack trace, no driver or server message; the transaction refused half-way
left none of its entries; everything acknowledged is still there; once space is freed and
PostgreSQL is back (started again if it stopped), the same gateway, never restarted, writes again.
Skipped, with the reason, where a tmpfs cannot be mounted or a private cluster cannot run.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.faults import FULL
from fhir_gateway.storage.migrate import upgrade
from tests.support.auth import issue_token, register_client
from tests.support.bulky import big_patient, big_transaction
from tests.support.filesystems import fill, tiny_filesystem
from tests.support.private_postgres import Cluster, private_cluster

pytestmark = pytest.mark.long

FHIR = "application/fhir+json"
UNAVAILABLE = (
    "The database is not available; try again shortly",
    "The database is not reachable; try again shortly",
)
# no checkpoint (hence no WAL recycled) during the test; small shared memory
SERVER_SETTINGS = (
    "-c max_wal_size=4GB -c min_wal_size=2MB -c checkpoint_timeout=1d -c shared_buffers=16MB "
    "-c max_connections=40 -c restart_after_crash=on"
)


def _assert_plain_503(answer: Any, allowed: tuple[str, ...]) -> None:
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] in allowed, body
    assert answer.headers["Retry-After"]
    for word in ("SQL", "INSERT", "Traceback", "psycopg", "PANIC", "No space", "pg_wal", "xlog"):
        assert word not in answer.text


def _create_database(cluster: Cluster) -> str:
    admin = create_engine(cluster.server_url + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE gateway"))
    admin.dispose()
    return cluster.server_url + "/gateway"


def _wal_panicked(cluster: Cluster) -> bool:
    """PostgreSQL's log shows the PANIC of a WAL segment it could not write for lack of space."""
    log = cluster.log.read_text(errors="replace")
    return "PANIC:" in log and 'could not write to file "pg_wal/' in log and "No space left on device" in log


def test_a_full_wal_filesystem_is_reported_nothing_is_half_written_and_writes_resume() -> None:
    with tiny_filesystem("160m") as home, tiny_filesystem("24m") as wal_fs:
        with private_cluster(
            home, home / "data", f"--waldir={wal_fs / 'wal'}", "--wal-segsize=1", settings=SERVER_SETTINGS
        ) as cluster:
            url = _create_database(cluster)
            database = Database(url, pool_size=4)
            upgrade(database)
            client_id, secret = register_client(database, "wal", "system/*.cruds", trusted=True)
            settings = Settings(database_url=url, base_url="http://testserver", audit_mode="sync",
                                subscription_worker_in_serve=False, export_worker_in_serve=False,
                                demo_client=False)  # fmt: skip
            with TestClient(create_app(settings, database), raise_server_exceptions=False) as client:
                client.headers.update({"Authorization": f"Bearer {issue_token(client, client_id, secret)}"})
                client.headers.update({"Content-Type": FHIR, "Accept": FHIR})
                acknowledged: list[str] = []
                for k in range(3):
                    assert (
                        client.put(f"/fhir/Patient/before{k}", json=big_patient(f"before{k}")).status_code
                        == 201
                    )
                    acknowledged.append(f"before{k}")
                filler = fill(wal_fs)

                refused = None
                for attempt in range(300):  # the current WAL segment's free room takes a few writes
                    answer = client.post("/fhir", json=big_transaction(f"b{attempt}"))
                    if answer.status_code != 200:
                        refused = (attempt, answer)
                        break
                    acknowledged += [f"b{attempt}-{k}" for k in range(5)]
                assert refused is not None, "the full WAL filesystem never refused a write"
                attempt, answer = refused
                _assert_plain_503(answer, (FULL, *UNAVAILABLE))
                assert _wal_panicked(cluster), cluster.log.read_text()[-3000:]
                outage = [
                    client.get("/fhir/Patient/before0"),
                    client.put("/fhir/Patient/x", json=big_patient("x")),
                ]
                for during in outage:  # while PostgreSQL restarts, or stays down for lack of space
                    if during.status_code >= 500:
                        _assert_plain_503(during, (FULL, *UNAVAILABLE))

                filler.unlink()  # space freed; PostgreSQL started again if its recovery gave up
                resumed = None
                deadline = time.monotonic() + 90
                while resumed is None and time.monotonic() < deadline:
                    if not cluster.running():
                        started = cluster.start()
                        assert started.returncode == 0, started.stderr + cluster.log.read_text()[-2000:]
                    answer = client.put("/fhir/Patient/after", json=big_patient("after"))
                    if answer.status_code in (200, 201):
                        resumed = answer
                    else:
                        _assert_plain_503(answer, (FULL, *UNAVAILABLE))
                        time.sleep(0.5)
                assert resumed is not None, "writes did not resume once space was freed"

                # the same gateway, never restarted: everything acknowledged is there, and the
                # refused transaction left none of its entries (or, had its commit reached the
                # WAL before the crash, all of them: never a part)
                for pid in acknowledged:
                    assert client.get(f"/fhir/Patient/{pid}").status_code == 200, pid
                found = [client.get(f"/fhir/Patient/b{attempt}-{k}").status_code for k in range(5)]
                assert found in ([404] * 5, [200] * 5), found
                assert client.post("/fhir", json=big_transaction(f"b{attempt}")).status_code == 200
                assert client.get(f"/fhir/Patient/b{attempt}-4").status_code == 200
                total = client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]
                written_during_outage = client.get("/fhir/Patient/x").status_code == 200
                assert total == len(set(acknowledged)) + 5 + 1 + written_during_outage
            database.dispose()
