"""Search criteria compiled to SQL conditions over the index tables (FHIR R4 search.html).

Every criterion becomes an EXISTS sub-query on one index table, correlated with the
resource row; every user value is a bound parameter. Resources reached through chains
and ``_has`` are filtered by the caller's visibility, so that consent never leaks through
them (issue 4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, not_, or_, select, true

from fhir_gateway.search.indexing import normalize
from fhir_gateway.search.model import Criterion, Has, Value
from fhir_gateway.storage.tables import INDEX_TABLES, idx_reference, resource, shared_alias

Visible = Callable[[Any, str | None], ColumnElement[bool]]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _token(i: Any, v: Value, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "text":
        return i.c.display.ilike(f"%{_like_escape(v.raw)}%", escape="\\")  # type: ignore[no-any-return]
    conditions = []
    if v.code is not None:
        conditions.append(i.c.code == v.code)
    if v.system is not None:
        conditions.append(i.c.system.is_(None) if v.system == "" else i.c.system == v.system)
    return and_(*conditions) if conditions else true()


def _string(i: Any, v: Value, modifier: str | None) -> ColumnElement[bool]:
    text = v.code or ""
    if modifier == "exact":
        return i.c.value_exact == text[:255]  # type: ignore[no-any-return]
    pattern = _like_escape(normalize(text))
    if modifier == "contains":
        return i.c.value_norm.like(f"%{pattern}%", escape="\\")  # type: ignore[no-any-return]
    return i.c.value_norm.like(f"{pattern}%", escape="\\")  # type: ignore[no-any-return]


def _date(i: Any, v: Value) -> ColumnElement[bool]:
    """Range semantics of search.html#prefix: the resource range [low, high] vs the value's."""
    lo, hi = i.c.low, i.c.high
    rlo = or_(lo.is_(None), lo <= v.high)  # resource starts before the value ends
    rhi = or_(hi.is_(None), hi >= v.low)  # resource ends after the value starts
    prefix = v.prefix
    if prefix == "eq":
        return and_(lo.is_not(None), hi.is_not(None), lo >= v.low, hi <= v.high)
    if prefix == "ne":
        return or_(lo.is_(None), hi.is_(None), lo < v.low, hi > v.high)
    if prefix == "gt":
        return or_(hi.is_(None), hi > v.high)
    if prefix == "lt":
        return or_(lo.is_(None), lo < v.low)
    if prefix == "ge":
        return or_(hi.is_(None), hi >= v.low)
    if prefix == "le":
        return or_(lo.is_(None), lo <= v.high)
    if prefix == "sa":
        return and_(lo.is_not(None), lo > v.high)
    if prefix == "eb":
        return and_(hi.is_not(None), hi < v.low)
    return and_(rlo, rhi)  # ap: overlaps


def _number(i: Any, v: Value) -> ColumnElement[bool]:
    n, col = v.number, i.c.value
    assert n is not None
    ops: dict[str, ColumnElement[bool]] = {
        "eq": col.between(n - 0.5 * _unit(v.raw), n + 0.5 * _unit(v.raw)),
        "ne": not_(col.between(n - 0.5 * _unit(v.raw), n + 0.5 * _unit(v.raw))),
        "gt": col > n,
        "lt": col < n,
        "ge": col >= n,
        "le": col <= n,
        "sa": col > n,
        "eb": col < n,
        "ap": col.between(n - abs(n) * 0.1, n + abs(n) * 0.1),
    }
    condition = ops[v.prefix]
    if v.system is not None and hasattr(i.c, "system"):
        condition = and_(condition, i.c.system == v.system)
    if v.code is not None and hasattr(i.c, "code"):
        condition = and_(condition, i.c.code == v.code)
    return condition


def _unit(raw: str) -> float:
    """The precision implied by a number's decimals (search.html#number)."""
    text = raw.lstrip("eqnglstab").split("|")[0]
    if "e" in text.lower():
        return 1e-9
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(10**-decimals)


def _reference(i: Any, v: Value) -> ColumnElement[bool]:
    conditions = [i.c.target_id == v.target_id]
    if v.target_type:
        conditions.append(i.c.target_type == v.target_type)
    by_id = and_(*conditions)
    if v.code and "://" in v.code:
        return or_(by_id, i.c.url == v.code)
    return by_id


def _value_condition(i: Any, kind: str, v: Value, modifier: str | None) -> ColumnElement[bool]:
    if kind == "token":
        return _token(i, v, modifier)
    if kind == "string":
        return _string(i, v, modifier)
    if kind == "date":
        return _date(i, v)
    if kind in ("number", "quantity"):
        return _number(i, v)
    if kind == "reference":
        return _reference(i, v)
    if modifier == "below":
        return i.c.value.like(f"{_like_escape(v.code or '')}%", escape="\\")  # type: ignore[no-any-return]
    return i.c.value == v.code  # type: ignore[no-any-return]


# (type, parameter) whose reference is the resource's patient compartment (indexing.py): a
# search on it by Patient/<id> is also ``patient_id = <id>``, which the planner can use first.
_COMPARTMENT_PARAMS = frozenset(
    {
        ("Task", "patient"),
        ("Task", "subject"),
        ("CarePlan", "patient"),
        ("CarePlan", "subject"),
        ("CareTeam", "patient"),
        ("CareTeam", "subject"),
        ("Goal", "patient"),
        ("Goal", "subject"),
        ("ServiceRequest", "patient"),
        ("ServiceRequest", "subject"),
        ("Consent", "patient"),
        ("RelatedPerson", "patient"),
    }
)


def compartment_ids(res_type: str, c: Criterion) -> list[str] | None:
    """The persons ``c`` restricts resources to (``patient_id IN ...``), if it does."""
    if (res_type, c.param.code) not in _COMPARTMENT_PARAMS or c.modifier or c.chain or c.missing is not None:
        return None
    ids = []
    for v in c.values:
        if v.target_type != "Patient" or not v.target_id or "://" in v.raw:
            return None
        ids.append(v.target_id)
    return ids or None


def compartment_clause(row: Any, res_type: str, c: Criterion) -> ColumnElement[bool] | None:
    """``row.patient_id IN (...)`` implied by ``c`` (a redundant, indexable condition), if any."""
    ids = compartment_ids(res_type, c)
    return row.c.patient_id.in_(ids) if ids else None


def criterion_clause(
    row: Any, res_type: str, c: Criterion, visible: Visible, depth: int = 0
) -> ColumnElement[bool]:
    """SQL condition on resource alias ``row`` for one criterion (``depth``: nesting level)."""
    i = shared_alias(INDEX_TABLES[c.param.type], depth)
    owner = and_(i.c.res_type == res_type, i.c.res_id == row.c.res_id, i.c.param == c.param.code)
    if c.chain is not None:
        t = shared_alias(resource, depth)
        inner = criterion_clause(t, c.chain.target_type, c.chain.criterion, visible, depth + 1)
        return exists(
            select(1)
            .select_from(i)
            .join(t, and_(t.c.res_type == i.c.target_type, t.c.res_id == i.c.target_id))
            .where(
                owner,
                i.c.target_type == c.chain.target_type,
                t.c.deleted == false(),
                visible(t, c.chain.target_type),
                inner,
            )
        )
    if c.missing is not None:
        found = exists(select(1).select_from(i).where(owner))
        return not_(found) if c.missing else found
    values = or_(*(_value_condition(i, c.param.type, v, c.modifier) for v in c.values))
    if c.modifier == "not":
        return not_(exists(select(1).select_from(i).where(owner, values)))
    return exists(select(1).select_from(i).where(owner, values))


def has_clause(row: Any, res_type: str, h: Has, visible: Visible, depth: int = 0) -> ColumnElement[bool]:
    """``_has``: a visible resource of ``h.source_type`` points at ``row`` and matches."""
    s = shared_alias(resource, depth)
    i = shared_alias(idx_reference, depth)
    inner = (
        criterion_clause(s, h.source_type, h.criterion, visible, depth + 1)
        if h.criterion is not None
        else has_clause(s, h.source_type, h.nested, visible, depth + 1)
        if h.nested is not None
        else true()
    )
    return exists(
        select(1)
        .select_from(s)
        .join(i, and_(i.c.res_type == s.c.res_type, i.c.res_id == s.c.res_id))
        .where(
            s.c.res_type == h.source_type,
            s.c.deleted == false(),
            i.c.param == h.reference_param,
            i.c.target_type == res_type,
            i.c.target_id == row.c.res_id,
            visible(s, h.source_type),
            inner,
        )
    )
