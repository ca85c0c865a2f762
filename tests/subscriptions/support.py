"""Helpers for subscription tests: Subscription bodies, a worker, a recording endpoint."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.testclient import TestClient

from fhir_gateway.audit.store import write_audit_events
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.subscriptions.worker import SubscriptionWorker

FHIR = "application/fhir+json"
HOOK = "https://hooks.partner.example/fhir"
PUBLIC_ADDRESS = "93.184.216.34"


def subscription_body(
    criteria: str,
    *,
    endpoint: str = HOOK,
    payload: str | None = FHIR,
    headers: list[str] | None = None,
    status: str = "requested",
) -> dict[str, Any]:
    """An R4 Subscription with a rest-hook channel (FHIR R4 subscription.html)."""
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint}
    if payload:
        channel["payload"] = payload
    if headers:
        channel["header"] = headers
    return {
        "resourceType": "Subscription",
        "status": status,
        "reason": "coordination",
        "criteria": criteria,
        "channel": channel,
    }


def subscribe(client: TestClient, criteria: str, **kw: Any) -> dict[str, Any]:
    response = client.post(
        "/fhir/Subscription", json=subscription_body(criteria, **kw), headers={"Content-Type": FHIR}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def make_worker(database: Database, settings: Settings, **kw: Any) -> SubscriptionWorker:
    """A worker whose DNS answers a public address (no network needed; respx stubs HTTP)."""
    kw.setdefault("resolve", lambda host: [PUBLIC_ADDRESS])
    kw.setdefault("jitter", lambda: 0.0)
    return SubscriptionWorker(
        database, settings, audit_sink=lambda events: write_audit_events(database, events), **kw
    )


def drain(worker: SubscriptionWorker, rounds: int = 20, limit: int = 10) -> int:
    """Run rounds (of up to ``limit`` subscriptions) until nothing is left; the HTTP calls made."""
    calls = 0
    for _ in range(rounds):
        done = worker.run_once(limit)
        if not done:
            break
        calls += done
    return calls


def task(
    pid: str, tid: str, *, status: str = "requested", owner: str = "Organization/saad"
) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": tid,
        "status": status,
        "intent": "order",
        "for": {"reference": f"Patient/{pid}"},
        "owner": {"reference": owner},
    }


def put(client: TestClient, body: dict[str, Any]) -> httpx.Response:
    response = client.put(
        f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers={"Content-Type": FHIR}
    )
    assert response.status_code in (200, 201), response.text
    return response
