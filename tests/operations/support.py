"""Builders shared by the operation tests: people, their records and consents, over HTTP."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from tests.consent.support import consent, provision
from tests.support.pages import walk as walk_pages

FHIR = "application/fhir+json"
SAAD = "Organization/saad"
DAC = "Organization/dac"
TASK_CODES = "https://fhir-gateway.org/fhir/CodeSystem/task-code"


def put(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    """PUT ``body`` at its id; the stored resource."""
    response = client.put(
        f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers={"Content-Type": FHIR}
    )
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def person(client: TestClient, pid: str, tasks: int = 0, owner: str = SAAD) -> None:
    """A Patient ``pid`` with ``tasks`` requested Tasks owned by ``owner`` and a CarePlan."""
    put(client, {"resourceType": "Patient", "id": pid, "name": [{"family": f"Nom-{pid}"}]})
    for k in range(tasks):
        put(
            client,
            {
                "resourceType": "Task",
                "id": f"{pid}-t{k}",
                "status": "requested",
                "intent": "order",
                "for": {"reference": f"Patient/{pid}"},
                "owner": {"reference": owner},
            },
        )
    put(
        client,
        {
            "resourceType": "CarePlan",
            "id": f"{pid}-plan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{pid}"},
            "author": {"reference": DAC},
        },
    )


def organization(client: TestClient, ref: str) -> None:
    put(client, {"resourceType": "Organization", "id": ref.split("/", 1)[1], "name": ref})


def permit(client: TestClient, pid: str, actor: str, cid: str, **kw: Any) -> None:
    put(client, {**consent(pid, provision("permit", actors=[actor], **kw)), "id": cid})


def deny(client: TestClient, pid: str, actor: str, cid: str) -> None:
    put(client, {**consent(pid, provision("deny", actors=[actor])), "id": cid})


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """``Type/id`` of the Bundle's entries of ``mode``, in order."""
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == mode
    ]


def walk(client: TestClient, url: str) -> tuple[list[str], set[Any]]:
    """Follow ``next`` links from ``url``: every match and the totals seen."""
    return walk_pages(client, url, ids)


def audit_events(client: TestClient, **params: str) -> list[dict[str, Any]]:
    bundle = client.get("/fhir/AuditEvent", params={"_count": "1000", **params}).json()
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
