"""Many rows into one table in one statement (DESIGN.md, Storage: batched index writes).

On PostgreSQL, ``INSERT ... SELECT * FROM unnest(%s::type[], ...)``: one round trip and one
prepared statement per table whatever the number of rows (an ``executemany`` costs one
statement execution per row). On SQLite, the driver's ``executemany`` (a C loop, no round
trips) is already the fast path.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Boolean, Connection, Float, Integer, Table, insert
from sqlalchemy.dialects import postgresql


@cache
def _unnest_insert(table: Table) -> tuple[str, tuple[str, ...], tuple[bool, ...]]:
    """(SQL, column names, whether each column is a float) for ``table`` on PostgreSQL."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    columns = tuple(table.columns)
    arrays = ", ".join(f"%b::{c.type.compile(dialect=dialect)}[]" for c in columns)
    names = ", ".join(f'"{c.name}"' for c in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({arrays})'
    floats = tuple(isinstance(c.type, Float) and not isinstance(c.type, Integer | Boolean) for c in columns)
    return sql, tuple(c.name for c in columns), floats


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts by column name; a missing column is NULL) into ``table``."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), list(rows))
        return
    sql, names, floats = _unnest_insert(table)
    arrays: list[list[Any]] = []
    for name, is_float in zip(names, floats, strict=True):
        values = [row.get(name) for row in rows]
        if is_float:
            values = [None if v is None else float(v) for v in values]
        arrays.append(values)
    conn.exec_driver_sql(sql, tuple(arrays))
