"""Resource rows: the only place that reads and writes ``resource`` and its history.

FHIR R4 http.html: every write replaces the current row and its search index in the same
transaction, and moves the version it replaces to ``resource_history``: the current version is
stored once, in ``resource``, the earlier ones in ``resource_history`` (migration 0012), and vread
and history read both. Optimistic locking is done by the conditional ``UPDATE ... WHERE version =
:expected`` (FHIR R4 http.html#concurrency).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    bindparam,
    case,
    func,
    insert,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from fhir_gateway.kit.errors import Conflict
from fhir_gateway.kit.lru import Lru
from fhir_gateway.storage import direct
from fhir_gateway.storage.bulk import column_names, insert_rows
from fhir_gateway.storage.tables import resource, resource_history


class StoredRow(NamedTuple):
    """One version of a resource as stored (``content`` is the JSON text with ``meta``).

    A named tuple: immutable like the frozen dataclass it was, made three times faster (rows of
    every read, search answer and write; 5 % of a partner import's CPU went to such records)."""

    res_type: str
    res_id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: str | None
    patient_id: str | None
    method: str = ""

    @property
    def last_updated_utc(self) -> datetime:
        """``last_updated`` (stored naive UTC) as an aware datetime."""
        return self.last_updated.replace(tzinfo=UTC)


def stored_row(r: Row[Any] | Any) -> StoredRow:
    """A ``StoredRow`` from a result row holding the ``CURRENT_COLUMNS``."""
    return StoredRow(
        r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content, r.patient_id, r.method
    )


CURRENT_COLUMNS = _CURRENT_COLUMNS = (
    resource.c.res_type,
    resource.c.res_id,
    resource.c.version,
    resource.c.last_updated,
    resource.c.deleted,
    resource.c.content,
    resource.c.patient_id,
    resource.c.method,
)


def get_current(
    conn: Connection,
    res_type: str,
    res_id: str,
    *,
    visible: ColumnElement[bool] | None = None,
    for_update: bool = False,
) -> StoredRow | None:
    """The current version of ``res_type/res_id`` (deleted ones too), if ``visible``."""
    locking = for_update and conn.dialect.name == "postgresql"
    query = _current_query(visible, locking)
    found = direct.first(conn, query, {"cur_type": res_type, "cur_id": res_id})
    return stored_row(found) if found else None


_Built = tuple[ColumnElement[bool] | None, Select[Any]]
_current_queries: Lru[_Built] = Lru(4096)


def _current_query(visible: ColumnElement[bool] | None, locking: bool) -> Select[Any]:
    """The read-by-id statement, built once per visibility filter (a shared object)."""

    def build() -> _Built:
        query = select(*_CURRENT_COLUMNS).where(
            resource.c.res_type == bindparam("cur_type"), resource.c.res_id == bindparam("cur_id")
        )
        if visible is not None:
            query = query.where(visible)
        return visible, query.with_for_update() if locking else query

    key = (id(visible), locking)
    owner, query = _current_queries.get_or_build(key, build)
    if owner is not visible:  # an id reused after the first was freed
        owner, query = build()
        _current_queries.put(key, (owner, query))
    return query


def current_decided_query(
    decided: tuple[ColumnElement[Any], ...], verdict: Callable[[Any], ColumnElement[bool]]
) -> Select[Any]:
    """The read-by-id statement of a caller whose access the row itself decides: the current row
    and the columns ``decided`` (what decides, per row), kept as they are in a derived table
    (``OFFSET 0``: neither PostgreSQL nor SQLite flattens it into the outer query, where the
    columns would be evaluated again), filtered by ``verdict`` over them. Each subquery of
    ``decided`` runs once, both to filter the row and to tell the caller what decided."""
    inner = (
        select(*_CURRENT_COLUMNS, *decided)
        .where(resource.c.res_type == bindparam("cur_type"), resource.c.res_id == bindparam("cur_id"))
        .offset(0)
        .subquery("decided_row")
    )
    return select(*inner.c).where(verdict(inner.c))


def get_current_decided(
    conn: Connection, query: Select[Any], res_type: str, res_id: str
) -> tuple[StoredRow, tuple[Any, ...]] | None:
    """Run a ``current_decided_query``: the row and its deciding values, or None when the row is
    unknown or its verdict is false."""
    found = direct.first(conn, query, {"cur_type": res_type, "cur_id": res_id})
    if found is None:
        return None
    return stored_row(found), tuple(found[len(_CURRENT_COLUMNS) :])


def get_version(
    conn: Connection,
    res_type: str,
    res_id: str,
    version: int,
    *,
    visible: Callable[[Table], ColumnElement[bool]] | None = None,
) -> StoredRow | None:
    """One version (FHIR R4 http.html#vread), if ``visible`` (the caller's filter on the rows of a
    table): the current one from ``resource``, an earlier one from ``resource_history``."""
    queries = []
    for table in _VERSION_TABLES:
        query = select(*_history_columns(table)).where(
            table.c.res_type == res_type, table.c.res_id == res_id, table.c.version == version
        )
        queries.append(query.where(visible(table)) if visible is not None else query)
    found = conn.execute(union_all(*queries)).first()
    return stored_row(found) if found else None


def insert_first_version(
    conn: Connection,
    res_type: str,
    res_id: str,
    content: str,
    patient_id: str | None,
    moment: datetime,
    method: str = "POST",
) -> None:
    """Store version 1 of a new resource; a concurrent insert of the same id is a 409."""
    values = {
        "res_type": res_type,
        "res_id": res_id,
        "version": 1,
        "last_updated": moment,
        "deleted": False,
        "content": content,
        "patient_id": patient_id,
        "method": method,
    }
    # INSERT ... ON CONFLICT DO NOTHING: a concurrent insert of the same id shows as no row
    # inserted, without the two round trips of a savepoint
    inserted = conn.execute(_insert_if_absent(conn).values(**values).returning(resource.c.version)).first()
    if inserted is None:
        raise Conflict(f"{res_type}/{res_id} was created concurrently; retry the request")


def _insert_if_absent(conn: Connection) -> Any:
    """``INSERT INTO resource ... ON CONFLICT DO NOTHING`` in the connection's dialect."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    return dialect_insert(resource).on_conflict_do_nothing(index_elements=["res_type", "res_id"])


@dataclass(frozen=True, slots=True)
class NewVersion:
    """Version 1 of a new resource, for bulk inserts."""

    res_type: str
    res_id: str
    content: str
    patient_id: str | None
    last_updated: datetime
    tokens: str | None = None  # ``search.row_tokens.tokens_of`` its index rows (None: the index's)


def insert_first_versions(conn: Connection, rows: Sequence[NewVersion], method: str = "POST") -> None:
    """Bulk insert of new resources (ids known to be fresh, e.g. server-made UUIDs)."""
    if not rows:
        return
    values = [
        {
            "res_type": r.res_type,
            "res_id": r.res_id,
            "version": 1,
            "last_updated": r.last_updated,
            "deleted": False,
            "content": r.content,
            "patient_id": r.patient_id,
            "method": method,
            "tokens": r.tokens,
        }
        for r in rows
    ]
    insert_rows(conn, resource, values)


def get_current_many(
    conn: Connection, res_type: str, res_ids: Sequence[str], *, for_update: bool = False
) -> dict[str, StoredRow]:
    """The current rows of ``res_type`` among ``res_ids`` (deleted ones too), by id."""
    found: dict[str, StoredRow] = {}
    unique = list(dict.fromkeys(res_ids))
    for start in range(0, len(unique), 1000):
        query = select(*_CURRENT_COLUMNS).where(
            resource.c.res_type == res_type, resource.c.res_id.in_(unique[start : start + 1000])
        )
        if for_update and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        for row in conn.execute(query):
            found[row.res_id] = stored_row(row)
    return found


def write_next_version(
    conn: Connection,
    current: StoredRow,
    content: str | None,
    patient_id: str | None,
    moment: datetime,
    method: str,
) -> bool:
    """Replace ``current`` by version ``current.version + 1``; False if it changed meanwhile."""
    version = current.version + 1
    deleted = content is None
    result = conn.execute(
        update(resource)
        .where(
            resource.c.res_type == current.res_type,
            resource.c.res_id == current.res_id,
            resource.c.version == current.version,
        )
        .values(
            version=version,
            last_updated=moment,
            deleted=deleted,
            content=content if content is not None else current.content,
            patient_id=patient_id,
            method=method,
        )
    )
    if result.rowcount != 1:
        return False
    row = dict(zip(column_names(resource_history), earlier_version(current), strict=True))
    conn.execute(insert(resource_history).values(row))
    return True


def earlier_version(current: StoredRow) -> tuple[Any, ...]:
    """The ``resource_history`` row of ``current`` once a write has replaced it, in the table's
    column order (a deletion's row has no content, as vread and history show it)."""
    content = None if current.deleted else current.content
    return (
        current.res_type, current.res_id, current.version, current.last_updated, current.deleted,
        current.method, content, current.patient_id,
    )  # fmt: skip


if column_names(resource_history) != (
    "res_type", "res_id", "version", "last_updated", "deleted", "method", "content", "patient_id"
):  # fmt: skip
    raise RuntimeError("resource_history's columns moved: update earlier_version")


_VERSION_TABLES = (resource_history, resource)  # the earlier versions, the current ones


def version_content(table: Table) -> ColumnElement[Any]:
    """The content of the version a row of ``table`` holds: none for a deletion (a deleted
    current row keeps the content it had, which no version shows), as in ``earlier_version``."""
    if table is resource_history:
        return resource_history.c.content
    return case((table.c.deleted, null()), else_=table.c.content)


def _history_columns(table: Table) -> tuple[Any, ...]:
    """The columns of a version row from ``table``, in the same order for both tables (history is
    their ``UNION ALL``)."""
    content = version_content(table).label("content")
    return tuple(content if c.name == "content" else table.c[c.name] for c in _CURRENT_COLUMNS)


def history_page(
    conn: Connection,
    *,
    res_type: str | None,
    res_id: str | None,
    since: datetime | None,
    at: datetime | None,
    visible: Callable[[Table], ColumnElement[bool]] | None,
    count: int,
    offset: int,
) -> tuple[Sequence[StoredRow], int]:
    """History entries, newest first, and their total (FHIR R4 http.html#history).

    ``visible(table)``: the caller's filter on the rows of ``table``. The versions come from
    ``resource`` (the current ones) and ``resource_history`` (the earlier ones)."""
    queries: list[Select[Any]] = []
    for table in _VERSION_TABLES:
        conditions: list[ColumnElement[bool]] = []
        if res_type is not None:
            conditions.append(table.c.res_type == res_type)
        if res_id is not None:
            conditions.append(table.c.res_id == res_id)
        if since is not None:
            conditions.append(table.c.last_updated >= since)
        if at is not None:
            conditions.append(table.c.last_updated <= at)
        if visible is not None:
            conditions.append(visible(table))
        queries.append(select(*_history_columns(table)).where(*conditions))
    versions = union_all(*queries).subquery()
    v = versions.c
    total = conn.execute(select(func.count()).select_from(versions)).scalar_one()
    query = select(versions).order_by(v.last_updated.desc(), v.res_type, v.res_id, v.version.desc())
    rows = conn.execute(query.limit(count).offset(offset)).all()
    return [stored_row(r) for r in rows], int(total)
