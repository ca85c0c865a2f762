"""Read statements run straight on the driver connection (``storage.direct``) give exactly
what SQLAlchemy gives, fall back to it where they must, and fail as it fails."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import JSON, Connection, Engine, Text, bindparam, cast, event, func, literal, select, text
from sqlalchemy.exc import DBAPIError

from fhir_gateway.storage import direct
from fhir_gateway.storage.bulk import insert_rows
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.tables import resource

MOMENT = datetime(2026, 11, 26, 8, 5, 3, 250000)
ROWS = [
    {"res_type": "Task", "res_id": f"t{n}", "version": n + 1, "last_updated": MOMENT, "deleted": n == 2,
     "content": '{"resourceType":"Task","note":"é \\"quoted\\""}', "patient_id": None if n else "p1",
     "method": "POST"}
    for n in range(3)
]  # fmt: skip
BY_ID = select(resource).where(resource.c.res_type == "Task", resource.c.res_id == bindparam("rid"))
BY_IDS = select(resource.c.res_id).where(resource.c.res_id.in_(bindparam("ids", expanding=True)))


def _read(database: Database, work: Any) -> Any:
    async def run() -> Any:
        return await database.run(work)

    return asyncio.run(run())


def _through_sqlalchemy(database: Database, work: Any) -> tuple[Any, int]:
    """``_read(work)`` and how many statements went through SQLAlchemy's execution."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(Engine, "before_cursor_execute", count)
    try:
        return _read(database, work), len(seen)
    finally:
        event.remove(Engine, "before_cursor_execute", count)


@pytest.fixture
def stored(database: Database) -> None:
    with database.transaction(write=True) as conn:
        insert_rows(conn, resource, ROWS)


@pytest.mark.usefixtures("stored")
def test_rows_are_those_sqlalchemy_returns(database: Database) -> None:
    def both(conn: Connection) -> tuple[list[Any], list[Any]]:
        ours = [direct.first(conn, BY_ID, {"rid": f"t{n}"}) for n in range(4)]
        theirs = [conn.execute(BY_ID, {"rid": f"t{n}"}).first() for n in range(4)]
        return ours, theirs

    (ours, theirs), executed = _through_sqlalchemy(database, both)
    if database.dialect == "postgresql":  # ours went straight to the driver
        assert executed == 4
    assert [tuple(r) if r else None for r in ours] == [tuple(r) if r else None for r in theirs]
    assert ours[3] is None
    assert (ours[0].res_id, ours[0].patient_id, ours[2].deleted, ours[1].last_updated) == (
        "t0",
        "p1",
        True,
        MOMENT,
    )


@pytest.mark.usefixtures("stored")
def test_tuples_are_the_rows_sqlalchemy_returns_as_plain_tuples(database: Database) -> None:
    def both(conn: Connection) -> tuple[list[Any], list[Any]]:
        ids = {"ids": ["t0", "t1", "t2", "zz"]}
        return direct.tuples(conn, BY_IDS, ids), [tuple(row) for row in conn.execute(BY_IDS, ids).all()]

    (ours, theirs), executed = _through_sqlalchemy(database, both)
    if database.dialect == "postgresql":  # ours went straight to the driver
        assert executed == 1
    assert sorted(ours) == sorted(theirs)
    assert len(ours) == 3
    assert all(type(row) is tuple for row in ours)


@pytest.mark.usefixtures("stored")
def test_expanding_in_lists_are_rendered_per_execution(database: Database) -> None:
    cases = [
        (["t0", "t2", "zz"], ["t0", "t2"]),
        (["t1"], ["t1"]),
        ([], []),
        (["zz", "t1", "t0"], ["t0", "t1"]),
    ]
    for ids, expected in cases:  # the last: a rendering kept for three values, run with others
        found, executed = _through_sqlalchemy(
            database, lambda conn, ids=ids: direct.rows(conn, BY_IDS, {"ids": ids})
        )
        assert sorted(row.res_id for row in found) == expected
        if database.dialect == "postgresql":
            assert executed == 0


def test_parameter_values_are_those_sqlalchemy_constructs(database: Database) -> None:
    """The values given to the driver: literals kept from the statement, the caller's by
    parameter name, a key shared by two binds, a value computed at each execution unless
    given, a missing required value refused alike."""
    from sqlalchemy.dialects.postgresql import asyncpg
    from sqlalchemy.exc import InvalidRequestError

    shared: Any = bindparam("who")
    statement = select(resource.c.res_id).where(
        resource.c.res_type == "Task",
        resource.c.res_id.in_([shared, bindparam("other", value="t1")]),
        resource.c.patient_id == shared,
        resource.c.version > literal(0),
        resource.c.content != bindparam("fixed", value="x"),
    )
    plan = direct._plan(asyncpg.dialect(), statement)  # type: ignore[no-untyped-call]
    compiled = plan.compiled
    assert compiled is not None
    assert plan.sources is not None
    for params in ({"who": "p1"}, {"who": "p1", "other": "t2"}, {"who": "p1", "fixed": "y", "unknown": 1}):
        assert direct._values(plan, params) == compiled.construct_params(params, escape_names=False)
    with pytest.raises(InvalidRequestError, match="who"):
        direct._values(plan, {"other": "t2"})
    ticks = iter(["t0", "t1"])
    counted = select(resource.c.res_id).where(
        resource.c.res_id == bindparam("now", callable_=lambda: next(ticks))
    )
    moving = direct._plan(asyncpg.dialect(), counted)  # type: ignore[no-untyped-call]
    assert direct._values(moving, {"now": "given"}) == {"now": "given"}
    assert [direct._values(moving, None) for _ in range(2)] == [{"now": "t0"}, {"now": "t1"}]  # per execution
    preset = direct._plan(asyncpg.dialect(), BY_ID.params(rid="t1"))  # type: ignore[no-untyped-call]
    assert preset.sources is None  # values set on the statement: SQLAlchemy's own construction
    assert direct._values(preset, None) == {"rid": "t1", "res_type_1": "Task"}


def test_statements_needing_sqlalchemy_at_execution_go_through_it(database: Database) -> None:
    """A JSON parameter is serialised by SQLAlchemy's bind processor."""
    statement = select(cast(bindparam("doc", type_=JSON), Text))
    found, executed = _through_sqlalchemy(
        database, lambda conn: direct.scalar(conn, statement, {"doc": {"a": 1}})
    )
    assert json.loads(found) == {"a": 1}
    assert executed >= 1


@pytest.mark.usefixtures("stored")
def test_in_a_write_transaction_the_statement_sees_its_own_writes(database: Database) -> None:
    async def write_then_read() -> Any:
        def work(conn: Connection) -> Any:
            conn.execute(resource.update().where(resource.c.res_id == "t1").values(version=9))
            return direct.first(conn, BY_ID, {"rid": "t1"})

        return await database.run(work, write=True)

    assert asyncio.run(write_then_read()).version == 9


def test_a_failing_statement_raises_sqlalchemy_error_and_the_connection_goes_on(database: Database) -> None:
    broken = select(func.no_such_function(literal(1)))

    with pytest.raises(DBAPIError):
        _read(database, lambda conn: direct.scalar(conn, broken))
    assert _read(database, lambda conn: direct.scalar(conn, select(func.count()).select_from(resource))) == 0


def test_a_connection_the_server_dropped_is_invalidated_and_the_read_retried(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("server-side session ends are PostgreSQL's")
    count = select(func.count()).select_from(resource)

    async def scenario() -> tuple[int, int]:
        pid = await database.run(lambda conn: conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        with database.transaction() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.2)
        # the kept connection is cut: the hang-up check drops it, or the statement fails as
        # a lost connection and the read runs again on a new one
        first = await database.run(lambda conn: direct.scalar(conn, count))
        again = await database.run(lambda conn: conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        return first, again != pid

    assert asyncio.run(scenario()) == (0, True)


def test_lost_connection_errors_say_so(database: Database) -> None:
    """Without the hang-up check, the statement itself meets the cut: a DBAPIError that says
    the connection was invalidated (what ``Database.run`` retries a read on)."""
    if database.dialect != "postgresql":
        pytest.skip("server-side session ends are PostgreSQL's")

    async def scenario() -> DBAPIError:
        def cut_then_read(conn: Connection) -> Any:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with database.transaction() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            return direct.scalar(conn, select(func.count()).select_from(resource))

        engines = await database._engines()
        async_conn = await engines.read.take()
        try:
            await async_conn.run_sync(cut_then_read)
        except DBAPIError as exc:
            return exc
        finally:
            await engines.read.give_back(async_conn, reusable=False)
        raise AssertionError("the read on a cut connection did not fail")

    error = asyncio.run(scenario())
    assert error.connection_invalidated


@pytest.mark.parametrize("path", ["direct", "sqlalchemy"])
def test_a_write_unit_whose_session_the_server_ended_fails_as_a_lost_connection(
    database: Database, path: str
) -> None:
    """A write unit whose session the server ends (restart, ``pg_terminate_backend``) fails with a
    DBAPIError that says the connection was invalidated (a 503 for the client, ``errors_http``),
    whether the next statement runs on the driver or through SQLAlchemy: asyncpg raises some of
    these as interface errors SQLAlchemy does not recognise (``faults.connection_lost``)."""
    if database.dialect != "postgresql":
        pytest.skip("server-side session ends are PostgreSQL's")
    count = select(func.count()).select_from(resource)

    def cut_then_count(conn: Connection) -> Any:
        pid = direct.scalar(conn, select(func.pg_backend_pid()))
        with database.transaction() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        time.sleep(0.2)
        return direct.scalar(conn, count) if path == "direct" else conn.execute(count).scalar_one()

    async def run() -> Any:
        return await database.run(cut_then_count, write=True)

    with pytest.raises(DBAPIError) as raised:
        asyncio.run(run())
    assert raised.value.connection_invalidated
    assert asyncio.run(database.run(lambda conn: direct.scalar(conn, count), write=True)) == 0


@pytest.mark.usefixtures("stored")
def test_in_a_write_transaction_statements_run_as_compiled_text(database: Database) -> None:
    """In a write transaction, ``direct`` gives SQLAlchemy's rows: on PostgreSQL from the
    statement's compiled text run by asyncpg itself (neither ``Connection.execute`` nor a
    SQLAlchemy cursor sees it), on SQLite through ``Connection.execute``."""
    statements: list[Any] = []  # what Connection.execute was given
    cursor_runs: list[str] = []  # what the driver ran

    def both(conn: Connection) -> tuple[list[Any], list[Any]]:
        listeners = (
            ("before_execute", lambda _conn, statement, *_: statements.append(statement)),
            ("before_cursor_execute", lambda _conn, _cursor, sql, *_: cursor_runs.append(sql)),
        )
        for name, listener in listeners:
            event.listen(conn, name, listener)
        try:
            ours = [direct.first(conn, BY_ID, {"rid": f"t{n}"}) for n in range(4)]
        finally:
            for name, listener in listeners:
                event.remove(conn, name, listener)
        return ours, [conn.execute(BY_ID, {"rid": f"t{n}"}).first() for n in range(4)]

    async def run() -> tuple[list[Any], list[Any]]:
        return await database.run(both, write=True)

    ours, theirs = asyncio.run(run())
    assert [tuple(r) if r else None for r in ours] == [tuple(r) if r else None for r in theirs]
    assert (ours[0].res_id, ours[0].patient_id, ours[2].deleted, ours[1].last_updated) == (
        "t0",
        "p1",
        True,
        MOMENT,
    )
    if database.dialect == "postgresql":
        assert (statements, cursor_runs) == ([], [])
    else:  # SQLite: through Connection.execute
        assert statements == [BY_ID] * 4
        assert len(cursor_runs) == 4


def test_a_write_unit_is_one_transaction_from_its_first_driver_statement(database: Database) -> None:
    """A write unit whose statements all run on the driver (``direct``, ``bulk``) is still one
    transaction: begun before its first statement (the same transaction time throughout) and
    rolled back as a whole when the unit fails."""

    class Refused(Exception):
        pass

    def write_then_fail(conn: Connection) -> None:
        insert_rows(conn, resource, ROWS[:1])
        raise Refused

    def times(conn: Connection) -> tuple[Any, Any]:
        first = direct.scalar(conn, select(func.current_timestamp()))
        insert_rows(conn, resource, ROWS[1:2])
        time.sleep(0.05)
        return first, direct.scalar(conn, select(func.current_timestamp()))

    async def run(work: Any) -> Any:
        return await database.run(work, write=True)

    with pytest.raises(Refused):
        asyncio.run(run(write_then_fail))
    first, last = asyncio.run(run(times))
    ids = _read(database, lambda conn: direct.rows(conn, select(resource.c.res_id)))
    assert [row.res_id for row in ids] == ["t1"]  # the failed unit's row is not stored
    if database.dialect == "postgresql":  # its current_timestamp is the transaction's start
        assert first == last


def test_a_failing_statement_in_a_write_transaction_raises_sqlalchemy_error(database: Database) -> None:
    broken = select(func.no_such_function(literal(1)))

    async def run(work: Any) -> Any:
        return await database.run(work, write=True)

    with pytest.raises(DBAPIError):
        asyncio.run(run(lambda conn: direct.scalar(conn, broken)))
    assert asyncio.run(run(lambda conn: direct.scalar(conn, select(func.count()).select_from(resource)))) == 0
