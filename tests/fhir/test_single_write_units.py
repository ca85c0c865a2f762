"""A REST create whose only write is its last statement commits with that statement
(``fhir.storing.apply``, ``storage.direct.value_of_last``): on PostgreSQL its unit sends no BEGIN
and no COMMIT, its opening check read outside a transaction. Still one atomic write (FHIR R4
http.html#create): the resource and its search index together, nothing of a clashing one, and a
create that must notify a subscriber keeps its transaction."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, func, insert, select, update
from starlette.testclient import TestClient

from fhir_gateway.kit.errors import Conflict
from fhir_gateway.storage import direct, subscription_repository
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.index_repository import IndexWrite, index_inserts
from fhir_gateway.storage.outbox_tables import subscription, subscription_event, subscription_stamp
from fhir_gateway.storage.tables import idx_token, resource
from fhir_gateway.storage.version_writes import VersionWrite, insert_new_versions
from tests.subscriptions.support import subscribe
from tests.support.databases import engine_kind

FHIR = {"Content-Type": "application/fhir+json"}
MOMENT = datetime(2026, 11, 28, 9, 0)
postgres_only = pytest.mark.skipif(engine_kind() != "postgresql", reason="asyncpg write units")


def _task(res_id: str, status: str = "requested") -> tuple[VersionWrite, IndexWrite]:
    body = f'{{"resourceType":"Task","id":"{res_id}","status":"{status}","intent":"order"}}'
    version = VersionWrite("Task", res_id, body, None, MOMENT, "POST", None)
    rows = {"token": [{"param": "status", "system": None, "code": status, "display": None}]}
    return version, IndexWrite("Task", res_id, rows, fresh=True)


def _store_last(conn: Connection, res_id: str, status: str = "requested") -> None:
    version, index = _task(res_id, status)
    insert_new_versions(conn, [version], index_inserts([index]), last=True)


def _in_write_unit(database: Database, work: Any) -> Any:
    async def run() -> Any:
        return await database.run(work, write=True)

    return asyncio.run(run())


def _stored(database: Database, res_id: str) -> tuple[int, list[str]]:
    """How many resource rows ``res_id`` has, and its status index rows' codes."""
    with database.transaction() as conn:
        rows = conn.execute(select(func.count()).where(resource.c.res_id == res_id)).scalar_one()
        codes = conn.execute(select(idx_token.c.code).where(idx_token.c.res_id == res_id)).scalars()
        return int(rows), sorted(codes)


@postgres_only
def test_the_last_statement_commits_on_its_own_and_nothing_may_follow_it(database: Database) -> None:
    seen: dict[str, Any] = {}

    def work(conn: Connection) -> None:
        direct.first(conn, select(func.count()).select_from(resource), begin=False)  # an opening read
        seen["alone"] = direct.commits_alone(conn)
        _store_last(conn, "alone")
        seen["visible_before_the_unit_ends"] = _stored(database, "alone")
        with pytest.raises(RuntimeError, match="after the unit's last"):  # through SQLAlchemy too
            conn.execute(select(func.count()).select_from(resource))
        direct.first(conn, select(func.count()).select_from(resource))

    with pytest.raises(RuntimeError, match="after the unit's last"):
        _in_write_unit(database, work)
    assert seen == {"alone": True, "visible_before_the_unit_ends": (1, ["requested"])}
    assert _stored(database, "alone") == (1, ["requested"])  # committed, the unit's failure after it aside
    # the connection serves the next unit normally
    assert _in_write_unit(
        database, lambda conn: direct.first(conn, select(func.count()).select_from(resource))
    )


@postgres_only
def test_a_clashing_last_statement_stores_nothing_of_its_resource(database: Database) -> None:
    _in_write_unit(database, lambda conn: _store_last(conn, "twice"))
    with pytest.raises(Conflict, match="Task/twice was created concurrently"):
        _in_write_unit(database, lambda conn: _store_last(conn, "twice", status="accepted"))
    assert _stored(database, "twice") == (1, ["requested"])  # no index row of the refused version


def test_after_a_statement_that_began_the_transaction_the_last_one_is_in_it(database: Database) -> None:
    """Where the unit's transaction has begun (or on SQLite and psycopg), the last statement runs
    in it: a failure after it rolls it back with the rest."""

    class Refused(Exception):
        pass

    def work(conn: Connection) -> None:
        direct.first(conn, select(func.count()).select_from(resource))  # begins the transaction
        assert not direct.commits_alone(conn)
        _store_last(conn, "inside")
        raise Refused

    with pytest.raises(Refused):
        _in_write_unit(database, work)
    assert _stored(database, "inside") == (0, [])


def test_a_rest_create_is_stored_with_its_index_and_read_back(fhir: TestClient) -> None:
    body = {"resourceType": "Task", "status": "requested", "intent": "order", "description": "visite"}
    created = fhir.post("/fhir/Task", json=body, headers=FHIR)
    assert created.status_code == 201, created.text
    res_id = created.json()["id"]
    assert fhir.get(f"/fhir/Task/{res_id}").json()["description"] == "visite"
    found = fhir.get("/fhir/Task", params={"status": "requested", "_id": res_id}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [res_id]


def test_a_create_a_subscriber_must_hear_of_keeps_its_notification(
    fhir: TestClient, database: Database
) -> None:
    """The first create keeps "no active subscription" for Task; one activated elsewhere since
    (a new stamp) is matched by the next create, and by the one after (its stamp kept)."""

    def create() -> str:
        answer = fhir.post("/fhir/Task", json={"resourceType": "Task", "status": "requested",
                                                "intent": "order"}, headers=FHIR)  # fmt: skip
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def queued() -> list[str]:
        with database.transaction() as conn:
            return list(conn.execute(select(subscription_event.c.res_id).order_by("event_id")).scalars())

    with database.transaction(write=True) as conn:  # the stamp row, as the migration leaves it
        if conn.execute(select(func.count()).select_from(subscription_stamp)).scalar_one() == 0:
            conn.execute(insert(subscription_stamp).values(id=1, stamp=secrets.token_hex(16)))
    sub = subscribe(fhir, "Task?status=requested")
    create()
    assert queued() == []
    with database.transaction(write=True) as conn:  # another process's handshake
        conn.execute(update(subscription).where(subscription.c.sub_id == sub["id"]).values(status="active"))
        subscription_repository.restamp(conn)
    second, third = create(), create()
    assert queued() == [second, third]
