"""The active subscriptions a write matches are kept per process and read again only when the
subscriptions' stamp changed (``subscriptions.active``): a change made by another process (here:
a transaction of its own that the server's keeping does not see) is honoured by the very next
write, and a write with nothing changed asks the database no subscription question."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import respx
from sqlalchemy import Engine, event, func, insert, select, text, update
from starlette.testclient import TestClient

from fhir_gateway.storage import subscription_repository
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.outbox_tables import subscription, subscription_event, subscription_stamp
from fhir_gateway.subscriptions.worker import SubscriptionWorker
from tests.subscriptions.support import HOOK, drain, put, subscribe, task


@pytest.fixture(autouse=True)
def _stamped(database: Database) -> None:
    """The stamp row, as the migration leaves it (the test database is emptied table by table)."""
    with database.transaction(write=True) as conn:
        if conn.execute(select(func.count()).select_from(subscription_stamp)).scalar_one() == 0:
            conn.execute(insert(subscription_stamp).values(id=1, stamp=secrets.token_hex(16)))


def _queued(database: Database) -> list[str]:
    with database.transaction() as conn:
        return list(conn.execute(select(subscription_event.c.res_id).order_by("event_id")).scalars())


@contextmanager
def _statements() -> Iterator[list[str]]:
    """Every SQL statement any engine of this process runs inside the block."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def test_a_subscription_activated_elsewhere_is_matched_by_the_next_write(
    fhir: TestClient, database: Database
) -> None:
    put(fhir, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Martin"}]})
    sub = subscribe(fhir, "Task?status=requested")
    put(fhir, task("p1", "t0"))  # the server now keeps "no active subscription"
    assert _queued(database) == []
    with database.transaction(write=True) as conn:  # another process's handshake
        conn.execute(update(subscription).where(subscription.c.sub_id == sub["id"]).values(status="active"))
        subscription_repository.restamp(conn)
    put(fhir, task("p1", "t1"))
    assert _queued(database) == ["t1"]


def test_a_subscription_removed_elsewhere_is_not_matched_by_the_next_write(
    fhir: TestClient, database: Database, worker: SubscriptionWorker
) -> None:
    put(fhir, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Martin"}]})
    sub = subscribe(fhir, "Task?status=requested")
    with respx.mock() as partner:
        partner.post(HOOK).mock(return_value=httpx.Response(200))
        drain(worker)
    put(fhir, task("p1", "t1"))
    assert _queued(database) == ["t1"]
    with database.transaction(write=True) as conn:  # another process's engine
        subscription_repository.remove(conn, sub["id"])
    answer = fhir.put(
        "/fhir/Task/t2", json=task("p1", "t2"), headers={"Content-Type": "application/fhir+json"}
    )
    assert answer.status_code == 201, answer.text
    assert _queued(database) == []  # removed with its events, and no new one


def test_a_write_with_the_subscriptions_unchanged_does_not_ask_for_them(
    fhir: TestClient, database: Database, worker: SubscriptionWorker
) -> None:
    put(fhir, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Martin"}]})
    subscribe(fhir, "Task?status=requested")
    with respx.mock() as partner:
        partner.post(HOOK).mock(return_value=httpx.Response(200))
        drain(worker)
    put(fhir, task("p1", "t1"))  # reads the new stamp's subscriptions, and keeps them
    with _statements() as seen:
        put(fhir, task("p1", "t2"))
    asked = [s for s in seen if s.lstrip().startswith("SELECT") and re.search(r"\bsubscription\b", s)]
    assert asked == []
    assert _queued(database) == ["t1", "t2"]  # matched all the same


def test_every_change_of_the_subscriptions_replaces_the_stamp(fhir: TestClient, database: Database) -> None:
    def stamp() -> str | None:
        with database.transaction() as conn:
            return conn.execute(select(subscription_stamp.c.stamp)).scalar_one_or_none()

    before = stamp()
    sub = subscribe(fhir, "Task?status=requested")
    created = stamp()
    assert (
        fhir.put(
            f"/fhir/Subscription/{sub['id']}",
            json={**sub, "status": "off"},
            headers={"Content-Type": "application/fhir+json"},
        ).status_code
        == 200
    )
    updated = stamp()
    assert fhir.delete(f"/fhir/Subscription/{sub['id']}").status_code in (200, 204)
    deleted = stamp()
    assert None not in (created, updated, deleted)
    assert len({before, created, updated, deleted}) == 4
    with database.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(subscription_stamp)).scalar_one() == 1


def test_two_transactions_restoring_the_stamp_row_at_once_do_not_clash(database: Database) -> None:
    """The row deleted (a database emptied table by table): both upserts go through, one row."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    with database.transaction(write=True) as conn:
        conn.execute(subscription_stamp.delete())
    first = database.engine.connect()
    second = database.engine.connect()
    try:
        first.begin()
        subscription_repository.restamp(first)  # inserts: holds the key until it commits
        second.begin()
        failures: list[BaseException] = []

        def restamp_second() -> None:
            try:
                subscription_repository.restamp(second)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)

        waiting = threading.Thread(target=restamp_second)
        waiting.start()  # waits for the first, then updates the row it inserted
        _until_a_transaction_waits_for_a_lock(database)
        first.commit()
        waiting.join(timeout=10)
        assert not waiting.is_alive()
        assert failures == []
        second.commit()
    finally:
        first.close()
        second.close()
    with database.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(subscription_stamp)).scalar_one() == 1


def _until_a_transaction_waits_for_a_lock(database: Database, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with database.engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return
        time.sleep(0.01)
    raise AssertionError("the second transaction never waited for the first")
