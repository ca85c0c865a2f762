"""Writing the search index (DESIGN.md, Storage): rows replaced in the write's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete

from fhir_gateway.search.indexing import Rows, extract_index_rows
from fhir_gateway.storage import direct
from fhir_gateway.storage.bulk import Part, column_names, insert_many
from fhir_gateway.storage.tables import INDEX_TABLES


class IndexWrite(NamedTuple):
    """The index rows of one resource version (``rows`` by kind, from ``extract_index_rows``);
    ``fresh``: the resource is new, there is nothing to delete first. (A named tuple, as
    ``StoredRow``.)"""

    res_type: str
    res_id: str
    rows: Rows
    fresh: bool


def replace_index(
    conn: Connection, res_type: str, res_id: str, resource: dict[str, Any] | None, *, fresh: bool = False
) -> None:
    """Replace the index rows of ``res_type/res_id`` by those of ``resource`` (None: deleted).

    ``fresh``: the resource is new, there is nothing to delete first.
    """
    rows = extract_index_rows(resource) if resource is not None else {}
    replace_indexes(conn, [IndexWrite(res_type, res_id, rows, fresh)])


def replace_indexes(conn: Connection, writes: Sequence[IndexWrite]) -> None:
    """Replace the index rows of many resources: their old rows deleted (``delete_indexes``),
    then one multi-row insert per kind (one statement for all kinds on PostgreSQL)."""
    delete_indexes(conn, writes)
    insert_many(conn, index_inserts(writes))


def delete_indexes(conn: Connection, writes: Sequence[IndexWrite]) -> None:
    """Delete the index rows of the resources of ``writes`` that had some (not ``fresh``): one
    statement per type and 1,000 resources on PostgreSQL (a data-modifying ``WITH`` part per
    kind), one per kind on SQLite."""
    stale: dict[str, list[str]] = {}
    for w in writes:
        if not w.fresh:
            stale.setdefault(w.res_type, []).append(w.res_id)
    for res_type, ids in stale.items():
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            if conn.dialect.name == "postgresql":
                if conn.dialect.paramstyle == "numeric_dollar":  # asyncpg
                    direct.execute(conn, _DELETE_ALL_KINDS_NUMBERED, (res_type, chunk))
                else:
                    conn.exec_driver_sql(_DELETE_ALL_KINDS, {"res_type": res_type, "ids": chunk})
                continue
            for table in INDEX_TABLES.values():
                conn.execute(delete(table).where(table.c.res_type == res_type, table.c.res_id.in_(chunk)))


def _delete_all_kinds(res_type: str, ids: str) -> str:
    """The statement deleting a type's resources' rows of every kind, its two parameters
    written ``res_type`` and ``ids`` (each used by every part)."""
    *first, last = (
        f'DELETE FROM "{t.name}" WHERE res_type = {res_type} AND res_id = ANY({ids})'
        for t in INDEX_TABLES.values()
    )
    return "WITH " + ", ".join(f"d{n} AS ({sql})" for n, sql in enumerate(first)) + " " + last


_DELETE_ALL_KINDS = _delete_all_kinds("%(res_type)s", "%(ids)s")  # psycopg
_DELETE_ALL_KINDS_NUMBERED = _delete_all_kinds("$1", "$2")  # asyncpg


def index_inserts(writes: Sequence[IndexWrite]) -> list[Part]:
    """The index rows of ``writes`` as one part per kind (``bulk.insert_many``)."""
    by_kind: dict[str, list[tuple[Any, ...]]] = {}
    for w in writes:
        for kind, rows in w.rows.items():
            bucket = by_kind.get(kind)
            if bucket is None:
                bucket = by_kind[kind] = []
            values = _values_getter(kind)
            owner = (w.res_type, w.res_id)
            try:
                bucket.extend([owner + values(row) for row in rows])
            except KeyError:  # a row without some column (NULL)
                names = _value_columns(kind)
                bucket.extend((*owner, *map(row.get, names)) for row in rows)
    return [(INDEX_TABLES[kind], tuples) for kind, tuples in by_kind.items()]


@cache
def _values_getter(kind: str) -> Any:
    """A function from an index row to its values in column order after (res_type, res_id)."""
    names = _value_columns(kind)
    getter = itemgetter(*names)
    return getter if len(names) > 1 else lambda row: (getter(row),)


@cache
def _value_columns(kind: str) -> tuple[str, ...]:
    """The columns of an index table after (res_type, res_id): param and the kind's values."""
    names = column_names(INDEX_TABLES[kind])
    assert names[:2] == ("res_type", "res_id")
    return names[2:]
