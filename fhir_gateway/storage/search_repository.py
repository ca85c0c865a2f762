"""Running a compiled search: the page, its total and its includes (FHIR R4 search.html).

``Bundle.total`` (search.html#total): a first page that is not full tells the total for free
and always carries it; otherwise the matches are counted (a second statement, which reads
every match) only when the client asks with ``_total=accurate`` or ``_total=estimate`` (the
estimate is the exact count), or with ``_summary=count``. A full page without ``_total`` has
no total and no ``last`` link; its ``next`` link pages on.

The caller's visibility filter is part of every query, so totals and pages only ever
count resources the caller may see, and ``_include``/``_revinclude`` never reveal others.
Statements are built once per search shape and caller filter (``search.shape``) and run
with each search's values.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Integer,
    Select,
    String,
    Text,
    and_,
    any_,
    bindparam,
    false,
    func,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY

from fhir_gateway.kit.lru import Lru
from fhir_gateway.search import audit_refs
from fhir_gateway.search.audit_terms import min_code
from fhir_gateway.search.compiler import Viewer, Visible, where_clauses
from fhir_gateway.search.model import Include, SearchRequest
from fhir_gateway.search.registry import param
from fhir_gateway.search.shape import Literals, WhereShape, plans_with_values, where_shape
from fhir_gateway.storage import direct
from fhir_gateway.storage.audit_refs import AUDIT_EVENT, key_text
from fhir_gateway.storage.database import planned_with_values
from fhir_gateway.storage.repository import CURRENT_COLUMNS, StoredRow, stored_row
from fhir_gateway.storage.tables import (
    INDEX_TABLES,
    audit_terms,
    idx_reference,
    idx_token,
    refs_array,
    resource,
    shared_alias,
)

Found = tuple[str, str, str, str | None]
"""A resource found: its type, id, stored JSON and the person it is about (``patient_id``),
whom the search's audit trail names (``fhir.searching``)."""


@dataclass
class SearchResult:
    """Matched rows, included rows (``Found``), and the total when known."""

    matches: list[Found]
    included: list[Found] = field(default_factory=list)
    total: int | None = None


@dataclass(frozen=True, slots=True)
class _Statements:
    """The statements of one search shape for one kind of caller."""

    page: Select[Any]
    count: Select[Any]
    ids: Select[Any]
    with_values: bool  # planned with its values each time (``search.shape.plans_with_values``)


# Statements per (search shape, sort, caller filter): built once, executed with each search's
# values. The shapes a deployment's clients send are few; the filter key is per client.
_statements: Lru[_Statements] = Lru(4096)


def _sort_key(res_type: str, code: str, desc: bool) -> Any:
    r = resource
    if code == "_id":
        return r.c.res_id
    if code == "_lastUpdated":
        return r.c.last_updated
    p = param(res_type, code)
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
    indexed = (
        select(agg(i.c[column]))
        .where(i.c.res_type == r.c.res_type, i.c.res_id == r.c.res_id, i.c.param == code)
        .scalar_subquery()
    )
    if audit_refs.moved(res_type, p.type, code):  # PostgreSQL: in the event's ``audit_terms`` row
        a = shared_alias(audit_terms, 0)
        if p.type == "date":
            value = a.c.recorded_high if desc else a.c.recorded_low
        else:
            value = audit_refs.target_id(a.c.refs, code, greatest=desc)
        moved = select(value).where(a.c.res_id == r.c.res_id).scalar_subquery()
        return audit_refs.on_postgresql(moved, indexed)
    if res_type != AUDIT_EVENT or p.type != "token":
        return indexed
    a = shared_alias(audit_terms, 0)  # the gateway's own events: their codes are terms
    kept = select(min_code(a.c.terms, code, greatest=desc)).where(a.c.res_id == r.c.res_id).scalar_subquery()
    return func.coalesce(indexed, kept)


COUNTED = frozenset({"accurate", "estimate"})  # the ``_total`` values for which a full page is counted
_LIMIT, _OFFSET, _IDS = "q_limit", "q_offset", "q_ids"  # parameters beside the search's slots


def _build(shape: WhereShape, sort: tuple[tuple[str, bool], ...], viewer: Viewer, drive: bool) -> _Statements:
    r = resource
    conditions = where_clauses(shape, viewer.visible, drive=drive, visible_of_person=viewer.visible_of_person)
    order = []
    for code, desc in sort:
        key = _sort_key(shape.res_type, code, desc)
        order.append(key.desc() if desc else key.asc())
    order.append(r.c.res_id)
    limit, offset = bindparam(_LIMIT, type_=Integer()), bindparam(_OFFSET, type_=Integer())
    return _Statements(
        page=select(r.c.res_type, r.c.res_id, r.c.content, r.c.patient_id)
        .where(*conditions)
        .order_by(*order)
        .limit(limit)
        .offset(offset),
        count=select(func.count()).select_from(r).where(*conditions),
        ids=select(r.c.res_id).where(*conditions).limit(limit),
        with_values=plans_with_values(shape),
    )


def _prepared(conn: Connection, request: SearchRequest, viewer: Viewer) -> tuple[_Statements, dict[str, Any]]:
    """The statements of ``request``'s shape for ``viewer`` on ``conn``'s database; ``request``'s values."""
    lit = Literals()
    shape = where_shape(request, lit)
    sort = tuple(request.sort)
    drive = conn.dialect.name == "sqlite"  # compiler.driving_clause
    key = (shape, sort, viewer.visible_key(), drive)
    statements = _statements.get_or_build(key, lambda: _build(shape, sort, viewer, drive))
    return statements, lit.params()


def execute_search(
    conn: Connection, request: SearchRequest, viewer: Viewer, max_include: int
) -> SearchResult:
    """The page of ``request`` for ``viewer``, whose rows are filtered by ``viewer.visible``."""
    statements, params = _prepared(conn, request, viewer)
    with _planned(conn, statements):
        if request.summary == "count" or request.count == 0:
            return SearchResult([], [], int(direct.scalar(conn, statements.count, params)))
        params[_LIMIT], params[_OFFSET] = request.count, request.offset
        matches = cast(list[Found], direct.tuples(conn, statements.page, params))
        total: int | None = None
        if request.offset == 0 and len(matches) < request.count:
            total = len(matches)
        elif request.total in COUNTED:
            total = int(direct.scalar(conn, statements.count, params))
    included = _includes(conn, request, matches, viewer, max_include) if request.includes else []
    return SearchResult(matches, included, total)


def _includes(
    conn: Connection,
    request: SearchRequest,
    matches: list[Found],
    viewer: Viewer,
    limit: int,
) -> list[Found]:
    """``_include``/``_revinclude`` rows for the page, with ``:iterate`` up to three rounds."""
    seen = {(t, i) for t, i, *_ in matches}
    found: list[Found] = []
    frontier = list(seen)
    for round_ in range(3):
        new: list[Found] = []
        for inc in request.includes:
            if round_ > 0 and not inc.iterate:
                continue
            by_type: dict[str, list[str]] = {}
            for t, i in frontier:
                wanted = t == inc.source_type if not inc.reverse else inc.target_type in (None, t)
                if wanted:
                    by_type.setdefault(t, []).append(i)
            for frontier_type, ids in by_type.items():
                for row in _include_rows(conn, inc, frontier_type, ids, viewer, limit):
                    if (row[0], row[1]) not in seen and len(found) + len(new) < limit:
                        seen.add((row[0], row[1]))
                        new.append(row)
        if not new:
            break
        found += new
        frontier = [(t, i) for t, i, *_ in new]
    return found


_include_statements: Lru[Select[Any]] = Lru(1024)


def _include_statement(inc: Include, frontier_type: str, viewer: Viewer) -> Select[Any]:
    # The shared ``resource`` table (not an alias): its visibility filter is built once and reused.
    r, i = resource, shared_alias(idx_reference, 0)
    ids: BindParameter[Any] = bindparam(_IDS, expanding=True)
    if inc.reverse:
        join = and_(i.c.res_type == r.c.res_type, i.c.res_id == r.c.res_id)
        where = [
            r.c.res_type == inc.source_type,
            i.c.param == inc.param,
            i.c.target_type == frontier_type,
            i.c.target_id.in_(ids),
        ]
        vis = viewer.visible(r, inc.source_type)
    else:
        join = and_(r.c.res_type == i.c.target_type, r.c.res_id == i.c.target_id)
        where = [i.c.res_type == inc.source_type, i.c.param == inc.param, i.c.res_id.in_(ids)]
        if inc.target_type:
            where.append(i.c.target_type == inc.target_type)
        vis = viewer.visible(r, inc.target_type)
    return (
        select(r.c.res_type, r.c.res_id, r.c.content, r.c.patient_id)
        .distinct()
        .select_from(i)
        .join(r, join)
        .where(*where, r.c.deleted == false(), vis)
        .limit(bindparam(_LIMIT, type_=Integer()))
    )


def _audit_include_statement(inc: Include, viewer: Viewer) -> Select[Any]:
    """``_include_statement`` from AuditEvents on PostgreSQL: their reference keys are in their
    ``audit_terms`` row (``storage.audit_refs``); ``_IDS`` are then the keys sought when reverse."""
    r, a = resource, shared_alias(audit_terms, 0)
    columns = (r.c.res_type, r.c.res_id, r.c.content, r.c.patient_id)
    if inc.reverse:
        query = select(*columns).select_from(r).join(a, a.c.res_id == r.c.res_id)
        sought = bindparam(_IDS, type_=ARRAY(Text))
        where = [r.c.res_type == AUDIT_EVENT, refs_array(a.c.refs).op("&&")(sought)]
        vis = viewer.visible(r, AUDIT_EVENT)
    else:
        keys = audit_refs.keys_of(a, 0)
        named = audit_refs.after_param(keys.c.value, inc.param)
        query = select(*columns).select_from(a).join(keys, true()).join(r, audit_refs.names(r, named))
        prefix = f"{inc.param}|{inc.target_type}/" if inc.target_type else f"{inc.param}|"
        ids = a.c.res_id.in_(bindparam(_IDS, expanding=True))
        where = [ids, keys.c.value.startswith(prefix, autoescape=True)]
        vis = viewer.visible(r, inc.target_type)
    return (
        query.distinct().where(*where, r.c.deleted == false(), vis).limit(bindparam(_LIMIT, type_=Integer()))
    )


def _include_rows(
    conn: Connection, inc: Include, frontier_type: str, ids: list[str], viewer: Viewer, limit: int
) -> list[Found]:
    moved = inc.source_type == AUDIT_EVENT and conn.dialect.name == "postgresql"
    key = (inc, frontier_type, viewer.visible_key(), moved)
    if moved:
        query = _include_statements.get_or_build(key, lambda: _audit_include_statement(inc, viewer))
        if inc.reverse:  # the keys naming the frontier's resources (``storage.audit_refs``)
            ids = [key_text(f"{inc.param}|{frontier_type}/{res_id}") for res_id in ids]
    else:
        query = _include_statements.get_or_build(key, lambda: _include_statement(inc, frontier_type, viewer))
    params = {_IDS: ids, _LIMIT: limit}
    found = direct.rows(conn, query, params)
    return [(row.res_type, row.res_id, row.content, row.patient_id) for row in found]


def find_ids(conn: Connection, request: SearchRequest, viewer: Viewer, limit: int) -> list[tuple[str, str]]:
    """Ids matching ``request`` (conditional interactions), at most ``limit``."""
    statements, params = _prepared(conn, request, viewer)
    params[_LIMIT] = limit
    with _planned(conn, statements):
        return [(request.resource_type, row.res_id) for row in direct.rows(conn, statements.ids, params)]


def _planned(conn: Connection, statements: _Statements) -> AbstractContextManager[None]:
    """Where ``statements`` run: planned with their values when their shape asks for it."""
    return planned_with_values(conn) if statements.with_values else nullcontext()


_REFERENCES = idx_reference.alias("idx_reference_found")


_AMONG = "q_among"  # the values of ``_among``, bound at execution
_TEXT_ARRAY = ARRAY(String)


def _among(conn: Connection, column: Any) -> ColumnElement[bool]:
    """``column IN :q_among``; on PostgreSQL ``column = ANY(array)``, one parameter instead of one
    per value (the driver converts a 1,000-value list at a fraction of the cost). The values are
    given at execution, never held by the statement: a SQLAlchemy bind parameter sits in a
    reference cycle with its comparator, so a value list bound into it stayed in memory until a
    garbage collection, one per lookup of a bulk import that runs with few of them."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(_AMONG, type_=_TEXT_ARRAY))  # type: ignore[no-any-return]
    return column.in_(bindparam(_AMONG, expanding=True))  # type: ignore[no-any-return]


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
                _among(conn, i.c.target_id),
            ),
        )
        .where(*where_clauses(where_shape(request, lit := Literals()), visible))
    )
    params = {**lit.params(), _AMONG: list(target_ids)}
    return [(row.target_id, stored_row(row)) for row in conn.execute(query, params)]


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
            _among(conn, i.c.code),
        )
    )
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=r)
    found: list[tuple[str, StoredRow]] = []
    unique = list(dict.fromkeys(codes))
    for start in range(0, len(unique), 1000):  # one statement, its codes 1,000 at a time
        params = {_AMONG: unique[start : start + 1000]}
        found += [(row.code, stored_row(row)) for row in conn.execute(query, params)]
    return found
