"""Many rows in one statement (``storage.bulk``): whichever way the rows travel (a JSON array
under ``JSON_ROWS_UNDER`` rows, typed ``unnest`` arrays, ``COPY``, SQLite's ``executemany``),
what is stored is exactly what was given, and a value too long for its column is refused,
never cut."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, event, select
from sqlalchemy.exc import DBAPIError

from fhir_gateway.storage.bulk import COPY_FROM, JSON_ROWS_UNDER, insert_many, insert_rows, insert_tuples
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.tables import (
    idx_date,
    idx_quantity,
    idx_string,
    idx_uri,
    resource,
    resource_history,
)

TEXTS = ['Détail "entre guillemets"', "back\\slash", "ligne\nsuivante", "emoji 🧓", "tab\there", "'; DROP --"]


def _strings(count: int) -> list[tuple[Any, ...]]:
    return [
        ("Patient", f"p{n}", "name", TEXTS[n % len(TEXTS)], TEXTS[(n + 1) % len(TEXTS)]) for n in range(count)
    ]


def _quantities(count: int) -> list[tuple[Any, ...]]:
    values: list[Any] = [Decimal("12.50"), 0.1, None, 3, -1e-7, Decimal("1e20")]
    return [("Observation", f"o{n}", "value", values[n % len(values)], None, "mg") for n in range(count)]


def _dates(count: int) -> list[tuple[Any, ...]]:
    moments = [
        datetime(2026, 2, 28, 23, 59, 59, 999999),
        datetime(1900, 1, 1),
        None,
        datetime(2026, 11, 26, 8, 5),
    ]
    return [("Task", f"t{n}", "period", moments[n % 4], moments[(n + 1) % 4]) for n in range(count)]


def _stored(conn: Connection, table: Any) -> list[tuple[Any, ...]]:
    return sorted((tuple(row) for row in conn.execute(select(table))), key=lambda row: row[1])


def _as_stored(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Decimals and integers of float columns come back as floats."""
    out = [
        tuple(float(v) if isinstance(v, Decimal | int) and i == 3 else v for i, v in enumerate(r))
        for r in rows
    ]
    return sorted(out, key=lambda row: row[1])


SIZES = [1, JSON_ROWS_UNDER - 1, JSON_ROWS_UNDER, COPY_FROM]


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize(
    ("table", "make"), [(idx_string, _strings), (idx_quantity, _quantities), (idx_date, _dates)]
)
def test_rows_are_stored_exactly_as_given(database: Database, count: int, table: Any, make: Any) -> None:
    rows = make(count)
    with database.transaction(write=True) as conn:
        assert insert_tuples(conn, table, rows) == count
    with database.transaction() as conn:
        assert _stored(conn, table) == (
            _as_stored(rows) if table is idx_quantity else sorted(rows, key=lambda r: r[1])
        )


@pytest.mark.parametrize("count", [1, JSON_ROWS_UNDER])
def test_a_request_connection_stores_the_same(database: Database, count: int) -> None:
    """The asyncio connection of a request (PostgreSQL) takes the same ways."""
    rows = _strings(count)

    async def write() -> int:
        return await database.run(lambda conn: insert_tuples(conn, idx_string, rows), write=True)

    assert asyncio.run(write()) == count
    with database.transaction() as conn:
        assert _stored(conn, idx_string) == sorted(rows, key=lambda r: r[1])


@pytest.mark.parametrize("count", [1, JSON_ROWS_UNDER])
def test_clashing_rows_are_skipped_and_not_counted(database: Database, count: int) -> None:
    moment = datetime(2026, 11, 26, 8, 0, 0, 123456)
    first = [{"res_type": "Task", "res_id": f"t{n}", "version": 1, "last_updated": moment, "deleted": False,
              "content": "{}", "patient_id": None, "method": "POST"} for n in range(count)]  # fmt: skip
    again = [{**row, "version": 2} for row in first] + [{**first[0], "res_id": "new"}]
    with database.transaction(write=True) as conn:
        assert insert_rows(conn, resource, first, on_conflict=("res_type", "res_id")) == count
        assert insert_rows(conn, resource, again, on_conflict=("res_type", "res_id")) == 1
    with database.transaction() as conn:
        versions = {
            row.res_id: (row.version, row.last_updated, row.deleted) for row in conn.execute(select(resource))
        }
    assert versions["t0"] == (1, moment, False)
    assert versions["new"] == (1, moment, False)


@pytest.mark.parametrize("count", [1, JSON_ROWS_UNDER])
def test_a_value_too_long_for_its_column_is_refused_not_cut(database: Database, count: int) -> None:
    if database.dialect != "postgresql":
        pytest.skip("SQLite does not bound text lengths")
    rows = [("Patient", "x" * 65, "name", "a", "a")] + _strings(count - 1)
    with pytest.raises(DBAPIError, match="too long"), database.transaction(write=True) as conn:
        insert_tuples(conn, idx_string, rows)
    with database.transaction() as conn:
        assert _stored(conn, idx_string) == []


def test_several_tables_in_one_statement(database: Database) -> None:
    """A write's history and index rows go in together: one statement on PostgreSQL."""
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    parts = [(idx_string, _strings(3)), (idx_date, _dates(4)), (idx_quantity, _quantities(5)), (idx_uri, [])]
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        with database.transaction(write=True) as conn:
            insert_many(conn, parts)
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    inserts = [s for s in statements if "INSERT" in s]
    assert len(inserts) == (1 if database.dialect == "postgresql" else 3)
    with database.transaction() as conn:
        assert _stored(conn, idx_string) == sorted(_strings(3), key=lambda r: r[1])
        assert _stored(conn, idx_date) == sorted(_dates(4), key=lambda r: r[1])
        assert _stored(conn, idx_quantity) == _as_stored(_quantities(5))
        assert _stored(conn, idx_uri) == []


def test_several_large_tables_in_one_statement_when_asked(database: Database) -> None:
    """The audit trail's batches: one JSON statement on PostgreSQL whatever their size."""
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    size = JSON_ROWS_UNDER + 5
    parts = [(idx_string, _strings(size)), (idx_date, _dates(size))]
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        with database.transaction(write=True) as conn:
            insert_many(conn, parts, whatever_size=True)
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    inserts = [s for s in statements if "INSERT" in s]
    assert len(inserts) == (1 if database.dialect == "postgresql" else 2)
    with database.transaction() as conn:
        assert _stored(conn, idx_string) == sorted(_strings(size), key=lambda r: r[1])
        assert _stored(conn, idx_date) == sorted(_dates(size), key=lambda r: r[1])


@pytest.mark.parametrize("count", [1, JSON_ROWS_UNDER])
def test_several_tables_skip_their_clashing_rows_and_count_the_last(database: Database, count: int) -> None:
    """New resources with their history rows (``version_writes.insert_new_versions``): rows
    clashing on each table's keys are skipped, and the count is the last part's."""
    moment = datetime(2026, 11, 26, 8, 0, 0, 123456)

    def resources(ids: list[str]) -> list[tuple[Any, ...]]:
        return [("Task", i, 1, moment, False, "{}", None, "POST", None) for i in ids]

    def history(ids: list[str]) -> list[tuple[Any, ...]]:
        return [("Task", i, 1, moment, False, "POST", "{}", None) for i in ids]

    keys = {resource: ("res_type", "res_id"), resource_history: ("res_type", "res_id", "version")}
    first = [f"t{n}" for n in range(count)]
    with database.transaction(write=True) as conn:
        parts = [(resource_history, history(first)), (resource, resources(first))]
        assert insert_many(conn, parts, skip_clashes=keys) == count
        again = [*first, "new"]
        parts = [(resource_history, history(again)), (resource, resources(again))]
        assert insert_many(conn, parts, skip_clashes=keys) == 1
    with database.transaction() as conn:
        assert len(_stored(conn, resource)) == count + 1
        assert len(_stored(conn, resource_history)) == count + 1
