"""Read statements run straight on psycopg's asyncio connection (PostgreSQL request reads).

A read unit's statements are built once per shape and reused (``repository``,
``search_repository``). SQLAlchemy's execution layer (compiled-cache lookup, execution
context, cursor adaptation, result wrapping) cost more CPU than psycopg's own execution of
such a statement: measured on a read by id, 255 µs through ``Connection.execute`` in a unit
of work, 115 µs for psycopg alone. ``rows`` compiles a statement once, then runs its SQL text
on the driver connection (from the unit's greenlet, as SQLAlchemy's asyncio layer does) and
returns psycopg's named tuples, which read like SQLAlchemy rows (``row.res_id``, ``row[0]``).

Only in autocommit units (reads, ``Database.run(write=False)``): a failed statement there
leaves no transaction to poison. A statement whose parameters or types need SQLAlchemy's
processing at execution time (literal-execute parameters, bind or result processors), a
synchronous connection (SQLite, the CLI) or a write transaction goes through
``Connection.execute`` unchanged. Database errors are raised as SQLAlchemy's, as
``Connection.execute`` raises them (a lost connection is invalidated), so callers see one
kind of error whatever the path.

What a statement needs at execution is read from SQLAlchemy's compiled form, including
attributes SQLAlchemy keeps for its own execution context (bind and result processors, the
rendering of expanding parameters); tests/test_direct_reads.py compares the results with
``Connection.execute`` and fails if a SQLAlchemy upgrade changes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import await_only

from fhir_gateway.kit.lru import Lru


class _Plan(NamedTuple):
    statement: ClauseElement  # held so that its id is not reused while the plan is cached
    compiled: SQLCompiler | None  # None: this statement goes through SQLAlchemy


_plans: Lru[_Plan] = Lru(4096)


Params = Mapping[str, Any] | None


def rows(conn: Connection, statement: ClauseElement, params: Params = None) -> Sequence[Any]:
    """Every row of ``statement`` run with ``params`` (as ``conn.execute(...).all()``)."""
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.AsyncConnection) or not driver.autocommit:
        return conn.execute(statement, params).all()  # type: ignore[call-overload,no-any-return]
    compiled = _plan(conn.dialect, statement)
    if compiled is None:
        return conn.execute(statement, params).all()  # type: ignore[call-overload,no-any-return]
    sql, values = _text_and_values(compiled, params)
    try:
        return await_only(_fetch(driver, sql, values))
    except psycopg.Error as exc:
        raise _as_sqlalchemy_error(conn, sql, exc) from exc


def first(conn: Connection, statement: ClauseElement, params: Params = None) -> Any | None:
    """The first row of ``statement``, or None (as ``conn.execute(...).first()``)."""
    found = rows(conn, statement, params)
    return found[0] if found else None


def scalar(conn: Connection, statement: ClauseElement, params: Params = None) -> Any:
    """The one value of ``statement``'s one row (as ``conn.execute(...).scalar_one()``)."""
    found = rows(conn, statement, params)
    if len(found) != 1:
        raise RuntimeError(f"expected one row, got {len(found)}")
    return found[0][0]


async def _fetch(driver: psycopg.AsyncConnection[Any], sql: str, values: Mapping[str, Any]) -> list[Any]:
    async with driver.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(sql, values)
        return await cursor.fetchall()


def _plan(dialect: Dialect, statement: ClauseElement) -> SQLCompiler | None:
    """``statement`` compiled for ``dialect`` once, or None if it needs SQLAlchemy at execution."""

    def build() -> _Plan:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        return _Plan(statement, compiled if _runs_as_text(compiled, dialect) else None)

    key = (id(statement), dialect.name)
    plan = _plans.get_or_build(key, build)
    if plan.statement is not statement:  # an id reused after the first statement was freed
        plan = build()
        _plans.put(key, plan)
    return plan.compiled


def _text_and_values(compiled: SQLCompiler, params: Params) -> tuple[str, Mapping[str, Any]]:
    """The SQL text and parameter values of one execution, as SQLAlchemy's execution context
    makes them (``DefaultExecutionContext._init_compiled``): an expanding ``IN`` list is
    rendered with one placeholder per value, then names are escaped where the text has them so."""
    if not compiled.post_compile_params:
        return compiled.string, compiled.construct_params(params, escape_names=True)
    expanded = compiled._process_parameters_for_postcompile(
        compiled.construct_params(params, escape_names=False)
    )
    values: Mapping[str, Any] = expanded.parameters
    escaped = compiled.escaped_bind_names
    if escaped:
        values = {escaped.get(name, name): value for name, value in values.items()}
    return expanded.statement, values


def _runs_as_text(compiled: SQLCompiler, dialect: Dialect) -> bool:
    """True when the SQL text and plain parameter values are all psycopg needs (expanding
    ``IN`` lists are rendered by ``_text_and_values``)."""
    if compiled.literal_execute_params or compiled._bind_processors:
        return False
    for column in compiled._result_columns:
        if column.type._cached_result_processor(dialect, None) is not None:
            return False
    return True


def _as_sqlalchemy_error(conn: Connection, sql: str, exc: psycopg.Error) -> DBAPIError:
    """``exc`` as ``Connection.execute`` would raise it, the connection invalidated if lost."""
    lost = bool(conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, None))  # type: ignore[arg-type]
    if lost:
        conn.invalidate(exc)
    error = DBAPIError.instance(
        sql,
        None,
        exc,
        psycopg.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=conn.dialect,
    )
    assert isinstance(error, DBAPIError)
    return error
