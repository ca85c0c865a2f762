"""A write batch stored from a worker thread while the caller goes on (fhir.background_flush,
issue 5): the caller's statements see the rows under way, what follows the SQL (hooks, audit)
runs at ``settle`` on the caller's thread, and a failure names the batch and keeps nothing.

Run on both engines with the background forced on (``available`` only enables it where it
pays: psycopg's synchronous connection)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.scopes import parse_scopes
from fhir_gateway.fhir import background_flush
from fhir_gateway.fhir.background_flush import BackgroundFlush, BackgroundFlushFailed
from fhir_gateway.fhir.context import Ctx, unit_of_work
from fhir_gateway.fhir.write_batch import WriteBatch
from fhir_gateway.kit.errors import PreconditionFailed
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.repository import get_current
from fhir_gateway.storage.tables import idx_token, resource

TRUSTED = AccessContext("test:import", parse_scopes("system/*.cruds"), trusted=True)


def _task(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "identifier": [{"system": "urn:test:visit", "value": str(n)}],
        "for": {"reference": "Patient/p1"},
    }


def _tasks(ctx: Ctx) -> int:
    return int(ctx.conn.execute(select(func.count()).where(resource.c.res_type == "Task")).scalar_one())


def _batch(ctx: Ctx) -> WriteBatch:
    batch = WriteBatch(ctx, size=10_000)
    batch.background = BackgroundFlush(ctx)
    return batch


def test_the_callers_statements_see_the_rows_under_way_and_the_audit_follows_at_settle(
    database: Database, settings: Settings
) -> None:
    with unit_of_work(database, settings, TRUSTED, write=True, audit_sink=lambda _e: None) as ctx:
        batch = _batch(ctx)
        assert batch.background is not None
        try:
            created = [batch.create("Task", _task(n))[0].row.res_id for n in range(400)]
            audited = len(ctx.audit_events)
            batch.flush_later("lines 2-401")
            assert batch.pending == []
            assert batch.background.busy
            # a statement of this thread waits for the rows: all of them, index rows too
            assert _tasks(ctx) == 400
            tokens = select(func.count()).where(
                idx_token.c.res_type == "Task", idx_token.c.param == "identifier"
            )
            assert ctx.conn.execute(tokens).scalar_one() == 400
            assert len(ctx.audit_events) == audited  # hooks and audit wait for settle
            batch.settle()
            assert not batch.background.busy
            assert len(ctx.audit_events) == audited + 400
            found = get_current(ctx.conn, "Task", created[-1])
            assert found is not None
            assert found.version == 1
            # the next batch: stored after the first, then settled by a plain flush
            batch.create("Task", _task(400))
            batch.flush_later("line 402")
            batch.flush()
            assert _tasks(ctx) == 401
            assert len(ctx.audit_events) == audited + 401
        finally:
            batch.background.close()


def test_a_failure_in_the_background_names_the_batch_and_keeps_nothing(
    database: Database, settings: Settings
) -> None:
    with unit_of_work(database, settings, TRUSTED, write=True, audit_sink=lambda _e: None) as ctx:
        batch = WriteBatch(ctx)
        stored = batch.create("Task", _task(1))[0].row
        batch.flush()
    with pytest.raises(BackgroundFlushFailed) as failed:  # noqa: PT012 - the unit of work must roll back
        with unit_of_work(database, settings, TRUSTED, write=True, audit_sink=lambda _e: None) as ctx:
            batch = _batch(ctx)
            assert batch.background is not None
            try:
                for n in range(2, 50):
                    batch.create("Task", _task(n))
                stale = get_current(ctx.conn, "Task", stored.res_id)
                assert stale is not None
                # another request changed the Task after this one read it
                ctx.conn.execute(
                    resource.update()
                    .where(resource.c.res_type == "Task", resource.c.res_id == stored.res_id)
                    .values(version=5)
                )
                batch.update(
                    "Task", stored.res_id, {**_task(1), "id": stored.res_id, "status": "cancelled"}, stale
                )
                batch.flush_later((3, 9))
                _tasks(ctx)  # the caller's next statement fails as the rows did
            finally:
                batch.background.close()
    assert failed.value.label == (3, 9)
    assert isinstance(failed.value.error, PreconditionFailed)
    with unit_of_work(database, settings, TRUSTED, write=False, audit_sink=lambda _e: None) as ctx:
        assert _tasks(ctx) == 1  # the 48 creates of the failed batch were rolled back


def test_writes_that_change_later_checks_are_stored_at_once(database: Database, settings: Settings) -> None:
    with unit_of_work(database, settings, TRUSTED, write=True, audit_sink=lambda _e: None) as ctx:
        batch = _batch(ctx)
        assert batch.background is not None
        try:
            batch.create("Task", _task(1))
            batch.create(
                "CareTeam",
                {"resourceType": "CareTeam", "status": "active", "subject": {"reference": "Patient/p1"}},
            )
            batch.flush_later("lines 2-3")
            assert not batch.background.busy  # stored and settled before returning
            assert _tasks(ctx) == 1
        finally:
            batch.background.close()


def test_only_psycopgs_synchronous_connection_stores_in_the_background(
    database: Database, settings: Settings
) -> None:
    with unit_of_work(database, settings, TRUSTED, write=False, audit_sink=lambda _e: None) as ctx:
        expected = ctx.conn.dialect.driver == "psycopg" and not ctx.conn.dialect.is_async
        assert background_flush.available(ctx.conn) is expected
