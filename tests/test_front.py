"""The application's entry (fhir_gateway/front.py): a lean FHIR route is served without
FastAPI's per-request layers, with the same answers, errors and request log; every other
request keeps FastAPI's stack, inside the request log."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from fhir_gateway.fhir import capability, reads
from fhir_gateway.front import GatewayApp
from tests.conftest import ClientFactory

TASK = {"resourceType": "Task", "status": "requested", "intent": "order"}


def _stack_refused(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, a request that reaches FastAPI's stack fails."""

    async def refused(_scope: Scope, _receive: Receive, _send: Send) -> None:
        raise AssertionError("FastAPI's stack ran")

    assert app.middleware_stack is not None  # built by the first request
    monkeypatch.setattr(app, "middleware_stack", refused)


def test_the_fhir_interactions_skip_fastapis_stack(
    app: FastAPI, fhir: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(app, GatewayApp)
    task_id = fhir.post("/fhir/Task", json=TASK).json()["id"]
    _stack_refused(app, monkeypatch)
    read = fhir.get(f"/fhir/Task/{task_id}")
    assert (read.status_code, read.json()["id"], read.headers["ETag"]) == (200, task_id, 'W/"1"')
    assert len(read.headers["X-Request-ID"]) == 32
    found = fhir.get("/fhir/Task", params={"_id": task_id}).json()
    assert [entry["resource"]["id"] for entry in found["entry"]] == [task_id]
    updated = fhir.put(f"/fhir/Task/{task_id}", json={**TASK, "id": task_id, "status": "cancelled"})
    assert updated.status_code == 200
    assert fhir.delete(f"/fhir/Task/{task_id}").status_code == 204
    with pytest.raises(AssertionError, match="stack ran"):  # not a lean route: FastAPI's stack
        fhir.get("/fhir/metadata")


def test_a_directly_served_error_is_the_handlers_operation_outcome(
    app: FastAPI, fhir: TestClient, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = make_client("system/Task.rs", organization="Organization/x")
    _stack_refused(app, monkeypatch)
    missing = fhir.get("/fhir/Task/nobody", headers={"X-Request-ID": "caller-chosen-id"})
    assert missing.status_code == 404
    assert missing.json()["issue"][0]["code"] == "not-found"
    assert missing.headers["X-Request-ID"] == "caller-chosen-id"
    assert fhir.get("/fhir/Unknown/x").status_code == 404
    anonymous = TestClient(app).get("/fhir/Task/nobody")
    assert (anonymous.status_code, anonymous.json()["issue"][0]["code"]) == (401, "login")
    assert reader.post("/fhir/Task", json=TASK).status_code == 403


def _boom(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("boom: SELECT secret FROM resource")


@pytest.mark.parametrize("path", ["/fhir/Task/t1", "/fhir/metadata"])  # served directly, or not
def test_an_unexpected_error_is_a_500_with_the_request_id_then_raised(
    app: FastAPI, fhir: TestClient, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setattr(reads, "read", _boom)
    monkeypatch.setattr(capability, "_statement", _boom)
    quiet = TestClient(app, raise_server_exceptions=False, headers=fhir.headers)
    answer = quiet.get(path, headers={"X-Request-ID": "trace-me"})
    assert answer.status_code == 500
    assert answer.json()["issue"][0]["code"] == "exception"
    assert "boom" not in answer.text
    assert "SELECT" not in answer.text
    assert answer.headers["X-Request-ID"] == "trace-me"  # the log lines' id, for the operator
    with pytest.raises(RuntimeError, match="boom"):  # the server sees it too (and logs it)
        fhir.get(path)
