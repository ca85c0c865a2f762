"""A partner import killed mid-way (issue 11): SIGKILL, not a polite stop.

``fhir-gateway import`` (a child process) and a live ``fhir-gateway serve`` running
``POST /fhir/$import-partner`` are killed while the import is writing. Nothing of it may
remain: the database is compared table by table, row by row, with what it held before
(resources, versions, search index, outbox, CareTeam membership, AuditEvents). Re-running
the same file then completes, and gives exactly what a clean import of it gives on a copy
of the same database (generated ids aside). Only the command line and HTTP are driven: how
the engine batches its writes is its own business.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from fhir_gateway.kit import jsonutil
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.schema import full_metadata
from fhir_gateway.storage.tables import audit_terms, resource
from tests.e2e.conftest import BIN, LiveServer, serving
from tests.support.databases import cloned_database_url, temporary_database_url

ROWS = 600
FORMAT = "saad-beneficiaires"
ORG = "Organization/saad-kill"
FHIR = "application/fhir+json"
SECRET = "s3cret-import"
HEADER = (
    "Code bénéficiaire;Civilité;Nom;Nom de naissance;Prénom;Date de naissance;N° Sécurité sociale;Adresse;"
    "Code postal;Ville;Téléphone;GIR;Financeur;N° dossier financeur;Date début prise en charge;"
    "Date fin prise en charge;Statut"
)
# served without the subscription worker: notifications stay in the outbox, to be compared
NO_WORKER = {"audit_mode": "sync", "subscription_worker_in_serve": "false"}


def _write_file(path: Path) -> bytes:
    """ROWS beneficiaries in the SAAD dialect (Windows-1252, CRLF): a Patient and a CareTeam each."""
    lines = [HEADER]
    for n in range(ROWS):
        civility = "Mme" if n % 3 else "M."
        lines.append(
            f"B{n:06d};{civility};NOM{n};;Prénom {n % 17};{1 + n % 28:02d}/05/19{30 + n % 60};;"
            f"{n} rue des Tilleuls;42000;Saint-Étienne;;{1 + n % 6};APA;;01/02/2024;;Actif"
        )
    data = ("\r\n".join(lines) + "\r\n").encode("cp1252")
    path.write_bytes(data)
    return data


@contextmanager
def _hook() -> Iterator[str]:
    """A partner endpoint answering 200 to everything (the Subscription handshake)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    finally:
        server.shutdown()


def _headers(server: LiveServer) -> dict[str, str]:
    answer = httpx.post(
        server.base_url + "/auth/token", data={"grant_type": "client_credentials"}, auth=("importer", SECRET)
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}", "Accept": FHIR}


@contextmanager
def _prepared(tmp: Path) -> Iterator[str]:
    """A database holding the service's Organization, a trusted client and an active
    Subscription on the Patients the file creates (so that the import fills the outbox)."""
    with temporary_database_url(tmp) as url:
        settings = {"subscription_allow_private_endpoints": "true", "subscription_poll_seconds": "0.1"}
        with _hook() as endpoint, serving(url, tmp, audit_mode="sync", **settings) as server:
            added = server.cli("clients", "add", "importer", "--scope", "system/*.cruds", "--secret", SECRET,
                               "--trusted")  # fmt: skip
            assert added.returncode == 0, added.stderr
            with httpx.Client(base_url=server.fhir, headers=_headers(server), timeout=30) as fhir:
                org = {"resourceType": "Organization", "id": ORG.split("/")[1], "name": "SAAD Loire"}
                assert fhir.put(f"/{ORG}", json=org).status_code == 201
                channel = {"type": "rest-hook", "endpoint": endpoint, "payload": FHIR}
                sub = {"resourceType": "Subscription", "status": "requested", "reason": "kill test",
                       "criteria": "Patient?gender=female", "channel": channel}  # fmt: skip
                sub_id = fhir.post("/Subscription", json=sub).json()["id"]
                _wait(lambda: fhir.get(f"/Subscription/{sub_id}").json()["status"] == "active", "handshake")
        yield url


def _wait(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _writing(url: str) -> bool:
    """True while another session holds a write transaction open on the database."""
    if url.startswith("sqlite"):
        probe = sqlite3.connect(url.split("///", 1)[1], timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # database is locked: a writer is at work
            return True
        else:
            probe.execute("ROLLBACK")
            return False
        finally:
            probe.close()
    server, name = url.rsplit("/", 1)
    admin = create_engine(server + "/postgres")
    try:
        with admin.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = :db AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
                ),
                {"db": name},
            ).scalar_one()
        return bool(found)
    finally:
        admin.dispose()


def _tables(url: str) -> dict[str, list[str]]:
    """Every row of every table, as sorted text (the whole database, for equality)."""
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            return {
                table.name: sorted(repr(tuple(row)) for row in conn.execute(table.select()))
                for table in full_metadata().sorted_tables
            }
    finally:
        database.dispose()


# columns that differ between two identical imports: times and generated row numbers
_VOLATILE = {"last_updated", "created_at", "delivered_at", "member_row", "event_id"}


def _state(url: str) -> dict[str, Any]:
    """What imports left in the database, with generated ids replaced by each resource's
    business identifiers (or, lacking any, the digest of its content): comparable between
    two databases. AuditEvents are only counted (they hold times and request ids), their
    ``audit_terms`` rows left out."""
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            stored = {
                (r.res_type, r.res_id): jsonutil.loads(r.content)
                for r in conn.execute(select(resource.c.res_type, resource.c.res_id, resource.c.content))
            }
            tables = {t.name: [dict(row._mapping) for row in conn.execute(t.select())]
                      for t in full_metadata().sorted_tables}  # fmt: skip
    finally:
        database.dispose()
    keys: dict[tuple[str, str], str] = {}

    def key(res_type: str, res_id: str | None) -> str | None:
        if res_id is None or (res_type, res_id) not in stored:
            return res_id
        if (res_type, res_id) not in keys:
            keys[(res_type, res_id)] = f"{res_type}:cycle"  # a reference loop ends here
            found = stored[(res_type, res_id)]
            names = sorted([i.get("system"), i.get("value")] for i in found.get("identifier") or [])
            body = names or normalized({k: v for k, v in found.items() if k not in ("id", "meta")})
            keys[(res_type, res_id)] = (
                res_type + ":" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
            )
        return keys[(res_type, res_id)]

    def normalized(value: Any) -> Any:
        if isinstance(value, list):
            return [normalized(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: normalized(v) for k, v in value.items() if k != "meta"}
        reference = value.get("reference")
        if isinstance(reference, str) and reference.count("/") == 1:
            out["reference"] = key(*reference.split("/"))
        return out

    def row_of(row: dict[str, Any]) -> str:
        res_type = row.get("res_type") or ""
        out: dict[str, Any] = {k: v for k, v in row.items() if k not in _VOLATILE}
        if "res_id" in row:
            out["res_id"] = key(res_type, row["res_id"])
        if row.get("target_id") is not None:
            out["target_id"] = key(row["target_type"], row["target_id"])
        if row.get("content"):
            content = normalized(jsonutil.loads(row["content"]))
            content.pop("id", None)
            out["content"] = content
        if row.get("patient_id") is not None:
            out["patient_id"] = key("Patient", row["patient_id"])
        if row.get("careteam_ref"):
            out["careteam_ref"] = key(*row["careteam_ref"].split("/"))
        return json.dumps(out, sort_keys=True, default=str)

    state: dict[str, Any] = {
        name: sorted(row_of(row) for row in rows if row.get("res_type") != "AuditEvent")
        for name, rows in tables.items()
        if name != audit_terms.name  # the token values of AuditEvents (search.audit_terms)
    }
    state["AuditEvent"] = sum(1 for res_type, _ in stored if res_type == "AuditEvent")
    return state


def _imported(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What an import added: new rows per table, and the number of new AuditEvents."""
    added: dict[str, Any] = {}
    for name, rows in after.items():
        if name == "AuditEvent":
            added[name] = rows - before[name]
        else:
            old = list(before[name])
            kept = []
            for row in rows:
                if row in old:
                    old.remove(row)
                else:
                    kept.append(row)
            added[name] = kept
    return added


def _check_complete(added: dict[str, Any]) -> None:
    """The import of the whole file: a Patient, a CareTeam, their first version, their
    index rows and one notification per female Patient."""
    types = [json.loads(row)["res_type"] for row in added["resource"]]
    assert types.count("Patient") == ROWS
    assert types.count("CareTeam") == ROWS
    assert added["resource_history"] == []  # every version is a first one: its resource row only
    assert len(added["subscription_event"]) == sum(1 for n in range(ROWS) if n % 3)
    assert len(added["careteam_member"]) == ROWS
    for kind in ("idx_token", "idx_reference", "idx_string", "idx_date"):
        assert added[kind], kind


def _cli_import(url: str, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "fhir-gateway"), "import", FORMAT, str(path), "--organization", ORG],
        env={**os.environ, "FHIR_GATEWAY_DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _write_phase(url: str, done: Callable[[], bool]) -> float:
    """Seconds the import's write transaction stays open, then waits for ``done()`` (a clean run,
    for timing). Not until ``done()``: what follows the commit (the statistics' refresh, the
    process's exit) would make half the phase fall after the transaction on a slow machine."""
    _wait(lambda: _writing(url) or done(), "the import to start writing")
    start = time.monotonic()
    _wait(lambda: not _writing(url) or done(), "the import's transaction to end", seconds=600)
    phase = time.monotonic() - start
    _wait(done, "the import to end", seconds=600)
    return phase


def _kill_mid_import(url: str, phase: float, alive: Callable[[], bool], kill: Callable[[], None]) -> None:
    """Wait until the import writes, let it go on for about a third of its write phase, then
    SIGKILL (not half: on a loaded machine the timed run can be slower than this one, whose
    transaction then ended before the kill, 2026-11-28 under ``pytest -n 2``)."""
    _wait(lambda: _writing(url) or not alive(), "the import to start writing")
    time.sleep(phase / 3)
    assert alive(), "the import ended before it could be killed: make the file larger"
    assert _writing(url)
    kill()
    _wait(lambda: not _writing(url), "the killed import's transaction to end")


@pytest.mark.real_clock  # its child process's handshake timers
def test_cli_import_killed_leaves_nothing_and_a_rerun_completes(tmp_path: Path) -> None:
    path = tmp_path / "beneficiaires.csv"
    _write_file(path)
    with _prepared(tmp_path) as url:
        with cloned_database_url(url, tmp_path) as clean_url:
            clean_before = _state(clean_url)
            process = _cli_import(clean_url, path)
            phase = _write_phase(clean_url, lambda: process.poll() is not None)
            assert process.returncode == 0, process.stderr.read() if process.stderr else ""
            clean = _imported(clean_before, _state(clean_url))
        _check_complete(clean)

        before_rows, before = _tables(url), _state(url)
        killed = _cli_import(url, path)
        _kill_mid_import(url, phase, lambda: killed.poll() is None, killed.kill)
        assert killed.wait() == -9
        assert _tables(url) == before_rows  # not one row of the killed import, in any table

        rerun = subprocess.run(
            [str(BIN / "fhir-gateway"), "import", FORMAT, str(path), "--organization", ORG],
            env={**os.environ, "FHIR_GATEWAY_DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert rerun.returncode == 0, rerun.stderr
        assert f"rows {ROWS}, created {2 * ROWS}, updated 0" in rerun.stdout
        assert _imported(before, _state(url)) == clean


def _post_import(server: LiveServer, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(
        server.fhir + "/$import-partner",
        params={"format": FORMAT, "organization": ORG},
        content=body,
        headers={**headers, "Content-Type": "text/csv"},
        timeout=600,
    )


@pytest.mark.real_clock  # its child process's handshake timers
def test_http_import_killed_with_its_server_leaves_nothing_and_a_rerun_completes(tmp_path: Path) -> None:
    body = _write_file(tmp_path / "beneficiaires.csv")
    with _prepared(tmp_path) as url:
        with cloned_database_url(url, tmp_path) as clean_url:
            with serving(clean_url, tmp_path, **NO_WORKER) as server:
                headers = _headers(server)
                clean_before = _state(clean_url)
                answers: list[httpx.Response] = []
                thread = threading.Thread(target=lambda: answers.append(_post_import(server, headers, body)))
                thread.start()
                phase = _write_phase(clean_url, lambda: not thread.is_alive())
                assert answers[0].status_code == 200, answers[0].text
                clean = _imported(clean_before, _state(clean_url))
        _check_complete(clean)

        with serving(url, tmp_path, **NO_WORKER) as server:
            headers = _headers(server)
            before_rows, before = _tables(url), _state(url)
            failures: list[Exception] = []

            def post() -> None:
                try:
                    answers.append(_post_import(server, headers, body))
                except httpx.HTTPError as exc:
                    failures.append(exc)

            thread = threading.Thread(target=post)
            thread.start()
            assert server.process is not None
            _kill_mid_import(url, phase, thread.is_alive, server.process.kill)
            thread.join(timeout=60)
            assert server.process.wait() == -9
            assert len(answers) == 1, "the killed server answered"
            assert failures
        assert _tables(url) == before_rows  # not one row of the killed request, in any table

        with serving(url, tmp_path, **NO_WORKER) as server:
            answer = _post_import(server, _headers(server), body)
            assert answer.status_code == 200, answer.text
        assert _imported(before, _state(url)) == clean
