"""Writing the search index (DESIGN.md, Storage): rows replaced in the write's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete

from fhir_gateway.search.indexing import extract_index_rows
from fhir_gateway.storage.bulk import insert_rows
from fhir_gateway.storage.tables import INDEX_TABLES


def replace_index(
    conn: Connection, res_type: str, res_id: str, resource: dict[str, Any] | None, *, fresh: bool = False
) -> None:
    """Replace the index rows of ``res_type/res_id`` by those of ``resource`` (None: deleted).

    ``fresh``: the resource is new, there is nothing to delete first.
    """
    if not fresh:
        for table in INDEX_TABLES.values():
            conn.execute(delete(table).where(table.c.res_type == res_type, table.c.res_id == res_id))
    if resource is None:
        return
    for kind, rows in extract_index_rows(resource).items():
        for row in rows:
            row["res_type"] = res_type
            row["res_id"] = res_id
        insert_rows(conn, INDEX_TABLES[kind], rows)


def insert_index_rows(conn: Connection, resources: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Index rows of new resources ``(type, id, body)``, one multi-row insert per kind."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for res_type, res_id, body in resources:
        for kind, rows in extract_index_rows(body).items():
            for row in rows:
                row["res_type"] = res_type
                row["res_id"] = res_id
            by_kind.setdefault(kind, []).extend(rows)
    for kind, rows in by_kind.items():
        insert_rows(conn, INDEX_TABLES[kind], rows)
