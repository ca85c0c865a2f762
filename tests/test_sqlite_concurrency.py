"""SQLite and concurrency: the reads of REST interactions run on the event loop's own connection
(``Database.run(..., brief=True)``), neither through a worker thread nor through the pool, whose
connections writes waiting for the database lock may all hold; the writes of a process take turns
on a lock of their own (``Database._in_turn``) before asking SQLite for its write lock."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import Connection, event, text
from starlette.testclient import TestClient

from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from tests.support.databases import engine_kind

pytestmark = pytest.mark.skipif(engine_kind() != "sqlite", reason="PostgreSQL's driver is asynchronous")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.audit_mode = "process"  # the default: the audit trail is written by a process of its own
    return settings


def test_reads_are_answered_while_the_pool_is_exhausted(fhir: TestClient, database: Database) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Martin"}]}
    assert fhir.put("/fhir/Patient/p1", json=patient).status_code == 201
    taken = []
    pool = database.engine.pool
    try:
        taken = [database.engine.connect() for _ in range(pool.size() + pool._max_overflow)]  # type: ignore[attr-defined]
        assert fhir.get("/fhir/Patient/p1").json()["name"][0]["family"] == "Martin"
        assert fhir.get("/fhir/Patient", params={"family": "Martin"}).json()["total"] == 1
        assert fhir.get("/fhir/Patient/p1/_history").status_code == 200
    finally:
        for conn in taken:
            conn.close()


def test_a_brief_read_runs_in_the_loops_thread_on_its_own_connection(database: Database) -> None:
    seen: list[tuple[int, int]] = []

    def where(conn: Connection) -> int:
        seen.append((threading.get_ident(), id(conn.connection.dbapi_connection)))
        return int(conn.execute(text("SELECT 1")).scalar_one())

    async def reads() -> None:
        assert await database.run(where, brief=True) == 1
        assert await database.run(where, brief=True) == 1
        assert await database.run(where) == 1  # not brief: a worker thread, a pooled connection

    asyncio.run(reads())
    (loop_thread, brief), (again_thread, again), (worker, pooled) = seen
    assert loop_thread == again_thread == threading.get_ident()
    assert brief == again  # the loop's connection, kept
    assert worker != loop_thread
    assert pooled != brief


def test_the_writes_of_a_process_take_turns_before_asking_sqlite(database: Database) -> None:
    order: list[str] = []
    inside = threading.Event()

    def began(_conn: Connection, _cursor: object, statement: str, *_args: object) -> None:
        if statement == "BEGIN IMMEDIATE":  # recorded before SQLite is asked for its write lock
            order.append(f"begin {threading.current_thread().name}")

    def first() -> None:
        with database.transaction(write=True) as conn:
            conn.execute(text("SELECT 1"))
            inside.set()
            time.sleep(0.3)
            order.append("first commits")

    def second() -> None:
        inside.wait()
        with database.transaction(write=True) as conn:
            conn.execute(text("SELECT 1"))

    warm = [database.engine.connect() for _ in range(2)]  # opening one waits for the writer (its pragmas)
    for conn in warm:
        conn.close()
    event.listen(database.engine, "before_cursor_execute", began)
    try:
        threads = [
            threading.Thread(target=first, name="first"),
            threading.Thread(target=second, name="second"),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        event.remove(database.engine, "before_cursor_execute", began)
    # the second write did not start a transaction (to sleep in SQLite's busy handler) before the
    # first one ended
    assert order == ["begin first", "first commits", "begin second"]
