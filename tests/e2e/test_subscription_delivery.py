"""End to end (issue 7): a live gateway notifies a real HTTP receiver, from the worker inside
``fhir-gateway serve`` and from a separate ``fhir-gateway worker`` process; fhirpy is the client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient

from fhir_gateway.subscriptions.worker import ACK_BATCH
from tests.e2e.conftest import LiveServer, running_gateway
from tests.support.worker_process import WorkerProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.real_clock]
FAST = {"subscription_allow_private_endpoints": "true", "subscription_poll_seconds": "0.1"}


class Receiver:
    """A partner's webhook: records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                 "body": body})  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _record  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    partner = Receiver()
    yield partner
    partner.close()


def _client(server: LiveServer) -> SyncFHIRClient:
    scope = "system/*.cruds"
    result = server.cli(
        "clients", "add", "coordination", "--scope", scope, "--secret", "s3cret-e2e", "--trusted"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer = httpx.post(
        server.base_url + "/auth/token",
        data={"grant_type": "client_credentials"},
        auth=("coordination", "s3cret-e2e"),
    )
    assert answer.status_code == 200, answer.text
    return SyncFHIRClient(server.fhir, authorization=f"Bearer {answer.json()['access_token']}")


def _wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("the condition was not met in time")


def _subscribe_and_change(client: SyncFHIRClient, receiver: Receiver) -> None:
    patient = client.resource("Patient", name=[{"family": "Lefebvre"}])
    patient.save()
    subscription = client.resource(
        "Subscription",
        status="requested",
        reason="visites à domicile",
        criteria="Task?status=requested",
        channel={"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"},
    )
    subscription.save()
    _wait_for(lambda: client.reference("Subscription", subscription.id).to_resource()["status"] == "active")
    assert receiver.requests[0]["method"] == "POST"
    assert receiver.requests[0]["body"] == b""
    visit = client.resource(
        "Task",
        status="requested",
        intent="order",
        description="Aide au lever",
        **{"for": patient.to_reference()},
    )
    visit.save()
    _wait_for(lambda: len(receiver.requests) >= 2)
    notification = receiver.requests[1]
    assert notification["method"] == "PUT"
    assert notification["path"] == f"/fhir/Task/{visit.id}"
    assert notification["headers"]["X-FHIR-Event-Number"] == "1"
    assert json.loads(notification["body"])["description"] == "Aide au lever"


def test_the_worker_inside_serve_delivers(tmp_path: Path, receiver: Receiver) -> None:
    with running_gateway(tmp_path, **FAST) as server:
        _subscribe_and_change(_client(server), receiver)


def test_a_separate_worker_process_delivers(
    tmp_path: Path, receiver: Receiver, worker_processes: WorkerProcesses
) -> None:
    with running_gateway(tmp_path, subscription_worker_in_serve="false", **FAST) as server:
        worker = worker_processes.start(server.env)
        _subscribe_and_change(_client(server), receiver)
        assert worker_processes.stop(worker) == 0, worker_processes.output(worker)


def _tasks_bundle(patient_ref: str, first: int, count: int) -> dict[str, Any]:
    entries = [
        {
            "resource": {
                "resourceType": "Task",
                "status": "requested",
                "intent": "order",
                "description": f"visite {k}",
                "for": {"reference": patient_ref},
            },
            "request": {"method": "POST", "url": "Task"},
        }
        for k in range(first, first + count)
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _notifications(receiver: Receiver) -> dict[str, list[int]]:
    """Event numbers received per subscription, in arrival order (duplicates kept)."""
    seen: dict[str, list[int]] = {}
    for request in list(receiver.requests):
        number = request["headers"].get("X-FHIR-Event-Number")
        if number is not None:
            seen.setdefault(request["headers"]["X-FHIR-Subscription"], []).append(int(number))
    return seen


def test_two_workers_deliver_1000_changes_once_each_in_order_across_a_worker_crash(
    tmp_path: Path, receiver: Receiver, worker_processes: WorkerProcesses
) -> None:
    changes = 1000
    settings = {**FAST, "subscription_worker_in_serve": "false", "subscription_lease_seconds": "6",
                "subscription_timeout_seconds": "2"}  # fmt: skip
    with running_gateway(tmp_path, **settings) as server:
        client = _client(server)
        workers = [worker_processes.start(server.env), worker_processes.start(server.env)]
        patient = client.resource("Patient", name=[{"family": "Moreau"}])
        patient.save()
        subscriptions = []
        for payload in ("application/fhir+json", None):
            channel = {
                "type": "rest-hook",
                "endpoint": receiver.url,
                **({"payload": payload} if payload else {}),
            }
            sub = client.resource(
                "Subscription",
                status="requested",
                reason="e2e",
                criteria="Task?status=requested",
                channel=channel,
            )
            sub.save()
            subscriptions.append(f"Subscription/{sub.id}")
        for sub_ref in subscriptions:
            sub_id = sub_ref.split("/")[1]
            _wait_for(
                lambda s=sub_id: client.reference("Subscription", s).to_resource()["status"] == "active"
            )
        for first in range(0, changes, 100):
            answer = httpx.post(
                server.fhir,
                json=_tasks_bundle(f"Patient/{patient.id}", first, 100),
                headers={"Authorization": client.authorization, "Content-Type": "application/fhir+json"},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            if first == 300:  # a worker dies in the middle of the run, then comes back
                _wait_for(lambda: sum(len(v) for v in _notifications(receiver).values()) > 200)
                workers[0].kill()
                workers[0].wait()
                workers[0] = worker_processes.start(server.env)

        def complete() -> bool:
            seen = _notifications(receiver)
            return all(set(seen.get(s, [])) == set(range(1, changes + 1)) for s in subscriptions)

        _wait_for(complete, seconds=180)
        statuses = worker_processes.stop_all(workers)  # a hung one is reported with its stacks
        assert statuses == [0, 0], [worker_processes.output(worker) for worker in workers]
    for numbers in _notifications(receiver).values():
        first_seen = list(dict.fromkeys(numbers))
        assert first_seen == list(range(1, changes + 1))  # in order; a re-sent one is a duplicate
        # at least once: duplicates are what the dead worker had not acknowledged, and on a
        # loaded machine what a worker whose lease ran out during a slow acknowledgement had
        # sent (ACK_BATCH each time); receivers drop them by event number
        assert len(numbers) - changes <= 10 * ACK_BATCH
