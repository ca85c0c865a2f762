"""A subscriber learns only what it may see at the time of the change, and a Subscription is
its owner's alone (issue 7, "Consent applies"; FHIR R4 consent.html, subscription.html)."""

from __future__ import annotations

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from fhir_gateway.storage import client_repository
from fhir_gateway.storage.database import Database
from fhir_gateway.subscriptions.worker import SubscriptionWorker
from tests.conftest import ClientFactory
from tests.consent.support import careteam, consent, provision
from tests.subscriptions.support import FHIR, drain, put, subscribe, subscription_body, task
from tests.support.auth import issue_token, register_client

SAAD, DAC = "Organization/saad", "Organization/dac"
SAAD_HOOK, DAC_HOOK = "https://saad.example/hook", "https://dac.example/hook"


@pytest.fixture
def saad(make_client: ClientFactory) -> TestClient:
    return make_client("system/*.cruds", organization=SAAD, headers={"X-Purpose-Of-Use": "TREAT"})


@pytest.fixture
def dac(make_client: ClientFactory) -> TestClient:
    return make_client("system/*.cruds", organization=DAC, headers={"X-Purpose-Of-Use": "COC"})


def _delivered(route: respx.Route) -> list[str]:
    return [c.request.url.path.rsplit("/", 1)[-1] for c in route.calls]


def test_only_the_organisations_the_person_lets_see_are_notified_and_a_refusal_is_immediate(
    fhir: TestClient, saad: TestClient, dac: TestClient, worker: SubscriptionWorker
) -> None:
    put(fhir, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Martin"}]})
    put(fhir, {**consent("p1", provision("permit", actors=[SAAD], purposes=["TREAT"])), "id": "c-saad"})
    subscribe(saad, "Task?status=requested", endpoint=SAAD_HOOK)
    subscribe(dac, "Task?status=requested", endpoint=DAC_HOOK)
    with respx.mock(assert_all_called=False) as partners:
        partners.post(SAAD_HOOK).mock(return_value=httpx.Response(200))
        partners.post(DAC_HOOK).mock(return_value=httpx.Response(200))
        to_saad = partners.put(url__startswith=f"{SAAD_HOOK}/Task/").mock(return_value=httpx.Response(200))
        to_dac = partners.put(url__startswith=f"{DAC_HOOK}/Task/").mock(return_value=httpx.Response(200))
        drain(worker)
        put(fhir, task("p1", "t1"))
        drain(worker)
        assert _delivered(to_saad) == ["t1"]
        assert _delivered(to_dac) == []
        # the person refuses home care from now on: the next change is not told to the SAAD
        put(fhir, {**consent("p1", provision("deny", actors=[SAAD])), "id": "c-saad"})
        put(fhir, task("p1", "t2"))
        drain(worker)
    assert _delivered(to_saad) == ["t1"]
    assert _delivered(to_dac) == []


def test_care_team_members_are_notified_under_the_care_team_policy(
    fhir: TestClient, dac: TestClient, worker: SubscriptionWorker
) -> None:
    put(fhir, {"resourceType": "Patient", "id": "p2", "name": [{"family": "Durand"}]})
    put(fhir, {**careteam("p2", [(DAC, None, None)]), "id": "ct-p2"})
    subscribe(dac, "Task?patient=Patient/p2", endpoint=DAC_HOOK, payload=None)
    with respx.mock(assert_all_called=False) as partner:
        hook = partner.post(DAC_HOOK).mock(return_value=httpx.Response(200))
        drain(worker)
        put(fhir, task("p2", "t1"))
        drain(worker)
    assert hook.call_count == 2  # handshake and one ping


def test_notifications_are_audited_with_the_decision(
    fhir: TestClient, saad: TestClient, worker: SubscriptionWorker
) -> None:
    put(fhir, {"resourceType": "Patient", "id": "p3", "name": [{"family": "Petit"}]})
    put(fhir, {**consent("p3", provision("permit", actors=[SAAD], purposes=["TREAT"])), "id": "c3"})
    subscribe(saad, "Task?status=requested", endpoint=SAAD_HOOK)
    with respx.mock(assert_all_called=False) as partner:
        partner.post(SAAD_HOOK).mock(return_value=httpx.Response(200))
        partner.put(url__startswith=SAAD_HOOK).mock(return_value=httpx.Response(200))
        drain(worker)
        put(fhir, task("p3", "t1"))
        drain(worker)
    events = fhir.get("/fhir/AuditEvent", params={"entity": "Task/t1", "_count": "50"}).json()["entry"]
    notify = [e["resource"] for e in events if e["resource"]["subtype"][0]["code"] == "notify"]
    assert len(notify) == 1
    agent = notify[0]["agent"][0]["who"]
    assert agent["reference"] == SAAD
    details = [d for ent in notify[0]["entity"] for d in ent.get("detail", [])]
    assert {"type": "decided-by", "valueString": "Consent/c3"} in details


def test_a_subscription_is_visible_to_its_owner_only(
    fhir: TestClient, saad: TestClient, dac: TestClient
) -> None:
    mine = subscribe(saad, "Task?status=requested", endpoint=SAAD_HOOK)
    subscribe(dac, "Task?status=requested", endpoint=DAC_HOOK)
    assert dac.get(f"/fhir/Subscription/{mine['id']}").status_code == 404
    assert dac.get(f"/fhir/Subscription/{mine['id']}/_history").status_code == 404
    assert dac.get("/fhir/Subscription").json()["total"] == 1
    assert saad.get("/fhir/Subscription").json()["total"] == 1
    assert fhir.get("/fhir/Subscription").json()["total"] == 2  # trusted administration
    assert dac.delete(f"/fhir/Subscription/{mine['id']}").status_code == 404
    hijack = {**subscription_body("Task?status=requested", endpoint=DAC_HOOK), "id": mine["id"]}
    answer = dac.put(f"/fhir/Subscription/{mine['id']}", json=hijack, headers={"Content-Type": FHIR})
    assert answer.status_code == 403
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert saad.get(f"/fhir/Subscription/{mine['id']}").json()["channel"]["endpoint"] == SAAD_HOOK


def test_a_subscription_needs_read_scope_on_its_type(make_client: ClientFactory) -> None:
    narrow = make_client("system/Patient.rs system/Subscription.cruds", organization=DAC)
    answer = narrow.post(
        "/fhir/Subscription", json=subscription_body("Task?status=requested"), headers={"Content-Type": FHIR}
    )
    assert answer.status_code == 403
    assert "Task" in answer.json()["issue"][0]["diagnostics"]


def test_a_revoked_clients_subscription_stops(
    fhir: TestClient, http: TestClient, database: Database, worker: SubscriptionWorker
) -> None:
    put(fhir, {"resourceType": "Patient", "id": "p4", "name": [{"family": "Roux"}]})
    client_id, secret = register_client(database, "leaving", "system/*.cruds", trusted=True)
    http.headers["Authorization"] = f"Bearer {issue_token(http, client_id, secret)}"
    sub = subscribe(http, "Task?status=requested", endpoint=SAAD_HOOK)
    with respx.mock(assert_all_called=False) as endpoint:
        endpoint.post(SAAD_HOOK).mock(return_value=httpx.Response(200))
        delivered = endpoint.put(url__startswith=SAAD_HOOK).mock(return_value=httpx.Response(200))
        drain(worker)
        with database.transaction(write=True) as conn:
            client_repository.revoke_client(conn, client_id)
        put(fhir, task("p4", "t1"))
        drain(worker)
    assert delivered.call_count == 0
    assert fhir.get(f"/fhir/Subscription/{sub['id']}").json()["status"] == "off"
