"""Search shapes compiled to SQL conditions over the index tables (FHIR R4 search.html).

Every criterion becomes an EXISTS sub-query on one index table, correlated with the
resource row (``_id`` and ``_lastUpdated``: a condition on the row itself); every value is
the bound parameter of its slot (``search.shape``), so that a statement serves every search
of its shape. A token criterion on AuditEvent also tests the events' ``audit_terms`` rows
(``search.audit_terms``: the gateway's own events keep their token values there). Resources
reached through chains and ``_has`` are filtered by the caller's visibility, so that consent
never leaks through them (issue 4).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    and_,
    bindparam,
    exists,
    false,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)

from fhir_gateway.search import audit_refs, row_tokens
from fhir_gateway.search.audit_terms import code_term, has_term, text_match
from fhir_gateway.search.registry import ROW_PARAMS, params_for
from fhir_gateway.search.shape import NULL, Shape, Slot, WhereShape
from fhir_gateway.storage.audit_refs import AUDIT_EVENT
from fhir_gateway.storage.tables import INDEX_TABLES, audit_terms, idx_reference, resource, shared_alias

Visible = Callable[[Any, str | None], ColumnElement[bool]]


class Viewer(Protocol):
    """Whose search it is: the rows they may see, and a key naming that filter."""

    def visible(self, alias: Any, res_type: str | None) -> ColumnElement[bool]:
        """SQL filter of the rows of ``alias`` (of ``res_type``) this caller may read."""
        ...

    def visible_key(self) -> Hashable:
        """Equal for two callers exactly when ``visible`` builds the same filters for both."""
        ...

    def visible_of_person(self, alias: Any, res_type: str, person: ColumnElement[Any]) -> ColumnElement[bool]:
        """``visible`` for rows that all belong to the person ``person`` (a bound value): what
        depends on the person alone may then be evaluated once per statement."""
        ...


def bound(slot: Slot, *, expanding: bool = False) -> BindParameter[Any]:
    """The statement parameter of ``slot`` (its type comes from the column it is compared with)."""
    return bindparam(slot.name, expanding=expanding)


def _equals(column: Any, value: Slot | str) -> ColumnElement[bool]:
    if isinstance(value, Slot):
        return column == bound(value)  # type: ignore[no-any-return]
    assert value == NULL
    return column.is_(None)  # type: ignore[no-any-return]


def _token(i: Any, shape: Shape) -> ColumnElement[bool]:
    if shape[0] == "text":
        return i.c.display.ilike(bound(shape[1]), escape="\\")  # type: ignore[no-any-return]
    _, code, system = shape
    conditions = []
    if code is not None:
        conditions.append(i.c.code == bound(code))
    if system is not None:
        conditions.append(_equals(i.c.system, system))
    return and_(*conditions) if conditions else true()


def _date(i: Any, shape: Shape) -> ColumnElement[bool]:
    """Range semantics of search.html#prefix: the resource range [low, high] vs the value's."""
    return _date_range(i.c.low, i.c.high, shape)


def _date_range(lo: Any, hi: Any, shape: Shape) -> ColumnElement[bool]:
    _, prefix, low_slot, high_slot = shape
    low, high = bound(low_slot), bound(high_slot)
    if prefix == "eq":
        return and_(lo.is_not(None), hi.is_not(None), lo >= low, hi <= high)
    if prefix == "ne":
        return or_(lo.is_(None), hi.is_(None), lo < low, hi > high)
    if prefix == "gt":
        return or_(hi.is_(None), hi > high)
    if prefix == "lt":
        return or_(lo.is_(None), lo < low)
    if prefix == "ge":
        return or_(hi.is_(None), hi >= low)
    if prefix == "le":
        return or_(lo.is_(None), lo <= high)
    if prefix == "sa":
        return and_(lo.is_not(None), lo > high)
    if prefix == "eb":
        return and_(hi.is_not(None), hi < low)
    return and_(or_(lo.is_(None), lo <= high), or_(hi.is_(None), hi >= low))  # ap: overlaps


_COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def _number(i: Any, shape: Shape) -> ColumnElement[bool]:
    _, test, system, code = shape
    col = i.c.value
    condition: ColumnElement[bool]
    if test[0] == "between":
        _, negated, low, high = test
        condition = col.between(bound(low), bound(high))
        if negated:
            condition = not_(condition)
    else:
        _, comparison, value = test
        condition = _COMPARE[comparison](col, bound(value))
    if system is not None and hasattr(i.c, "system"):
        condition = and_(condition, i.c.system == bound(system))
    if code is not None and hasattr(i.c, "code"):
        condition = and_(condition, i.c.code == bound(code))
    return condition


def _reference(i: Any, shape: Shape) -> ColumnElement[bool]:
    _, target_id, target_type, url = shape
    conditions = [_equals(i.c.target_id, target_id)]
    if target_type is not None:
        conditions.append(i.c.target_type == bound(target_type))
    by_id = and_(*conditions)
    if url is not None:
        return or_(by_id, i.c.url == bound(url))
    return by_id


def _value_condition(i: Any, kind: str, shape: Shape) -> ColumnElement[bool]:
    form = shape[0]
    if form == "like":
        column = i.c.value_norm if kind == "string" else i.c.value
        return column.like(bound(shape[1]), escape="\\")  # type: ignore[no-any-return]
    if form == "exact":
        return i.c.value_exact == bound(shape[1])  # type: ignore[no-any-return]
    if form in ("token", "text"):
        return _token(i, shape)
    if form == "date":
        return _date(i, shape)
    if form == "number":
        return _number(i, shape)
    if form == "reference":
        return _reference(i, shape)
    return _equals(i.c.value, shape[1])


def _row_value(row: Any, code: str, shape: Shape) -> ColumnElement[bool]:
    """One value of ``_id`` (a token without system: search.html#_id) or ``_lastUpdated`` (an
    instant: ``shape._last_updated``) on the resource row."""
    if code == "_lastUpdated":
        return _date_range(row.c.last_updated, row.c.last_updated, shape)
    if shape[0] != "token":  # :text matches a display, and an id has none
        return false()
    _, id_slot, system = shape
    if isinstance(system, Slot):  # system|id: an id has no system
        return false()
    return row.c.res_id == bound(id_slot) if id_slot is not None else true()


def _row_criterion(row: Any, code: str, shape: Shape) -> ColumnElement[bool]:
    """A criterion on a parameter of ``ROW_PARAMS``, which every resource has exactly once."""
    if shape[0] == "missing":
        return false() if shape[2] else true()
    _, _, negated, value_shapes = shape
    values = or_(*(_row_value(row, code, v) for v in value_shapes))
    return not_(values) if negated else values


def _exists(query: Any, per_row: bool) -> ColumnElement[bool]:
    """EXISTS ``query``; ``per_row``: kept a test run on each row (``OFFSET 0``: PostgreSQL
    does not turn it into a join).

    In a search of one person's rows (``WhereShape.per_row``) those rows are few and found by
    their own index (``patient_id``). A criterion turned into a join could have the planner
    start from it instead, and the generic plan of a prepared statement cannot tell a status
    held by most Tasks from an identifier held by one: hashing every ``status`` index row of the
    type took 24 ms where testing the person's 29 Tasks one by one takes 0.08 ms."""
    return exists(query.offset(literal_column("0")) if per_row else query)


def criterion_clause(
    row: Any,
    res_type: str,
    shape: Shape,
    visible: Visible,
    depth: int = 0,
    *,
    per_row: bool = False,
    in_row: bool = False,
) -> ColumnElement[bool]:
    """SQL condition on resource alias ``row`` for one criterion (``depth``: nesting level;
    ``per_row``: tested on each row, ``_exists``; ``in_row``: the row is one of a person's,
    read by its own index: a token criterion tests the row's ``tokens``, ``_in_row_tokens``)."""
    kind, code = shape[1]
    if code in ROW_PARAMS:
        return _row_criterion(row, code, shape)
    generic = _index_criterion(row, res_type, shape, visible, depth, per_row)
    if in_row and kind == "token" and res_type != AUDIT_EVENT:
        return _in_row_tokens(row, shape, generic)
    if audit_refs.moved(res_type, kind, code):  # PostgreSQL: in the event's ``audit_terms`` row
        return audit_refs.on_postgresql(_audit_criterion(row, shape, visible, depth, per_row), generic)
    return generic


def _index_criterion(
    row: Any, res_type: str, shape: Shape, visible: Visible, depth: int, per_row: bool
) -> ColumnElement[bool]:
    """``criterion_clause`` on the generic index tables."""
    form, (kind, code) = shape[0], shape[1]
    i = shared_alias(INDEX_TABLES[kind], depth)
    owner = and_(i.c.res_type == res_type, i.c.res_id == row.c.res_id, i.c.param == code)
    if form == "chain":
        _, _, target_type, inner_shape = shape
        t = shared_alias(resource, depth)
        inner = criterion_clause(t, target_type, inner_shape, visible, depth + 1)
        return _exists(
            select(1)
            .select_from(i)
            .join(t, and_(t.c.res_type == i.c.target_type, t.c.res_id == i.c.target_id))
            .where(
                owner,
                i.c.target_type == target_type,
                t.c.deleted == false(),
                visible(t, target_type),
                inner,
            ),
            per_row,
        )
    terms = res_type == AUDIT_EVENT and kind == "token"  # also in ``audit_terms``
    if form == "missing":
        found = _exists(select(1).select_from(i).where(owner), per_row)
        if terms:
            found = or_(found, _in_audit_terms(row, depth, [has_term(_terms(depth), literal(code))]))
        return not_(found) if shape[2] else found
    _, _, negated, value_shapes = shape
    values = or_(*(_value_condition(i, kind, v) for v in value_shapes))
    found = _exists(select(1).select_from(i).where(owner, values), per_row)
    if terms:
        found = or_(found, _in_audit_terms(row, depth, [_term_test(depth, code, v) for v in value_shapes]))
    return not_(found) if negated else found


def _in_row_tokens(row: Any, shape: Shape, generic: ColumnElement[bool]) -> ColumnElement[bool]:
    """A token criterion on a person's row as a test of its ``tokens`` (``search.row_tokens``),
    the index rows' test ``generic`` for a row without them; ``generic`` alone for the forms the
    terms do not answer (``:missing``, ``:text``, ``|`` without a code)."""
    if shape[0] != "values" or not all(row_tokens.plain(v) for v in shape[3]):
        return generic
    _, (_, code), negated, value_shapes = shape
    tests = [
        row_tokens.holds(row.c.tokens, _value_term(code, v), whole=v[1] is not None) for v in value_shapes
    ]
    in_row = not_(or_(*tests)) if negated else or_(*tests)
    return row_tokens.with_index_fallback(row.c.tokens, in_row, generic)


def _audit_criterion(
    row: Any, shape: Shape, visible: Visible, depth: int, per_row: bool
) -> ColumnElement[bool]:
    """``criterion_clause`` for an AuditEvent reference parameter or its ``date``, read from the
    event's ``audit_terms`` row on PostgreSQL (``search.audit_refs``): no row, no value."""
    form, (kind, code) = shape[0], shape[1]
    a = shared_alias(audit_terms, depth)
    owned = a.c.res_id == row.c.res_id
    if form == "chain":
        _, _, target_type, inner_shape = shape
        t = shared_alias(resource, depth)
        keys = audit_refs.keys_of(a, depth)
        inner = criterion_clause(t, target_type, inner_shape, visible, depth + 1)
        return _exists(
            select(1)
            .select_from(a)
            .join(keys, true())
            .join(t, audit_refs.names(t, audit_refs.after_param(keys.c.value, code)))
            .where(
                owned,
                keys.c.value.startswith(f"{code}|{target_type}/", autoescape=True),
                t.c.res_type == target_type,
                t.c.deleted == false(),
                visible(t, target_type),
                inner,
            ),
            per_row,
        )
    if form == "missing":
        if kind == "date":
            held = or_(a.c.recorded_low.is_not(None), a.c.recorded_high.is_not(None))
        else:
            held = audit_refs.has_param(a.c.refs, code)
        found = _exists(select(1).select_from(a).where(owned, held), per_row)
        return not_(found) if shape[2] else found
    _, _, negated, value_shapes = shape
    if kind == "date":
        values = or_(*(_date_range(a.c.recorded_low, a.c.recorded_high, v) for v in value_shapes))
    else:
        values = or_(*(audit_refs.reference_value(a.c.refs, code, v, bound) for v in value_shapes))
    found = _exists(select(1).select_from(a).where(owned, values), per_row)
    return not_(found) if negated else found


def _terms(depth: int) -> Any:
    return shared_alias(audit_terms, depth).c.terms


def _in_audit_terms(row: Any, depth: int, tests: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    """The AuditEvent ``row`` has an ``audit_terms`` row passing one of ``tests`` (its token
    values are there, not in ``idx_token``: ``search.audit_terms``)."""
    a = shared_alias(audit_terms, depth)
    return exists(select(1).select_from(a).where(a.c.res_id == row.c.res_id, or_(*tests)))


def _term_test(depth: int, code: str, shape: Shape) -> ColumnElement[bool]:
    """One value of token parameter ``code`` (search.html#token) as a test of the terms."""
    if shape[0] == "text":
        return text_match(_terms(depth), code, bound(shape[1]))
    return has_term(_terms(depth), _value_term(code, shape))


def _value_term(code: str, shape: Shape) -> ColumnElement[Any]:
    """The term a token value ``shape`` (``("token", code, system)``) of parameter ``code`` looks for."""
    _, value, system = shape
    return code_term(
        code,
        bound(value) if value is not None else None,
        bound(system) if isinstance(system, Slot) else None,
        no_system=system == NULL,
    )


def has_clause(
    row: Any, res_type: str, shape: Shape, visible: Visible, depth: int = 0
) -> ColumnElement[bool]:
    """``_has``: a visible resource of the shape's source type points at ``row`` and matches."""
    source_type, reference_param, criterion, nested = shape
    s = shared_alias(resource, depth)
    i = shared_alias(idx_reference, depth)
    inner = (
        criterion_clause(s, source_type, criterion, visible, depth + 1)
        if criterion is not None
        else has_clause(s, source_type, nested, visible, depth + 1)
        if nested is not None
        else true()
    )
    generic = exists(
        select(1)
        .select_from(s)
        .join(i, and_(i.c.res_type == s.c.res_type, i.c.res_id == s.c.res_id))
        .where(
            s.c.res_type == source_type,
            s.c.deleted == false(),
            i.c.param == reference_param,
            i.c.target_type == res_type,
            i.c.target_id == row.c.res_id,
            visible(s, source_type),
            inner,
        )
    )
    if source_type != AUDIT_EVENT:
        return generic
    a = shared_alias(audit_terms, depth)  # PostgreSQL: the events' keys (``search.audit_refs``)
    key = literal(f"{reference_param}|{res_type}/") + row.c.res_id
    moved = exists(
        select(1)
        .select_from(s)
        .join(a, a.c.res_id == s.c.res_id)
        .where(
            s.c.res_type == source_type,
            s.c.deleted == false(),
            audit_refs.overlaps(a.c.refs, [key]),
            visible(s, source_type),
            inner,
        )
    )
    return audit_refs.on_postgresql(moved, generic)


# token parameters naming business identifiers: one value is held by a handful of resources
_IDENTIFIER_PARAMS = frozenset({"identifier"})
# who acts (organisations, professionals...): one of them is referenced by many resources
_ACTORS = frozenset(
    {"Organization", "Practitioner", "PractitionerRole", "Device", "Location", "HealthcareService", "Group"}
)


def _selective(res_type: str, kind: str, code: str) -> bool:
    """Whether one value of parameter ``code`` is held by few resources: a business identifier,
    or a reference that cannot point at an actor (a plan's care team, a task's parent task)."""
    if kind == "token":
        return code in _IDENTIFIER_PARAMS
    if kind == "reference":
        param = params_for(res_type).get(code)
        return param is not None and bool(param.targets) and _ACTORS.isdisjoint(param.targets)
    return False


def driving_clause(row: Any, res_type: str, shape: Shape) -> ColumnElement[bool] | None:
    """For a selective criterion, ``row.res_id IN (ids of the matching index rows)``.

    Redundant with the criterion's EXISTS, but a condition SQLite's planner can start from:
    SQLite does not turn a correlated EXISTS into a join as PostgreSQL does, so it read every
    resource of the type and tested the EXISTS on each (``Task?identifier=…`` among 16,000
    Tasks: 22.6 ms, then 0.015 ms with this condition). Only for selective parameters
    (``_selective``): a value held by many resources (a status, the organisation that owns
    every Task) would have them all listed first, where the scan in id order stops at the
    page's end."""
    form, (kind, code) = shape[0], shape[1]
    if form != "values" or shape[2] or not _selective(res_type, kind, code):
        return None
    value_shapes = shape[3]
    if not value_shapes or any(v[0] != kind or v[1] in (None, NULL) for v in value_shapes):
        return None
    i = _DRIVERS[kind]
    values = or_(*(_value_condition(i, kind, v) for v in value_shapes))
    generic = row.c.res_id.in_(select(i.c.res_id).where(i.c.res_type == res_type, i.c.param == code, values))
    if not audit_refs.moved(res_type, kind, code):
        return generic  # type: ignore[no-any-return]
    a = _AUDIT_DRIVER  # PostgreSQL: the events' keys (``search.audit_refs``)
    keys = or_(*(audit_refs.reference_value(a.c.refs, code, v, bound) for v in value_shapes))
    return audit_refs.on_postgresql(row.c.res_id.in_(select(a.c.res_id).where(keys)), generic)


_DRIVERS = {kind: table.alias(f"{table.name}_driver") for kind, table in INDEX_TABLES.items()}
_AUDIT_DRIVER = audit_terms.alias("audit_terms_driver")


def where_clauses(
    shape: WhereShape,
    visible: Visible,
    *,
    drive: bool = False,
    visible_of_person: Callable[[Any, str, ColumnElement[Any]], ColumnElement[bool]] | None = None,
) -> list[ColumnElement[bool]]:
    """The conditions on ``resource`` of a search of ``shape``, caller's filter included.

    ``drive`` (SQLite): with neither ids nor persons to start from, the first selective criterion
    is also given as a condition the planner can start from (``driving_clause``).
    ``visible_of_person`` (``Viewer.visible_of_person``): the caller's filter for a search of one
    person's rows (``shape.person``; the compartment condition below keeps them to that person)."""
    r, t = resource, shape.res_type
    if shape.person is not None and visible_of_person is not None:
        caller_filter = visible_of_person(r, t, bound(shape.person))
    else:
        caller_filter = visible(r, t)
    conditions: list[ColumnElement[bool]] = [r.c.res_type == t, r.c.deleted == false(), caller_filter]
    conditions += [r.c.res_id.in_(bound(ids, expanding=True)) for ids in shape.ids]
    per_row = shape.per_row and not drive  # PostgreSQL (SQLite tests an EXISTS on each row anyway)
    in_row = shape.per_row  # the person's rows, read by ``patient_id`` on either engine
    conditions += [criterion_clause(r, t, c, visible, per_row=per_row, in_row=in_row) for c in shape.criteria]
    conditions += [r.c.patient_id.in_(bound(ids, expanding=True)) for ids in shape.compartments]
    conditions += [has_clause(r, t, h, visible) for h in shape.has]
    if drive and not shape.ids and not shape.compartments:
        driver = next((d for c in shape.criteria if (d := driving_clause(r, t, c)) is not None), None)
        if driver is not None:
            conditions.append(driver)
    return conditions
