"""Running a compiled search: the page, its total and its includes (FHIR R4 search.html).

The caller's visibility filter is part of every query, so totals and pages only ever
count resources the caller may see, and ``_include``/``_revinclude`` never reveal others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, String, and_, any_, bindparam, false, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from fhir_gateway.search.compiler import Visible, compartment_clause, criterion_clause, has_clause
from fhir_gateway.search.model import Include, SearchRequest
from fhir_gateway.search.registry import param
from fhir_gateway.storage.repository import CURRENT_COLUMNS, StoredRow, stored_row
from fhir_gateway.storage.tables import INDEX_TABLES, idx_reference, idx_token, resource, shared_alias


@dataclass
class SearchResult:
    """Matched rows (type, id, content), included rows, and the total when known."""

    matches: list[tuple[str, str, str]]
    included: list[tuple[str, str, str]] = field(default_factory=list)
    total: int | None = None


def _where(request: SearchRequest, visible: Visible) -> list[ColumnElement[bool]]:
    r, t = resource, request.resource_type
    conditions: list[ColumnElement[bool]] = [r.c.res_type == t, r.c.deleted == false(), visible(r, t)]
    for ids in request.ids:
        conditions.append(r.c.res_id.in_(ids))
    conditions += [criterion_clause(r, t, c, visible) for c in request.criteria]
    conditions += [x for c in request.criteria if (x := compartment_clause(r, t, c)) is not None]
    conditions += [has_clause(r, t, h, visible) for h in request.has]
    return conditions


def _sort_key(request: SearchRequest, code: str, desc: bool) -> Any:
    r = resource
    if code == "_id":
        return r.c.res_id
    if code == "_lastUpdated":
        return r.c.last_updated
    p = param(request.resource_type, code)
    assert p is not None
    i = shared_alias(INDEX_TABLES[p.type], 0)
    column = {
        "string": "value_norm",
        "token": "code",
        "date": "high" if desc else "low",
        "reference": "target_id",
        "number": "value",
        "quantity": "value",
        "uri": "value",
    }[p.type]
    agg = func.max if desc else func.min
    return (
        select(agg(i.c[column]))
        .where(i.c.res_type == r.c.res_type, i.c.res_id == r.c.res_id, i.c.param == code)
        .scalar_subquery()
    )


def execute_search(
    conn: Connection, request: SearchRequest, visible: Visible, max_include: int
) -> SearchResult:
    """The page of ``request`` for a caller whose rows are filtered by ``visible``."""
    r = resource
    conditions = _where(request, visible)
    total: int | None = None
    if request.summary == "count" or request.count == 0:
        total = conn.execute(select(func.count()).select_from(r).where(*conditions)).scalar_one()
        return SearchResult([], [], int(total))
    order = []
    for code, desc in request.sort:
        key = _sort_key(request, code, desc)
        order.append(key.desc() if desc else key.asc())
    order.append(r.c.res_id)
    query = (
        select(r.c.res_type, r.c.res_id, r.c.content)
        .where(*conditions)
        .order_by(*order)
        .limit(request.count)
        .offset(request.offset)
    )
    matches = [(row.res_type, row.res_id, row.content) for row in conn.execute(query)]
    if request.offset == 0 and len(matches) < request.count:
        total = len(matches)
    elif request.total != "none":
        total = int(conn.execute(select(func.count()).select_from(r).where(*conditions)).scalar_one())
    included = _includes(conn, request, matches, visible, max_include) if request.includes else []
    return SearchResult(matches, included, total)


def _includes(
    conn: Connection,
    request: SearchRequest,
    matches: list[tuple[str, str, str]],
    visible: Visible,
    limit: int,
) -> list[tuple[str, str, str]]:
    """``_include``/``_revinclude`` rows for the page, with ``:iterate`` up to three rounds."""
    seen = {(t, i) for t, i, _ in matches}
    found: list[tuple[str, str, str]] = []
    frontier = list(seen)
    for round_ in range(3):
        new: list[tuple[str, str, str]] = []
        for inc in request.includes:
            if round_ > 0 and not inc.iterate:
                continue
            by_type: dict[str, list[str]] = {}
            for t, i in frontier:
                wanted = t == inc.source_type if not inc.reverse else inc.target_type in (None, t)
                if wanted:
                    by_type.setdefault(t, []).append(i)
            for frontier_type, ids in by_type.items():
                for row in _include_rows(conn, inc, frontier_type, ids, visible, limit):
                    if (row[0], row[1]) not in seen and len(found) + len(new) < limit:
                        seen.add((row[0], row[1]))
                        new.append(row)
        if not new:
            break
        found += new
        frontier = [(t, i) for t, i, _ in new]
    return found


def _include_rows(
    conn: Connection, inc: Include, frontier_type: str, ids: list[str], visible: Visible, limit: int
) -> list[tuple[str, str, str]]:
    # The shared ``resource`` table (not an alias): its visibility filter is built once and reused.
    r, i = resource, shared_alias(idx_reference, 0)
    if inc.reverse:
        join = and_(i.c.res_type == r.c.res_type, i.c.res_id == r.c.res_id)
        where = [
            r.c.res_type == inc.source_type,
            i.c.param == inc.param,
            i.c.target_type == frontier_type,
            i.c.target_id.in_(ids),
        ]
        vis = visible(r, inc.source_type)
    else:
        join = and_(r.c.res_type == i.c.target_type, r.c.res_id == i.c.target_id)
        where = [i.c.res_type == inc.source_type, i.c.param == inc.param, i.c.res_id.in_(ids)]
        if inc.target_type:
            where.append(i.c.target_type == inc.target_type)
        vis = visible(r, inc.target_type)
    query = (
        select(r.c.res_type, r.c.res_id, r.c.content)
        .distinct()
        .select_from(i)
        .join(r, join)
        .where(*where, r.c.deleted == false(), vis)
        .limit(limit)
    )
    return [(row.res_type, row.res_id, row.content) for row in conn.execute(query)]


def find_ids(conn: Connection, request: SearchRequest, visible: Visible, limit: int) -> list[tuple[str, str]]:
    """Ids matching ``request`` (conditional interactions), at most ``limit``."""
    query = select(resource.c.res_id).where(*_where(request, visible)).limit(limit)
    return [(request.resource_type, row.res_id) for row in conn.execute(query)]


_REFERENCES = idx_reference.alias("idx_reference_found")


def _among(conn: Connection, column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(array)``, one parameter instead of one
    per value (the driver converts a 1,000-value list at a fraction of the cost)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(String)))  # type: ignore[no-any-return]
    return column.in_(list(values))  # type: ignore[no-any-return]


def find_with_references(
    conn: Connection,
    request: SearchRequest,
    param_code: str,
    target_type: str,
    target_ids: Sequence[str],
    visible: Visible,
) -> list[tuple[str, StoredRow]]:
    """``(target id, current row)`` of the rows matching ``request`` (no limit) that hold in
    reference parameter ``param_code`` a reference to ``target_type``/one of ``target_ids``,
    once per such reference: the answers of many searches ``param_code=target_type/id&...``
    (``compiler._reference``) in one query."""
    r, i = resource, _REFERENCES
    query = (
        select(i.c.target_id, *CURRENT_COLUMNS)
        .select_from(r)
        .join(
            i,
            and_(
                i.c.res_type == r.c.res_type,
                i.c.res_id == r.c.res_id,
                i.c.param == param_code,
                i.c.target_type == target_type,
                _among(conn, i.c.target_id, target_ids),
            ),
        )
        .where(*_where(request, visible))
    )
    return [(row.target_id, stored_row(row)) for row in conn.execute(query)]


def find_by_tokens(
    conn: Connection,
    res_type: str,
    param_code: str,
    system: str,
    codes: Sequence[str],
    visible: Visible,
    *,
    for_update: bool = False,
) -> list[tuple[str, StoredRow]]:
    """``(code, current row)`` of the ``res_type`` resources visible to the caller whose token
    parameter ``param_code`` holds ``system|code`` for one of ``codes``: the answers of many
    ``param=system|code`` searches (FHIR R4 search.html#token) in one query per 1,000 codes.
    ``for_update``: the rows are locked until the transaction ends (PostgreSQL)."""
    r, i = resource, shared_alias(idx_token, 0)
    found: list[tuple[str, StoredRow]] = []
    unique = list(dict.fromkeys(codes))
    for start in range(0, len(unique), 1000):
        query = (
            select(i.c.code, *CURRENT_COLUMNS)
            .select_from(r)
            .join(i, and_(i.c.res_type == r.c.res_type, i.c.res_id == r.c.res_id))
            .where(
                r.c.res_type == res_type,
                r.c.deleted == false(),
                visible(r, res_type),
                i.c.res_type == res_type,
                i.c.param == param_code,
                i.c.system == system,
                _among(conn, i.c.code, unique[start : start + 1000]),
            )
        )
        if for_update and conn.dialect.name == "postgresql":
            query = query.with_for_update(of=r)
        found += [(row.code, stored_row(row)) for row in conn.execute(query)]
    return found
