"""rest-hook delivery (FHIR R4 subscription.html, issue 7): handshake, payload, ping, retries,
give-up, 410, event numbers, order. HTTP to the partner is stubbed with respx."""

from __future__ import annotations

import json

import httpx
import respx
from starlette.testclient import TestClient

from fhir_gateway.subscriptions.worker import SubscriptionWorker
from tests.subscriptions.support import FHIR, HOOK, drain, put, subscribe, task


def _patient(fhir: TestClient, pid: str = "p1") -> None:
    put(fhir, {"resourceType": "Patient", "id": pid, "name": [{"family": "Martin"}]})


def _status(fhir: TestClient, sub_id: str) -> dict[str, str]:
    body = fhir.get(f"/fhir/Subscription/{sub_id}").json()
    return {"status": body["status"], "error": body.get("error", "")}


def test_handshake_ok_makes_the_subscription_active(fhir: TestClient, worker: SubscriptionWorker) -> None:
    sub = subscribe(fhir, "Task?status=requested", status="active")
    assert sub["status"] == "requested"  # a client cannot activate it: the handshake does
    with respx.mock(assert_all_called=True) as partner:
        hook = partner.post(HOOK).mock(return_value=httpx.Response(200))
        assert drain(worker) == 1
    request = hook.calls.last.request
    assert request.content == b""
    assert request.headers["X-FHIR-Subscription"] == f"Subscription/{sub['id']}"
    assert _status(fhir, sub["id"])["status"] == "active"
    history = fhir.get(f"/fhir/Subscription/{sub['id']}/_history").json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["active", "requested"]


def test_handshake_failure_puts_the_subscription_in_error_with_the_reason(
    fhir: TestClient, worker: SubscriptionWorker
) -> None:
    sub = subscribe(fhir, "Task?status=requested")
    with respx.mock() as partner:
        partner.post(HOOK).mock(return_value=httpx.Response(503))
        drain(worker)
    state = _status(fhir, sub["id"])
    assert state["status"] == "error"
    assert "handshake failed" in state["error"]
    assert "503" in state["error"]


def test_matching_change_is_delivered_with_its_payload_headers_and_event_number(
    fhir: TestClient, worker: SubscriptionWorker
) -> None:
    _patient(fhir)
    sub = subscribe(fhir, "Task?status=requested", headers=["Authorization: Bearer partner-secret"])
    with respx.mock() as partner:
        partner.post(HOOK).mock(return_value=httpx.Response(200))
        delivered = partner.put(url__startswith=f"{HOOK}/Task/").mock(return_value=httpx.Response(200))
        drain(worker)
        put(fhir, task("p1", "t1"))
        put(fhir, task("p1", "t2", status="completed"))  # does not match the criteria
        put(fhir, task("p1", "t1", status="in-progress"))  # no longer matches
        put(fhir, task("p1", "t3"))
        assert drain(worker) == 2
    requests = [c.request for c in delivered.calls]
    assert [r.url.path for r in requests] == ["/fhir/Task/t1", "/fhir/Task/t3"]
    assert [r.headers["X-FHIR-Event-Number"] for r in requests] == ["1", "2"]
    first = json.loads(requests[0].content)
    assert first["id"] == "t1"
    assert first["status"] == "requested"
    assert first["meta"]["versionId"] == "1"
    assert requests[0].headers["Content-Type"].startswith(FHIR)
    assert requests[0].headers["Authorization"] == "Bearer partner-secret"
    assert requests[0].headers["X-FHIR-Subscription"] == f"Subscription/{sub['id']}"


def test_without_payload_a_notification_is_an_empty_post(
    fhir: TestClient, worker: SubscriptionWorker
) -> None:
    _patient(fhir)
    subscribe(fhir, "Task?owner=Organization/saad", payload=None)
    with respx.mock() as partner:
        hook = partner.post(HOOK).mock(return_value=httpx.Response(204))
        drain(worker)
        put(fhir, task("p1", "t1"))
        drain(worker)
    ping = hook.calls.last.request
    assert ping.content == b""
    assert ping.headers["X-FHIR-Event-Number"] == "1"


def test_a_failing_endpoint_is_retried_and_order_is_kept(
    fhir: TestClient, worker: SubscriptionWorker
) -> None:
    _patient(fhir)
    subscribe(fhir, "Task?status=requested")
    answers = iter([500, 500, 200, 200, 200])
    seen: list[str] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        code = next(answers)
        seen.append(f"{request.headers['X-FHIR-Event-Number']}:{code}")
        return httpx.Response(code)

    with respx.mock() as partner:
        partner.post(HOOK).mock(return_value=httpx.Response(200))
        partner.put(url__startswith=f"{HOOK}/Task/").mock(side_effect=endpoint)
        drain(worker)
        for k in range(3):
            put(fhir, task("p1", f"t{k}"))
        drain(worker)
    assert seen == ["1:500", "1:500", "1:200", "2:200", "3:200"]


def test_after_the_maximum_of_attempts_the_subscription_goes_to_error_and_keeps_its_events(
    fhir: TestClient, worker: SubscriptionWorker
) -> None:
    _patient(fhir)
    sub = subscribe(fhir, "Task?status=requested")
    with respx.mock() as partner:
        partner.post(HOOK).mock(return_value=httpx.Response(200))
        failing = partner.put(url__startswith=f"{HOOK}/Task/").mock(return_value=httpx.Response(502))
        drain(worker)
        put(fhir, task("p1", "t1"))
        drain(worker)
        assert failing.call_count == 3  # subscription_max_attempts in these tests
    state = _status(fhir, sub["id"])
    assert state["status"] == "error"
    assert "gave up after 3 failed attempts" in state["error"]
    # the client repairs its endpoint and asks again: the queued event is delivered
    body = fhir.get(f"/fhir/Subscription/{sub['id']}").json()
    body["status"] = "requested"
    put(fhir, body)
    with respx.mock() as partner:
        partner.post(HOOK).mock(return_value=httpx.Response(200))
        repaired = partner.put(f"{HOOK}/Task/t1").mock(return_value=httpx.Response(200))
        drain(worker)
    assert repaired.call_count == 1
    assert repaired.calls.last.request.headers["X-FHIR-Event-Number"] == "1"


def test_410_gone_turns_the_subscription_off(fhir: TestClient, worker: SubscriptionWorker) -> None:
    _patient(fhir)
    sub = subscribe(fhir, "Task?status=requested")
    with respx.mock() as partner:
        partner.post(HOOK).mock(return_value=httpx.Response(200))
        partner.put(url__startswith=f"{HOOK}/Task/").mock(return_value=httpx.Response(410))
        drain(worker)
        put(fhir, task("p1", "t1"))
        drain(worker)
        put(fhir, task("p1", "t2"))  # an "off" subscription queues nothing more
        assert drain(worker) == 0
    assert _status(fhir, sub["id"])["status"] == "off"


def test_timeouts_are_failures_like_any_other(fhir: TestClient, worker: SubscriptionWorker) -> None:
    _patient(fhir)
    subscribe(fhir, "Task?status=requested")
    with respx.mock() as partner:
        partner.post(HOOK).mock(return_value=httpx.Response(200))
        route = partner.put(url__startswith=f"{HOOK}/Task/")
        route.side_effect = [httpx.ReadTimeout("slow partner"), httpx.Response(200)]
        drain(worker)
        put(fhir, task("p1", "t1"))
        drain(worker)
    assert route.call_count == 2


def test_backoff_doubles_is_capped_and_jittered(worker: SubscriptionWorker) -> None:
    worker.settings.subscription_retry_seconds = 2.0
    worker.settings.subscription_retry_max_seconds = 30.0
    worker.jitter = lambda: 1.0
    assert [worker.backoff(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 30.0]
    worker.jitter = lambda: 0.0
    assert worker.backoff(3) == 4.0  # half of 8: jitter spreads retries between 50 and 100 %


def test_a_failed_subscription_waits_for_its_backoff(fhir: TestClient, worker: SubscriptionWorker) -> None:
    _patient(fhir)
    subscribe(fhir, "Task?status=requested")
    worker.settings.subscription_retry_seconds = 3600.0
    with respx.mock() as partner:
        partner.post(HOOK).mock(return_value=httpx.Response(200))
        route = partner.put(url__startswith=f"{HOOK}/Task/").mock(return_value=httpx.Response(500))
        drain(worker)
        put(fhir, task("p1", "t1"))
        assert worker.run_once() == 1
        assert worker.run_once() == 0  # not before an hour
    assert route.call_count == 1
