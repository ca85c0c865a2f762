"""Many rows into one table in one statement (DESIGN.md, Storage: batched index writes).

On PostgreSQL, one round trip and one prepared statement per table whatever the number of
rows (an ``executemany`` costs one statement execution per row):

- under ``JSON_ROWS_UNDER`` rows (a REST request's writes, a batch of audit events), the
  rows travel as one JSON array of arrays, serialised in C by orjson, and
  ``jsonb_array_elements`` spreads them: psycopg's typed arrays cost about 30 µs of Python
  per column, three times the CPU of the whole statement this way;
- from there, ``INSERT ... SELECT * FROM unnest(%s::type[], ...)``, whose arrays the server
  reads faster than JSON once there are a few hundred rows;
- from ``COPY_FROM`` rows on the synchronous driver, ``COPY ... FROM STDIN``.

Bulk updates join the table to an ``unnest``. On SQLite,
the driver's ``executemany`` (a C loop, no round trips) is already the fast path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    insert,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from fhir_gateway.storage import direct
from fhir_gateway.storage.audit_refs import with_audit_refs


def _pg_type(column: Column[Any]) -> str:
    return str(column.type.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]


def _unnest_type(column: Column[Any]) -> str:
    """The array type a column's values are sent as: text as ``text``, so that the insert's
    assignment cast refuses a value too long (an explicit cast to ``varchar(n)`` cuts it)."""
    return "text" if isinstance(column.type, String) else _pg_type(column)


def _is_float(column: Column[Any]) -> bool:
    return isinstance(column.type, Float) and not isinstance(column.type, Integer | Boolean)


_driver_inserts: dict[tuple[str, Table, tuple[str, ...]], tuple[str, tuple[Any, ...]]] = {}


def _driver_insert(
    conn: Connection, table: Table, on_conflict: tuple[str, ...]
) -> tuple[str, tuple[Any, ...]]:
    """(SQL, bind processors) of a driver-level ``executemany`` insert of all of ``table``'s
    columns in their order: the rows go to the driver as tuples, without SQLAlchemy's per-row
    parameter handling (SQLite)."""
    key = (conn.dialect.name, table, on_conflict)
    if key not in _driver_inserts:
        statement: Any = insert(table)
        if on_conflict:
            statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=list(on_conflict))
        names = column_names(table)
        compiled = statement.compile(dialect=conn.dialect, column_keys=list(names))
        if tuple(compiled.positiontup or ()) != names:
            raise RuntimeError(f"{table.name}: parameters not in column order")
        processors = tuple(
            c.type.dialect_impl(conn.dialect).bind_processor(conn.dialect) for c in table.columns
        )
        _driver_inserts[key] = (str(compiled), processors)
    return _driver_inserts[key]


@cache
def column_names(table: Table) -> tuple[str, ...]:
    """``table``'s column names in order: the order of the tuples ``insert_tuples`` takes."""
    return tuple(c.name for c in table.columns)


@cache
def _unnest_insert(
    table: Table, on_conflict: tuple[str, ...]
) -> tuple[str, tuple[str, ...], tuple[bool, ...]]:
    """(SQL, column names, whether each column is a float) for ``table`` on PostgreSQL."""
    columns = tuple(table.columns)
    arrays = ", ".join(f"%b::{_unnest_type(c)}[]" for c in columns)
    names = ", ".join(f'"{c.name}"' for c in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({arrays})'
    if on_conflict:
        sql += f" ON CONFLICT ({', '.join(on_conflict)}) DO NOTHING"
    return sql, tuple(c.name for c in columns), tuple(_is_float(c) for c in columns)


JSON_ROWS_UNDER = 128  # rows from which the typed arrays of ``unnest`` cost less overall


@cache
def _json_insert(table: Table, on_conflict: tuple[str, ...]) -> str:
    """``INSERT ... SELECT`` of ``table``'s columns from a JSON array of row arrays (PostgreSQL).

    Text goes in as text, so that the insert's own assignment cast refuses a value too long
    for its column as the other paths do (an explicit cast to ``varchar(n)`` would cut it).
    """
    sql = _json_insert_of(table, tuple(table.columns))
    if on_conflict:
        sql += f" ON CONFLICT ({', '.join(on_conflict)}) DO NOTHING"
    return sql


def _json_insert_of(table: Table, columns: tuple[Column[Any], ...]) -> str:
    """``INSERT`` of ``columns`` of ``table`` from a JSON array of row arrays (``_json_insert``)."""
    names = ", ".join(f'"{c.name}"' for c in columns)
    values = ", ".join(
        f"r->>{i}" if isinstance(c.type, String) else f"(r->>{i})::{_pg_type(c)}"
        for i, c in enumerate(columns)
    )
    return f'INSERT INTO "{table.name}" ({names}) SELECT {values} FROM jsonb_array_elements(%s::jsonb) AS r'


def insert_numbered(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts by column name) into ``table``, whose serial key the database
    numbers; a column a row leaves out gets its scalar default, as ``Connection.execute`` gives
    it. On PostgreSQL one statement of JSON rows (as ``insert_tuples``), where SQLAlchemy's
    ``executemany`` renders a multi-row ``VALUES`` row by row; elsewhere ``Connection.execute``."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), list(rows))
        return
    sql, defaults = _numbered_insert(table)
    values = [[row.get(name, default) for name, default in defaults] for row in rows]
    _execute(conn, sql, (_json_rows(values),))


@cache
def _numbered_insert(table: Table) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """``insert_numbered``'s SQL, and each filled column's name and default value."""
    columns = tuple(c for c in table.columns if not (c.primary_key and c.autoincrement is True))
    scalar = ScalarElementColumnDefault
    defaults = tuple((c.name, c.default.arg if isinstance(c.default, scalar) else None) for c in columns)
    return _json_insert_of(table, columns), defaults


Part = tuple[Table, Sequence[Sequence[Any]]]  # a table and rows in its column order


def insert_many(
    conn: Connection,
    parts: Sequence[Part],
    *,
    whatever_size: bool = False,
    skip_clashes: Mapping[Table, tuple[str, ...]] | None = None,
) -> int:
    """``insert_tuples`` into several tables; on PostgreSQL, when every part is under
    ``JSON_ROWS_UNDER`` rows, in one statement (data-modifying ``WITH`` parts, one round trip:
    a write's history row and its search index rows together).

    ``whatever_size``: one JSON statement on PostgreSQL however many rows (the audit trail's
    batches: serialising the rows is then one orjson call, where psycopg's typed arrays are
    Python code per value, run on the event loop's thread).
    ``skip_clashes``: per table, the unique columns whose clashing rows are skipped
    (``ON CONFLICT DO NOTHING``). Returns the number of rows the last part inserted. On
    PostgreSQL, AuditEvents' reference and date rows go to their ``audit_terms`` row
    (``storage.audit_refs``)."""
    if conn.dialect.name == "postgresql":
        parts = with_audit_refs(parts)
    parts = [(table, rows) for table, rows in parts if rows]
    if not parts:
        return 0
    clashes = tuple((skip_clashes or {}).get(table, ()) for table, _ in parts)
    if (
        conn.dialect.name != "postgresql"
        or len(parts) < 2
        or (not whatever_size and any(len(r) >= JSON_ROWS_UNDER for _, r in parts))
    ):
        inserted = 0
        for (table, rows), on_conflict in zip(parts, clashes, strict=True):
            inserted = insert_tuples(conn, table, rows, on_conflict=on_conflict)
        return inserted
    sql = _json_inserts(tuple(table for table, _ in parts), clashes)
    # the statement's own count: the last part's, after its WITH parts
    return _execute(conn, sql, tuple(_json_rows(rows) for _, rows in parts))


@cache
def _json_inserts(tables: tuple[Table, ...], clashes: tuple[tuple[str, ...], ...]) -> str:
    """One statement inserting JSON rows into each of ``tables`` (PostgreSQL), skipping the
    rows that clash on each table's ``clashes`` columns (none: no skipping)."""
    *first, last = (_json_insert(table, on) for table, on in zip(tables, clashes, strict=True))
    steps = ", ".join(f"i{n} AS ({sql})" for n, sql in enumerate(first))
    return f"WITH {steps} {last}"


def insert_as_last(conn: Connection, owners: Part, parts: Sequence[Part], key: tuple[str, ...]) -> int:
    """Insert the rows of ``owners`` (each new, unless one with the same ``key`` exists: it is
    skipped) and, for the owners inserted only, the rows of ``parts`` (whose owner's id is their
    ``res_id`` column), as the unit's last statement (``direct.value_of_last``: it commits on its
    own when the unit has begun no transaction). One statement whatever befalls it: a clashing
    owner leaves no row of ``parts`` behind, as a rolled back transaction would. PostgreSQL on
    asyncpg only; the number of owners inserted."""
    table, rows = owners
    present = [(t, r) for t, r in with_audit_refs(parts) if r]
    sql = numbered_placeholders(_inserts_owned_by(table, key, tuple(t for t, _ in present)))
    args = (_json_rows(rows), *(_json_rows(r) for _, r in present))
    return int(direct.value_of_last(conn, sql, args))


@cache
def _inserts_owned_by(owner: Table, key: tuple[str, ...], tables: tuple[Table, ...]) -> str:
    """``insert_as_last``'s statement: the owners' insert first, returning their ids, then each
    of ``tables``' inserts keeping the rows of the owners inserted, then their count."""
    steps = [f"stored AS ({_json_insert(owner, key)} RETURNING res_id)"]
    for n, table in enumerate(tables):
        owner_id = f"r->>{column_names(table).index('res_id')}"
        steps.append(f"i{n} AS ({_json_insert(table, ())} WHERE {owner_id} IN (SELECT res_id FROM stored))")
    return f"WITH {', '.join(steps)} SELECT count(*) FROM stored"


def _execute(conn: Connection, sql: str, args: Sequence[Any]) -> int:
    """Run one of this module's PostgreSQL statements, written with psycopg's placeholders
    (``%s``, ``%b``: binary), on ``conn``'s driver (asyncpg's numbered ones there); the
    number of rows it changed."""
    if conn.dialect.paramstyle == "numeric_dollar":
        sql = numbered_placeholders(sql)
    return direct.execute(conn, sql, args)


@cache
def numbered_placeholders(sql: str) -> str:
    """``sql`` with its ``%s`` and ``%b`` placeholders as ``$1``, ``$2``... in order (asyncpg).
    The statements of this module hold no other ``%``."""
    parts = _PLACEHOLDER.split(sql)
    return "".join(part if n == 0 else f"${n}{part}" for n, part in enumerate(parts))


_PLACEHOLDER = re.compile("%[sb]")


def _json_value(value: Any) -> Any:
    """What orjson does not write itself: decimals (quantities) as numbers."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not a column value")


def _json_rows(rows: Sequence[Sequence[Any]]) -> str:
    return orjson.dumps(rows, default=_json_value).decode()


def _arrays(names: Sequence[str], floats: Sequence[bool], rows: Sequence[dict[str, Any]]) -> tuple[Any, ...]:
    arrays: list[list[Any]] = []
    for name, is_float in zip(names, floats, strict=True):
        values = [row.get(name) for row in rows]
        if is_float:
            values = [None if v is None else float(v) for v in values]
        arrays.append(values)
    return tuple(arrays)


def _columns(floats: Sequence[bool], rows: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    """The values of ``rows`` (tuples in column order) as one list per column."""
    arrays: list[list[Any]] = []
    for index, is_float in enumerate(floats):
        values = [row[index] for row in rows]
        if is_float:
            values = [None if v is None else float(v) for v in values]
        arrays.append(values)
    return tuple(arrays)


def _processed(rows: Sequence[Sequence[Any]], processors: Sequence[Any]) -> Sequence[Sequence[Any]]:
    """``rows`` with each column's bind processor applied (once per distinct value of a
    column: the dates of a batch repeat)."""
    converting: list[tuple[int, Any, dict[Any, Any]]] = [
        (index, p, {}) for index, p in enumerate(processors) if p is not None
    ]
    if not converting:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for index, process, seen in converting:
            value = values[index]
            try:
                values[index] = seen[value]
            except KeyError:
                values[index] = seen[value] = process(value)
            except TypeError:  # not hashable
                values[index] = process(value)
        out.append(tuple(values))
    return out


def insert_rows(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, on_conflict: tuple[str, ...] = ()
) -> int:
    """Insert ``rows`` (dicts by column name; a missing column is NULL) into ``table``.

    ``on_conflict``: the unique columns; rows clashing with an existing one are skipped
    (``ON CONFLICT DO NOTHING``). Returns the number of rows inserted.
    """
    names = column_names(table)
    return insert_tuples(conn, table, [tuple(map(row.get, names)) for row in rows], on_conflict=on_conflict)


def insert_tuples(
    conn: Connection, table: Table, rows: Sequence[Sequence[Any]], *, on_conflict: tuple[str, ...] = ()
) -> int:
    """``insert_rows`` of rows given as tuples of values in ``table``'s column order
    (``column_names``)."""
    if not rows:
        return 0
    if conn.dialect.name != "postgresql":
        sql, processors = _driver_insert(conn, table, on_conflict)
        result = conn.exec_driver_sql(sql, _processed(rows, processors))
        return int(result.rowcount) if on_conflict else len(rows)
    if len(rows) < JSON_ROWS_UNDER:
        return _execute(conn, _json_insert(table, on_conflict), (_json_rows(rows),))
    if not on_conflict and len(rows) >= COPY_FROM and _synchronous_driver(conn):
        return _copy(conn, table, rows)
    sql, _names, floats = _unnest_insert(table, on_conflict)
    return _execute(conn, sql, _columns(floats, rows))


COPY_FROM = 500  # rows from which PostgreSQL gets them by COPY (the fastest way in, no SQL per row)


def _synchronous_driver(conn: Connection) -> bool:
    """COPY is driven here through psycopg's synchronous connection (the CLI's); a request's
    connection is asyncpg's (``Database.run``), which takes the ``unnest`` insert."""
    import psycopg

    return isinstance(conn.connection.driver_connection, psycopg.Connection)


def _copy(conn: Connection, table: Table, rows: Sequence[Sequence[Any]]) -> int:
    """``COPY table FROM STDIN`` in the connection's transaction (psycopg 3)."""
    names = column_names(table)
    floats = [index for index, c in enumerate(table.columns) if _is_float(c)]
    columns = ", ".join(f'"{n}"' for n in names)
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({columns}) FROM STDIN') as copy:
        for row in rows:
            if floats:
                row = list(row)
                for index in floats:
                    if row[index] is not None:
                        row[index] = float(row[index])
            copy.write_row(row)
    return len(rows)


@cache
def _unnest_update(
    table: Table, keys: tuple[str, ...], guard: str, columns: tuple[str, ...]
) -> tuple[str, tuple[str, ...], tuple[bool, ...]]:
    """``UPDATE table SET ... FROM unnest(...) WHERE keys match and guard = expected`` (PostgreSQL)."""
    cols = [table.c[name] for name in (*keys, guard, *columns)]
    names = (*keys, f"expected_{guard}", *columns)
    arrays = ", ".join(f"%b::{_pg_type(c)}[]" for c in cols)
    alias = ", ".join(f'"{n}"' for n in names)
    assignments = ", ".join(f'"{c}" = v."{c}"' for c in columns)
    matches = " AND ".join(f't."{k}" = v."{k}"' for k in keys)
    sql = (
        f'UPDATE "{table.name}" AS t SET {assignments} FROM unnest({arrays}) AS v({alias}) '
        f'WHERE {matches} AND t."{guard}" = v."expected_{guard}"'
    )
    return sql, names, tuple(_is_float(c) for c in cols)


def update_rows(
    conn: Connection, table: Table, keys: tuple[str, ...], guard: str, rows: Sequence[dict[str, Any]]
) -> int:
    """Update many rows found by ``keys`` only while ``guard`` still equals ``expected_<guard>``
    (optimistic locking); each row dict has the keys, ``expected_<guard>`` and the new values.
    Returns the number of rows updated (fewer than given: some changed meanwhile)."""
    if not rows:
        return 0
    columns = tuple(name for name in rows[0] if name not in keys and name != f"expected_{guard}")
    if conn.dialect.name != "postgresql":
        where = and_(*(table.c[k] == bindparam(f"key_{k}") for k in keys))
        statement = (
            update(table)
            .where(where, table.c[guard] == bindparam(f"expected_{guard}"))
            .values({c: bindparam(f"new_{c}") for c in columns})
        )
        params = [
            {
                **{f"key_{k}": row[k] for k in keys},
                f"expected_{guard}": row[f"expected_{guard}"],
                **{f"new_{c}": row[c] for c in columns},
            }
            for row in rows
        ]
        return int(conn.execute(statement, params).rowcount)
    sql, names, floats = _unnest_update(table, keys, guard, columns)
    return _execute(conn, sql, _arrays(names, floats, rows))
