"""Statements run straight on the driver (PostgreSQL: asyncpg for a request's units, psycopg for the CLI).

A unit's statements are built once per shape and reused (``repository``,
``search_repository``, ``write_opening``). SQLAlchemy's execution layer (compiled-cache lookup,
execution context, cursor adaptation, result wrapping) costs more CPU than the driver's own
execution of such a statement. ``rows`` compiles a statement once, then runs its SQL text with
asyncpg's ``fetch`` (which prepares it once per connection and keeps it) from the unit's
greenlet, as SQLAlchemy's asyncio layer does, and returns named tuples, which read like
SQLAlchemy rows (``row.res_id``, ``row[0]``); ``execute`` runs a statement's text (``bulk``'s
inserts) and returns its row count.

A read unit's connection is in autocommit: each statement on its own. In a write unit the
transaction is begun before its first statement, as SQLAlchemy's adapter begins it before its
own (``_on_asyncpg``), so a unit whose statements all run here is still one transaction, which
SQLAlchemy commits or rolls back. Two statements of a write unit may run before it instead
(``begin=False``; asyncpg only): a read whose answer does not depend on running inside the
transaction (its opening check: under READ COMMITTED every statement sees what was committed
when it began, in a transaction or not), and a write that is the unit's last statement and whole
write (``value_of_last``), which then commits on its own: such a unit sends no BEGIN and no
COMMIT (two round trips of a partner's create's four). A statement after that last one is
refused. On psycopg's synchronous connection (the CLI, the audit writer process) the compiled
text and its parameters' values go through ``Connection.exec_driver_sql``: SQLAlchemy's
execution and error handling, without making the statement's cache key or processing its
parameters one by one at each execution. A statement whose parameters or types
need SQLAlchemy's processing at execution time (literal-execute parameters, bind or result
processors; expanding lists on psycopg), or SQLite's, goes through ``Connection.execute``
unchanged. Database errors are raised as SQLAlchemy's, as ``Connection.execute`` raises them (a
lost connection is invalidated), so callers see one kind of error whatever the path.

What a statement needs at execution is read from SQLAlchemy's compiled form, including
attributes SQLAlchemy keeps for its own execution context (bind and result processors, the
rendering of expanding parameters); tests/test_direct_reads.py compares the results with
``Connection.execute`` and fails if a SQLAlchemy upgrade changes them.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import psycopg
from sqlalchemy import Connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import await_only

from fhir_gateway.kit.lru import Lru
from fhir_gateway.storage.faults import connection_lost


class _Plan:
    """How one statement runs: its compiled form (None: through SQLAlchemy), row type, where
    its parameters' values come from, and its renderings for the lengths of its expanding
    ``IN`` lists met so far."""

    __slots__ = ("compiled", "expanding", "expansions", "row_type", "sources", "statement")

    def __init__(self, statement: ClauseElement, compiled: SQLCompiler | None) -> None:
        self.statement = statement  # held so that its id is not reused while the plan is cached
        self.compiled = compiled
        self.row_type: Any = None  # the named tuple of its result columns, made at the first row
        # the expanding parameters' names, None when one is a tuple (rendered every time)
        self.expanding = _expanding_names(compiled) if compiled is not None else None
        self.expansions: Lru[_Expansion] = Lru(EXPANSIONS_KEPT)
        self.sources = _sources(compiled) if compiled is not None else None

    def rows_of(self, records: Sequence[asyncpg.Record]) -> list[Any]:
        if not records:
            return []
        if self.row_type is None:
            self.row_type = namedtuple("Row", list(records[0].keys()), rename=True)  # type: ignore[misc]
        make = self.row_type._make
        return [make(record) for record in records]


_plans: Lru[_Plan] = Lru(4096)


Params = Mapping[str, Any] | None


def rows(
    conn: Connection, statement: ClauseElement, params: Params = None, *, begin: bool = True
) -> Sequence[Any]:
    """Every row of ``statement`` run with ``params`` (as ``conn.execute(...).all()``);
    ``begin=False``: not the statement that begins a write unit's transaction (module doc)."""
    plan, found = _run(conn, statement, params, begin)
    return found if plan is None else plan.rows_of(found)


def tuples(conn: Connection, statement: ClauseElement, params: Params = None) -> list[tuple[Any, ...]]:
    """Every row of ``statement`` as a plain tuple (``rows`` without named tuples to make, for
    a caller that reads its columns by place)."""
    return [tuple(row) for row in _run(conn, statement, params, True)[1]]


def _run(
    conn: Connection, statement: ClauseElement, params: Params, begin: bool
) -> tuple[_Plan | None, Sequence[Any]]:
    """``statement``'s rows: asyncpg's records and the statement's plan, or SQLAlchemy's rows
    (and None) where it runs through ``Connection.exec_driver_sql`` or ``Connection.execute``."""
    driver = conn.connection.driver_connection
    if isinstance(driver, psycopg.Connection):
        return None, _driver_sql_rows(conn, statement, params)
    if not isinstance(driver, asyncpg.Connection):
        return None, conn.execute(statement, params).all()  # type: ignore[call-overload]
    plan = _plan(conn.dialect, statement)
    if plan.compiled is None:
        return None, conn.execute(statement, params).all()  # type: ignore[call-overload]
    sql, args = _text_and_args(plan, params)
    return plan, _on_asyncpg(conn, driver, sql, driver.fetch(sql, *args), begin=begin)


def execute(conn: Connection, sql: str, args: Sequence[Any]) -> int:
    """Run ``sql`` (PostgreSQL's ``$n`` placeholders on asyncpg, psycopg's ``%s`` otherwise)
    with the positional ``args``; the number of rows it changed (``rowcount``)."""
    driver = conn.connection.driver_connection
    if not isinstance(driver, asyncpg.Connection):
        return int(conn.exec_driver_sql(sql, tuple(args)).rowcount)
    status: str = _on_asyncpg(conn, driver, sql, driver.execute(sql, *args))
    count = status.rpartition(" ")[2]
    return int(count) if count.isdigit() else -1


def commits_alone(conn: Connection) -> bool:
    """Whether ``value_of_last`` would commit on its own: asyncpg, and the unit has begun no
    transaction yet (its statements so far ran with ``begin=False``)."""
    adapted: Any = conn.connection.dbapi_connection
    return isinstance(conn.connection.driver_connection, asyncpg.Connection) and adapted._transaction is None


def value_of_last(conn: Connection, sql: str, args: Sequence[Any]) -> Any:
    """The value of the one row of ``sql`` (``$n`` placeholders), the write unit's last statement:
    run outside a transaction when none was begun (``commits_alone``), so that it commits on its
    own; no statement may follow it on this connection until it is given back."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, asyncpg.Connection)
    value = _on_asyncpg(conn, driver, sql, driver.fetchval(sql, *args), begin=False)
    conn.info[_ENDED] = True
    return value


_ENDED = "fhir_gateway.unit_ended"  # ``conn.info``: its unit ran its last statement (``value_of_last``)


def unit_ended(conn: Connection) -> None:
    """Allow statements on ``conn`` again: its unit is over (``Database`` gives it back). An
    invalidated connection is left alone (its info would be a new connection's: it is not reused)."""
    if not conn.invalidated and not conn.closed:
        conn.info.pop(_ENDED, None)


def refuse_after_last(conn: Connection, *_: object) -> None:
    """RuntimeError when ``conn``'s unit already ran its last statement (``value_of_last``: it
    committed on its own; another would begin a transaction of its own). Also SQLAlchemy's
    ``before_cursor_execute`` listener on the asyncio engines (``Database``)."""
    if conn.info.get(_ENDED):
        raise RuntimeError("a statement after the unit's last one, which committed on its own")


def _on_asyncpg(
    conn: Connection, driver: asyncpg.Connection, sql: str, call: Any, *, begin: bool = True
) -> Any:
    """The result of ``call`` (a coroutine of ``driver`` running ``sql``) awaited from the
    unit's greenlet, in the unit's transaction: begun first if this is its first statement
    (a write unit; a read unit's connection is in autocommit), as SQLAlchemy's asyncpg adapter
    begins it before its own first statement, unless ``begin`` is False (module doc).
    Database errors are raised as SQLAlchemy's."""
    adapted: Any = conn.connection.dbapi_connection
    try:
        refuse_after_last(conn)
    except RuntimeError:
        call.close()
        raise
    try:
        if begin and adapted._transaction is None and not adapted.autocommit:
            await_only(adapted._start_transaction())
        return await_only(call)
    except Exception as exc:
        call.close()  # not awaited when the transaction could not begin
        raise _as_sqlalchemy_error(conn, sql, exc) from exc


def first(
    conn: Connection, statement: ClauseElement, params: Params = None, *, begin: bool = True
) -> Any | None:
    """The first row of ``statement``, or None (as ``conn.execute(...).first()``)."""
    found = rows(conn, statement, params, begin=begin)
    return found[0] if found else None


def scalar(conn: Connection, statement: ClauseElement, params: Params = None) -> Any:
    """The one value of ``statement``'s one row (as ``conn.execute(...).scalar_one()``)."""
    found = rows(conn, statement, params)
    if len(found) != 1:
        raise RuntimeError(f"expected one row, got {len(found)}")
    return found[0][0]


def _driver_sql_rows(conn: Connection, statement: ClauseElement, params: Params) -> Sequence[Any]:
    """``statement``'s rows on psycopg's synchronous connection (the CLI's): its SQL text, compiled
    once, and its parameters' values run through ``Connection.exec_driver_sql``, which keeps
    SQLAlchemy's error handling and events but neither makes the statement's cache key (a walk
    of the whole statement: a partner's consent probe has dozens of nodes) nor processes its
    parameters one by one. ``Connection.execute`` where the text is not enough."""
    plan = _plan(conn.dialect, statement)
    if plan.compiled is None:
        found: Sequence[Any] = conn.execute(statement, params).all()  # type: ignore[call-overload]
        return found
    return conn.exec_driver_sql(plan.compiled.string, _values(plan, params)).all()


def _plan(dialect: Dialect, statement: ClauseElement) -> _Plan:
    """``statement``'s plan for ``dialect``, compiled once."""

    def build() -> _Plan:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        return _Plan(statement, compiled if _runs_as_text(compiled, dialect) else None)

    key = (id(statement), dialect.name, dialect.driver)
    plan = _plans.get_or_build(key, build)
    if plan.statement is not statement:  # an id reused after the first statement was freed
        plan = build()
        _plans.put(key, plan)
    return plan


EXPANSIONS_KEPT = 64  # renderings kept per statement (one per combination of list lengths)

# A rendering of a statement with expanding lists: its SQL text, and where each positional
# argument comes from (a parameter's name, and the index of the element of a list, or None)
_Expansion = tuple[str, tuple[tuple[str, int | None], ...]]


class _Marker:
    """A parameter value standing for ``values[name]`` (or its element ``index``) while a
    rendering is worked out, so that each argument's origin can be read back."""

    __slots__ = ("index", "name")

    def __init__(self, name: str, index: int | None) -> None:
        self.name, self.index = name, index


def _expanding_names(compiled: SQLCompiler) -> tuple[str, ...] | None:
    names = []
    for parameter in compiled.post_compile_params:
        if parameter.type._is_tuple_type:
            return None
        names.append(compiled.bind_names[parameter])
    return tuple(names)


class _Sources:
    """Where a statement's parameter values come from at each execution (as
    ``SQLCompiler.construct_params`` takes them): the values of its literals, the binds whose
    value is computed per execution (the consent statements' "now"), and the parameter names
    a caller's key sets, as a parameter's name then as a bind's key (the key wins)."""

    __slots__ = ("computed", "fixed", "given", "names")

    def __init__(self, compiled: SQLCompiler) -> None:
        self.fixed: dict[str, Any] = {}
        unfixed: set[str] = set()
        computed: dict[str, Any] = {}
        by_name: dict[str, list[str]] = {}
        by_key: dict[str, list[str]] = {}
        for bind, name in compiled.bind_names.items():
            if bind.callable is not None:
                computed[name] = bind.callable
                unfixed.add(name)
            elif bind.required:
                unfixed.add(name)
            else:
                self.fixed[name] = bind.value
            by_name[name] = [name]
            by_key.setdefault(bind.key, []).append(name)
        for name in unfixed:  # a name some bind requires or computes is never a literal's
            self.fixed.pop(name, None)
        self.computed = tuple(computed.items())
        self.given = tuple({key: tuple(names) for key, names in m.items()} for m in (by_name, by_key))
        self.names = len(by_name)

    def values(self, params: Params) -> dict[str, Any] | None:
        """Each parameter's value, without walking every parameter of the statement (a
        consent-filtered read has dozens, nearly all literals); None when a required one is
        missing (``construct_params`` says which)."""
        values = self.fixed.copy()
        if params:
            for given in self.given:
                for key, value in params.items():
                    for name in given.get(key, ()):
                        values[name] = value
        for name, compute in self.computed:
            if name not in values:
                values[name] = compute()
        return values if len(values) == self.names else None


def _sources(compiled: SQLCompiler) -> _Sources | None:
    """``compiled``'s sources, None when ``.params()`` set values on the statement."""
    return None if getattr(compiled, "_collected_params", None) else _Sources(compiled)


def _values(plan: _Plan, params: Params) -> dict[str, Any]:
    """Each parameter's value for one execution, as ``construct_params`` gives it."""
    compiled = plan.compiled
    assert compiled is not None
    found = plan.sources.values(params) if plan.sources is not None else None
    return found if found is not None else dict(compiled.construct_params(params, escape_names=False))


def _text_and_args(plan: _Plan, params: Params) -> tuple[str, list[Any]]:
    """The SQL text and positional arguments of one execution, as SQLAlchemy's execution
    context makes them (``DefaultExecutionContext._init_compiled``): an expanding ``IN`` list
    is rendered with one placeholder per value. A statement's rendering for given list
    lengths is worked out once (SQLAlchemy renders it anew at every execution)."""
    compiled = plan.compiled
    assert compiled is not None
    values = _values(plan, params)
    if not compiled.post_compile_params:
        return compiled.string, [values[name] for name in compiled.positiontup or ()]
    expanding = plan.expanding
    if expanding is None:
        expanded = compiled._process_parameters_for_postcompile(values)
        return expanded.statement, [expanded.parameters[name] for name in expanded.positiontup or ()]
    lengths = tuple(len(values[name]) for name in expanding)
    sql, origins = plan.expansions.get_or_build(lengths, lambda: _expansion(compiled, values, expanding))
    return sql, [values[name] if index is None else values[name][index] for name, index in origins]


def _expansion(compiled: SQLCompiler, values: Mapping[str, Any], expanding: Sequence[str]) -> _Expansion:
    """The rendering for the lengths of ``values``' lists: SQLAlchemy's, of markers."""
    probe: dict[str, Any] = {name: _Marker(name, None) for name in values}
    for name in expanding:
        probe[name] = [_Marker(name, index) for index in range(len(values[name]))]
    expanded = compiled._process_parameters_for_postcompile(probe)
    origins = []
    for name in expanded.positiontup or ():
        marker = expanded.parameters[name]
        assert isinstance(marker, _Marker), name
        origins.append((marker.name, marker.index))
    return expanded.statement, tuple(origins)


def _runs_as_text(compiled: SQLCompiler, dialect: Dialect) -> bool:
    """True when the SQL text and plain parameter values are all the driver needs: asyncpg's
    positional parameters (expanding ``IN`` lists rendered by ``_text_and_args``), or psycopg's
    named ones (no expanding list: SQLAlchemy renders those at each execution)."""
    if compiled.literal_execute_params or compiled._bind_processors or compiled.escaped_bind_names:
        return False
    if compiled.positiontup is None and (dialect.driver != "psycopg" or compiled.post_compile_params):
        return False
    for column in compiled._result_columns:
        if column.type._cached_result_processor(dialect, None) is not None:
            return False
    return True


def _as_sqlalchemy_error(conn: Connection, sql: str, exc: Exception) -> Exception:
    """``exc`` as ``Connection.execute`` would raise it (the DB-API error SQLAlchemy's asyncpg
    adapter makes of it, wrapped in ``DBAPIError``), the connection invalidated if lost;
    ``exc`` itself if it is not the database's."""
    adapted: Any = conn.connection.dbapi_connection
    dbapi_error_type = conn.dialect.loaded_dbapi.Error
    try:
        adapted._handle_exception(exc)
    except Exception as translated:
        error = translated
    else:  # pragma: no cover - the adapter always raises
        error = exc
    if not isinstance(error, dbapi_error_type):
        return exc
    lost = bool(conn.dialect.is_disconnect(error, adapted, None)) or connection_lost(error)
    if lost:
        conn.invalidate(error)
    wrapped = DBAPIError.instance(
        sql,
        None,
        error,
        dbapi_error_type,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=conn.dialect,
    )
    assert isinstance(wrapped, DBAPIError)
    return wrapped
