"""Many resource versions in a few statements (FHIR R4 http.html#update, #concurrency).

The write path of every create and update, one or many (``fhir.storing``): new resources
inserted together, the others replacing their current row under optimistic locking, and the
versions they replace moved to ``resource_history`` (the current version is stored once, in
``resource``: migration 0012), with bulk statements (``storage.bulk``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection

from fhir_gateway.kit.errors import Conflict
from fhir_gateway.storage import direct
from fhir_gateway.storage.bulk import (
    Part,
    column_names,
    insert_as_last,
    insert_many,
    insert_tuples,
    update_rows,
)
from fhir_gateway.storage.repository import StoredRow, earlier_version, get_current
from fhir_gateway.storage.tables import resource, resource_history


class VersionWrite(NamedTuple):
    """One version to store: version 1 of a new resource (``current`` None, or a deleted
    ``current`` brought back) or the version after ``current``. (A named tuple, as
    ``StoredRow``.)"""

    res_type: str
    res_id: str
    content: str
    patient_id: str | None
    last_updated: datetime
    method: str
    current: StoredRow | None
    tokens: str | None = None  # ``search.row_tokens.tokens_of`` its index rows

    @property
    def version(self) -> int:
        return 1 if self.current is None else self.current.version + 1


def write_versions(conn: Connection, writes: Sequence[VersionWrite]) -> list[VersionWrite]:
    """Store many versions in a few statements (FHIR R4 http.html#update, #concurrency).

    New resources are inserted together (a clash with a concurrent insert of the same id is a
    409, as for one); the others replace their current row only while it still has the
    version read (optimistic locking). Returns the writes refused because their resource
    changed meanwhile (nothing of the batch must be kept then: the caller rolls back).
    The caller inserts the history rows of the replaced versions (``history_part``) with the
    search index rows, in one statement (``bulk.insert_many``), once no write is stale.
    """
    fresh = [w for w in writes if w.current is None]
    following = [w for w in writes if w.current is not None]

    def values(w: VersionWrite) -> dict[str, Any]:
        return {
            "res_type": w.res_type,
            "res_id": w.res_id,
            "version": w.version,
            "last_updated": w.last_updated,
            "deleted": False,
            "content": w.content,
            "patient_id": w.patient_id,
            "method": w.method,
            "tokens": w.tokens,
        }

    if fresh:
        table, new_rows = new_resources_part(fresh)
        _refuse_clash(conn, fresh, insert_tuples(conn, table, new_rows, on_conflict=_RESOURCE_KEY))
    stale: list[VersionWrite] = []
    if following:
        rows = [{**values(w), "expected_version": w.version - 1} for w in following]
        if update_rows(conn, resource, ("res_type", "res_id"), "version", rows) != len(following):
            stale = _stale(conn, following)
            if stale:
                return stale
    return stale


def insert_new_versions(
    conn: Connection, writes: Sequence[VersionWrite], with_parts: Sequence[Part], *, last: bool = False
) -> None:
    """Insert new resources (version 1, none stored before) together with ``with_parts``
    (their search index rows): one statement on PostgreSQL where
    ``write_versions`` then ``bulk.insert_many`` take two round trips. A clash with a
    concurrent insert of the same id is a 409, as in ``write_versions``: the caller rolls
    back, the rows of ``with_parts`` with the rest.

    ``last``: this is the unit's last statement (``fhir.storing.apply``). When the unit has begun
    no transaction (``direct.commits_alone``: asyncpg, only its opening read before), one resource
    is stored by a statement that commits on its own and keeps no index row of a clashing one
    (``bulk.insert_as_last``): no BEGIN, no COMMIT."""
    if last and len(writes) == 1 and direct.commits_alone(conn):
        if insert_as_last(conn, new_resources_part(writes), with_parts, _RESOURCE_KEY) != 1:
            raise _created_concurrently(writes[0])  # nothing of it stored: no lookup (none may follow)
        return
    # a clash on the resource row is skipped; the resource rows' count tells
    keys = {resource: _RESOURCE_KEY}
    _refuse_clash(
        conn, writes, insert_many(conn, [*with_parts, new_resources_part(writes)], skip_clashes=keys)
    )


_RESOURCE_KEY = ("res_type", "res_id")


def _refuse_clash(conn: Connection, fresh: Sequence[VersionWrite], inserted: int) -> None:
    """409 when fewer than all ``fresh`` resources were inserted: one was created concurrently."""
    if inserted != len(fresh):
        raise _created_concurrently(_first_clash(conn, fresh))


def _created_concurrently(clash: VersionWrite) -> Conflict:
    return Conflict(f"{clash.res_type}/{clash.res_id} was created concurrently; retry the request")


def new_resources_part(writes: Sequence[VersionWrite]) -> Part:
    """The ``resource`` rows of new resources ``writes`` (version 1), for ``bulk.insert_many``."""
    return resource, [
        (w.res_type, w.res_id, 1, w.last_updated, False, w.content, w.patient_id, w.method, w.tokens)
        for w in writes
    ]


if column_names(resource) != (
    "res_type", "res_id", "version", "last_updated", "deleted", "content", "patient_id", "method", "tokens"
):  # fmt: skip
    raise RuntimeError("resource's columns moved: update new_resources_part")


def history_part(writes: Sequence[VersionWrite]) -> Part:
    """The ``resource_history`` rows of the versions ``writes`` replace (a part for
    ``bulk.insert_many``): none for new resources (FHIR R4 http.html#history: every version
    stays readable, the current one in ``resource``)."""
    rows = [earlier_version(w.current) for w in writes if w.current is not None]
    return resource_history, rows


def _first_clash(conn: Connection, fresh: Sequence[VersionWrite]) -> VersionWrite:
    """The first new resource whose row is not the one just inserted."""
    for w in fresh:
        found = get_current(conn, w.res_type, w.res_id)
        if found is None or found.content != w.content or found.version != 1:
            return w
    return fresh[0]


def _stale(conn: Connection, following: Sequence[VersionWrite]) -> list[VersionWrite]:
    """The writes whose resource is not at the version they were made from plus one."""
    return [
        w
        for w in following
        if (found := get_current(conn, w.res_type, w.res_id)) is None or found.version != w.version
    ]
