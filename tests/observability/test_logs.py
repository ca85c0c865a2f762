"""Structured JSON logs (issue 10): one line per request with request id, client, status and
duration, and no personal data anywhere in the log output, even at DEBUG, on a full request
cycle (create, read, search by name and NIR, free text, errors, a transaction, a refusal)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.observability.logs import QUIET_LOGGERS, JsonFormatter, configure_logging
from fhir_gateway.observability.middleware import new_request_id
from fhir_gateway.settings import Settings
from fhir_gateway.storage import repository
from fhir_gateway.storage.database import Database
from tests.support.auth import issue_token, register_client

FHIR = {"Content-Type": "application/fhir+json"}
NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"

# the personal values of the cycle: none may appear in any log line
FAMILY, GIVEN, NIR = "Lefebvre-Secretname", "Ghislaine", "2410375123456"
PHONE, STREET, BIRTH = "0611223344", "12 rue des Capucines", "1941-03-02"
TASK_TEXT, NOTE_TEXT = "Aide au lever difficile depuis la chute", "Fille joignable le soir seulement"
FAMILY_2, NIR_2 = "Marchetti-Hiddenname", "1520869123458"
PERSONAL = (FAMILY, GIVEN, NIR, PHONE, STREET, BIRTH, TASK_TEXT, NOTE_TEXT, FAMILY_2, NIR_2)


class _Capture(logging.Handler):
    """Every record of every logger, formatted as the gateway formats them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []
        self.raw: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        fields = {k: v for k, v in vars(record).items() if k not in ("exc_info", "exc_text")}
        self.raw.append(repr(fields))  # the message arguments and extras too, unformatted


@pytest.fixture
def debug_app(settings: Settings, database: Database) -> Iterator[FastAPI]:
    app = create_app(settings.model_copy(update={"log_level": "DEBUG"}), database)
    yield app
    configure_logging(settings.log_level)


@pytest.fixture
def captured(debug_app: FastAPI) -> Iterator[_Capture]:
    handler = _Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def _patient(family: str, nir: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [GIVEN]}],
        "birthDate": BIRTH,
        "telecom": [{"system": "phone", "value": PHONE}],
        "address": [{"line": [STREET], "city": "Saint-Etienne"}],
        "identifier": [{"system": NIR_SYSTEM, "value": nir}],
    }


def _cycle(app: FastAPI, database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The requests of the cycle; their statuses."""
    statuses: list[int] = []
    with TestClient(app, raise_server_exceptions=False) as http:
        trusted_id, secret = register_client(database, "ops", "system/*.cruds", trusted=True)
        fhir = TestClient(app, raise_server_exceptions=False)
        fhir.headers["Authorization"] = f"Bearer {issue_token(http, trusted_id, secret)}"
        partner_id, secret = register_client(
            database, "outsider", "system/*.rs", organization="Organization/x"
        )
        partner = TestClient(app, raise_server_exceptions=False)
        partner.headers["Authorization"] = f"Bearer {issue_token(http, partner_id, secret)}"

        def call(client: TestClient, method: str, url: str, **kwargs: Any) -> Any:
            response = client.request(method, url, **kwargs)
            statuses.append(response.status_code)
            return response

        created = call(fhir, "POST", "/fhir/Patient", json=_patient(FAMILY, NIR), headers=FHIR).json()
        pid = created["id"]
        call(fhir, "GET", f"/fhir/Patient/{pid}")
        call(fhir, "GET", "/fhir/Patient", params={"family": FAMILY, "identifier": f"{NIR_SYSTEM}|{NIR}"})
        call(fhir, "GET", f"/fhir/Patient?name={quote(GIVEN)}&birthdate={BIRTH}")
        call(fhir, "POST", "/fhir/Patient/_search", data={"family": FAMILY, "telecom": PHONE})
        task = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "description": TASK_TEXT,
            "note": [{"text": NOTE_TEXT}],
            "for": {"reference": f"Patient/{pid}", "display": f"{GIVEN} {FAMILY}"},
        }
        task_id = call(fhir, "POST", "/fhir/Task", json=task, headers=FHIR).json()["id"]
        call(fhir, "GET", "/fhir/Task", params={"patient": f"Patient/{pid}", "_include": "Task:patient"})
        updated = {**created, "gender": "female"}
        call(fhir, "PUT", f"/fhir/Patient/{pid}", json=updated, headers={**FHIR, "If-Match": 'W/"1"'})
        call(fhir, "PUT", f"/fhir/Patient/{pid}", json=updated, headers={**FHIR, "If-Match": 'W/"1"'})  # 412
        call(fhir, "POST", "/fhir/Patient", json={**_patient(FAMILY, NIR), "birthDate": FAMILY}, headers=FHIR)
        call(
            fhir,
            "POST",
            "/fhir/Patient",
            content=f'{{"resourceType": "Patient", "name": "{FAMILY}"',
            headers=FHIR,
        )
        call(fhir, "GET", f"/fhir/{FAMILY}")  # the path's type segment is the client's text
        call(fhir, "GET", f"/fhir/Patient/{NIR}")
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:0b9c6a4e-0000-4000-8000-000000000001",
                    "resource": _patient(FAMILY_2, NIR_2),
                    "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={NIR_2}"},
                },
                {
                    "resource": {
                        **task,
                        "for": {"reference": "urn:uuid:0b9c6a4e-0000-4000-8000-000000000001"},
                    },
                    "request": {"method": "POST", "url": "Task"},
                },
            ],
        }
        call(fhir, "POST", "/fhir", json=bundle, headers=FHIR)
        call(
            fhir,
            "POST",
            "/fhir/Patient",
            json=_patient(FAMILY, NIR),
            headers={**FHIR, "If-None-Exist": f"identifier={NIR}"},
        )
        call(partner, "GET", f"/fhir/Patient/{pid}")  # refused by consent: 404
        call(partner, "GET", "/fhir/Patient", params={"family": FAMILY})

        def failing_read(*_args: Any, **_kwargs: Any) -> Any:
            # a database error's message carries the statement's parameters
            raise IntegrityError(
                "SELECT * FROM resource WHERE family = %(family)s",
                {"family": FAMILY, "nir": NIR},
                Exception(f'duplicate key value violates unique constraint: (nir)=({NIR}) "{FAMILY}"'),
            )

        monkeypatch.setattr(repository, "get_current", failing_read)
        monkeypatch.setattr(repository, "get_current_decided", failing_read)
        call(fhir, "GET", f"/fhir/Task/{task_id}")
        monkeypatch.undo()
        call(fhir, "DELETE", f"/fhir/Task/{task_id}")
        fhir.close()
        partner.close()
    return statuses


def test_no_personal_data_in_any_log_line_at_debug(
    debug_app: FastAPI,
    database: Database,
    captured: _Capture,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
    for name in QUIET_LOGGERS:  # SQLAlchemy would log statements with their parameters
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING
    statuses = _cycle(debug_app, database, monkeypatch)
    assert {200, 201, 400, 404, 412, 500} <= set(statuses), statuses
    printed = capfd.readouterr()
    everything = "\n".join([*captured.lines, *captured.raw, printed.out, printed.err])
    for value in PERSONAL:
        for form in {value, quote(value), quote(value, safe=""), value.replace(" ", "+")}:
            assert form not in everything, f"{value!r} appears in the logs"

    requests = [json.loads(line) for line in captured.lines if '"logger":"fhir_gateway.access"' in line]
    assert len(requests) >= len(statuses)
    for line in requests:
        assert {"request_id", "client_id", "method", "route", "status", "duration_ms"} <= line.keys()
    fhir_lines = [r for r in requests if r["route"].startswith("/fhir")]
    assert [r["status"] for r in fhir_lines] == statuses
    assert {r["resource_type"] for r in fhir_lines} >= {"Patient", "Task", "unknown", None}
    assert all(r["client_id"] for r in fhir_lines)
    assert len({r["request_id"] for r in requests}) == len(requests)
    failure = next(json.loads(line) for line in captured.lines if '"exception"' in line)
    assert failure["exception"]["type"] == "IntegrityError"  # the type and stack, not the message
    assert failure["exception"]["stack"]


def test_request_id_is_echoed_or_made(http: TestClient) -> None:
    given = http.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = http.get("/health/live", headers={"X-Request-ID": "no spaces or <tags> please"})
    assert made.headers["x-request-id"] != "no spaces or <tags> please"
    assert len(made.headers["x-request-id"]) == 32
    following = http.get("/health/live").headers["x-request-id"]
    assert following != made.headers["x-request-id"]
    assert int(following, 16) >= 0  # hex digits


def test_a_forked_process_makes_other_request_ids() -> None:
    """The per-process part of request ids is drawn again in a forked child (multiprocessing,
    a server forking its workers): parent and child never make the same id."""
    read, write = os.pipe()
    parent_id = new_request_id()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert len(child_id) == 32
    assert child_id[:16] != parent_id[:16]
    assert new_request_id()[:16] == parent_id[:16]


def test_uncaught_exception_messages_are_not_logged() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError(f"patient {FAMILY} has NIR {NIR}")
    except ValueError:
        record = logging.getLogger("fhir_gateway.test").makeRecord(
            "fhir_gateway.test", logging.ERROR, __file__, 1, "failed", (), exc_info=True
        )
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(formatter.format(record))
    assert line["exception"]["type"] == "ValueError"
    assert FAMILY not in json.dumps(line)
