"""The outbox (issue 7): notifications commit with their change or not at all, and several
workers deliver each event exactly once, in order, without stepping on each other."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import httpx
import respx
from sqlalchemy import func, select
from starlette.testclient import TestClient

from fhir_gateway.settings import Settings
from fhir_gateway.storage import subscription_repository
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.outbox_tables import subscription, subscription_event
from tests.subscriptions.support import FHIR, drain, make_worker, put, subscribe, task


def _queued(database: Database) -> int:
    with database.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(subscription_event)).scalar_one())


def test_a_rolled_back_transaction_leaves_no_notification(fhir: TestClient, database: Database) -> None:
    put(fhir, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Martin"}]})
    sub = subscribe(fhir, "Task?status=requested")
    _activate(database, sub["id"])  # as if the handshake had succeeded
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": task("p1", "t1"), "request": {"method": "PUT", "url": "Task/t1"}},
            {
                "resource": {"resourceType": "Patient", "birthDate": "not a date"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    answer = fhir.post("/fhir", json=bundle, headers={"Content-Type": FHIR})
    assert answer.status_code in (400, 422)
    assert fhir.get("/fhir/Task/t1").status_code == 404
    assert _queued(database) == 0
    put(fhir, task("p1", "t1"))  # the same change, committed: one notification
    assert _queued(database) == 1


def _activate(database: Database, sub_id: str) -> None:
    with database.transaction(write=True) as conn:
        conn.execute(subscription.update().where(subscription.c.sub_id == sub_id).values(status="active"))
        subscription_repository.restamp(conn)  # as every change of the subscriptions does


def test_two_workers_deliver_every_event_once_and_in_order(
    fhir: TestClient, database: Database, settings: Settings
) -> None:
    put(fhir, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Martin"}]})
    hooks = [f"https://hooks-{k}.example/fhir" for k in range(3)]
    for hook in hooks:
        subscribe(fhir, "Task?status=requested", endpoint=hook)
    received: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()

    def endpoint(request: httpx.Request) -> httpx.Response:
        time.sleep(0.002)  # let the two workers overlap
        if request.method == "PUT":
            with lock:
                received[request.url.host].append(int(request.headers["X-FHIR-Event-Number"]))
        return httpx.Response(200)

    workers = [make_worker(database, settings) for _ in range(2)]
    with respx.mock(assert_all_called=False) as partners:
        partners.route(host__regex=r"hooks-\d\.example").mock(side_effect=endpoint)
        drain(workers[0])  # handshakes
        for k in range(12):
            put(fhir, task("p1", f"t{k}"))
        threads = [threading.Thread(target=drain, args=(w, 200, 1)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for w in workers:
        w.stop()
    assert {host: numbers for host, numbers in received.items()} == {
        f"hooks-{k}.example": list(range(1, 13)) for k in range(3)
    }


def test_the_outbox_depth_is_a_metric(fhir: TestClient, database: Database) -> None:
    put(fhir, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Martin"}]})
    _activate(database, subscribe(fhir, "Task?status=requested")["id"])
    put(fhir, task("p1", "t1"))
    put(fhir, task("p1", "t2"))
    assert "fhir_subscription_outbox_depth 2.0" in fhir.get("/metrics").text
