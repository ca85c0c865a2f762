"""Rows of persons' compartments, for ``$everything`` and bulk ``$export`` (the only SQL of both).

FHIR R4 compartmentdefinition-patient.html: a person's compartment is their Patient row and
every row whose ``patient_id`` (fhir_gateway.search.indexing.patient_compartment_id) is them.
Every query takes the caller's visibility filter (``Ctx.visible``), the very SQL condition
of the REST search: consent decides in SQL here too, so that totals and pages only count
what the caller may see.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, and_, case, false, func, or_, select, true

from fhir_gateway.search import audit_refs
from fhir_gateway.storage.audit_refs import AUDIT_EVENT
from fhir_gateway.storage.tables import audit_terms, idx_reference, resource, shared_alias

Row3 = tuple[str, str, str]


def _compartment(patient_id: str, types: Sequence[str]) -> ColumnElement[bool]:
    r = resource
    others = [t for t in types if t != "Patient"]
    parts: list[ColumnElement[bool]] = []
    if "Patient" in types:
        parts.append(and_(r.c.res_type == "Patient", r.c.res_id == patient_id))
    if others:
        parts.append(and_(r.c.patient_id == patient_id, r.c.res_type.in_(others)))
    return or_(*parts) if parts else false()


def compartment_page(
    conn: Connection,
    patient_id: str,
    types: Sequence[str],
    visible: ColumnElement[bool],
    *,
    since: datetime | None,
    count: int,
    offset: int,
) -> tuple[list[Row3], int]:
    """One page of the person's compartment (their Patient first, then by type and id) and its total."""
    r = resource
    conditions = [_compartment(patient_id, types), r.c.deleted == false(), visible]
    if since is not None:
        conditions.append(r.c.last_updated >= since)
    patient_first = case((r.c.res_type == "Patient", 0), else_=1)
    query = (
        select(r.c.res_type, r.c.res_id, r.c.content)
        .where(*conditions)
        .order_by(patient_first, r.c.res_type, r.c.res_id)
        .limit(count)
        .offset(offset)
    )
    rows = [(row.res_type, row.res_id, row.content) for row in conn.execute(query)]
    if offset == 0 and len(rows) < count:
        return rows, len(rows)
    total = conn.execute(select(func.count()).select_from(r).where(*conditions)).scalar_one()
    return rows, int(total)


def referenced(
    conn: Connection,
    sources: Sequence[tuple[str, str]],
    target_types: Sequence[str],
    visible: ColumnElement[bool],
    limit: int,
) -> list[Row3]:
    """Visible resources of ``target_types`` that the ``sources`` rows reference (search index)."""
    if not sources or not target_types:
        return []
    r, i = resource, idx_reference
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in sources:
        by_type.setdefault(res_type, []).append(res_id)
    found: list[Row3] = []
    events = by_type.pop(AUDIT_EVENT, None) if conn.dialect.name == "postgresql" else None
    if events:  # their references are keys of their ``audit_terms`` row (``storage.audit_refs``)
        found += _referenced_by_events(conn, events, target_types, visible, limit)
    if by_type:
        owners = or_(*(and_(i.c.res_type == t, i.c.res_id.in_(ids)) for t, ids in by_type.items()))
        query = (
            select(r.c.res_type, r.c.res_id, r.c.content)
            .distinct()
            .select_from(i)
            .join(r, and_(r.c.res_type == i.c.target_type, r.c.res_id == i.c.target_id))
            .where(owners, i.c.target_type.in_(list(target_types)), r.c.deleted == false(), visible)
            .order_by(r.c.res_type, r.c.res_id)
            .limit(limit)
        )
        found += [(row.res_type, row.res_id, row.content) for row in conn.execute(query)]
    return sorted(set(found))[:limit]


def _referenced_by_events(
    conn: Connection, events: Sequence[str], types: Sequence[str], visible: ColumnElement[bool], limit: int
) -> list[Row3]:
    """``referenced`` from AuditEvents on PostgreSQL: the resources their keys name."""
    r, a = resource, shared_alias(audit_terms, 0)
    keys = audit_refs.keys_of(a, 0)
    named = audit_refs.after_param(keys.c.value)
    query = (
        select(r.c.res_type, r.c.res_id, r.c.content)
        .distinct()
        .select_from(a)
        .join(keys, true())
        .join(r, audit_refs.names(r, named))
        .where(a.c.res_id.in_(list(events)), r.c.res_type.in_(list(types)), r.c.deleted == false(), visible)
        .order_by(r.c.res_type, r.c.res_id)
        .limit(limit)
    )
    return [(row.res_type, row.res_id, row.content) for row in conn.execute(query)]


def export_page(
    conn: Connection,
    res_type: str,
    visible: ColumnElement[bool],
    *,
    patients: Sequence[str] | None,
    in_compartment: bool = False,
    since: datetime | None,
    until: datetime,
    after_id: str | None,
    limit: int,
) -> list[tuple[str, str]]:
    """The next ``limit`` (id, content) of ``res_type`` after ``after_id`` (keyset, id order):
    current, not deleted, changed in ``(since, until]``, of ``patients`` when given (of some
    person when ``in_compartment``), visible."""
    r = resource
    conditions = [r.c.res_type == res_type, r.c.deleted == false(), r.c.last_updated <= until, visible]
    if since is not None:
        conditions.append(r.c.last_updated > since)
    if after_id is not None:
        conditions.append(r.c.res_id > after_id)
    if patients is not None:
        column = r.c.res_id if res_type == "Patient" else r.c.patient_id
        conditions.append(column.in_(list(patients)))
    elif in_compartment and res_type != "Patient":
        conditions.append(r.c.patient_id.is_not(None))
    query = select(r.c.res_id, r.c.content).where(*conditions).order_by(r.c.res_id).limit(limit)
    return [(row.res_id, row.content) for row in conn.execute(query)]
