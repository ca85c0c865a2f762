"""Search conditions on AuditEvents' reference keys and ``recorded`` range (PostgreSQL).

On PostgreSQL an AuditEvent's reference parameters (``agent``, ``entity``, ``patient``,
``source``: FHIR R4 auditevent.html#search) and its ``date`` are columns of its ``audit_terms``
row (``storage.audit_refs``), not generic index rows. The compiler builds both forms of each
such condition and ``on_postgresql`` compiles the one the database reads: the statements are
built once per search shape whatever the engine (``storage.search_repository``).

A reference value (search.html#reference) becomes the keys it matches, tested with the array
overlap operator that the keys' GIN index answers: ``Type/id`` gives ``param|Type/id``; an id
alone gives the key of each type the parameter may point at, or, for a parameter of any type
(``entity``), a test of each key of the row; an absolute URL also gives ``param|url``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, String, and_, false, func, literal, literal_column, or_
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean

from fhir_gateway.search.registry import params_for
from fhir_gateway.search.shape import NULL, Shape, Slot
from fhir_gateway.storage.audit_refs import AUDIT_EVENT, NO_ID, SEP
from fhir_gateway.storage.tables import refs_array

TYPED = "'^[A-Z][^/?]*/[^/?]*$'"  # ``Type/id``: a key naming a resource (``storage.audit_refs``)


class _OnPostgresql(ColumnElement[Any]):
    """``postgresql`` on PostgreSQL, ``other`` elsewhere (chosen as the statement compiles)."""

    __visit_name__ = "on_postgresql"
    inherit_cache = True
    _traverse_internals = [
        ("postgresql", InternalTraversal.dp_clauseelement),
        ("other", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, postgresql: ColumnElement[Any], other: ColumnElement[Any]) -> None:
        self.postgresql = postgresql
        self.other = other
        self.type = other.type


@compiles(_OnPostgresql)
def _on_postgresql(element: _OnPostgresql, compiler: SQLCompiler, **kw: Any) -> str:
    chosen = element.postgresql if compiler.dialect.name == "postgresql" else element.other
    return compiler.process(chosen, **kw)


def on_postgresql(postgresql: ColumnElement[Any], other: ColumnElement[Any]) -> ColumnElement[Any]:
    """A condition (or value) written one way for PostgreSQL and another for SQLite."""
    return _OnPostgresql(postgresql, other)


def moved(res_type: str, kind: str, code: str) -> bool:
    """Whether parameter ``code`` of ``res_type`` is read from ``audit_terms`` on PostgreSQL."""
    return res_type == AUDIT_EVENT and (kind == "reference" or (kind == "date" and code == "date"))


def overlaps(refs: Any, keys: list[ColumnElement[Any]]) -> ColumnElement[bool]:
    """The row's ``refs`` hold one of ``keys`` (the GIN index's expression and operator)."""
    if not keys:
        return false()
    keys_array: Any = array(keys, type_=String)
    return refs_array(refs).op("&&")(keys_array)  # type: ignore[no-any-return]


def reference_value(refs: Any, code: str, shape: Shape, bound: Any) -> ColumnElement[bool]:
    """One value of reference parameter ``code`` (``search.shape._reference``) on ``refs``."""
    _, target_id, target_type, url = shape
    keys: list[ColumnElement[Any]] = []
    tests: list[ColumnElement[bool]] = []
    head = literal(f"{code}|")
    if isinstance(target_id, Slot):
        if target_type is not None:
            keys.append(_key_text(head + bound(target_type) + literal("/") + bound(target_id)))
        elif targets := _targets(code):
            keys += [_key_text(literal(f"{code}|{t}/") + bound(target_id)) for t in targets]
        else:  # a parameter of any type: a key of it naming a resource with that id
            tests.append(_OverKeys(refs, code, "id", bound(target_id)))
    elif target_type is None:
        assert target_id == NULL
        keys.append(literal(f"{code}|{NO_ID}"))
    if url is not None:
        keys.append(_key_text(head + bound(url)))
    return or_(overlaps(refs, keys), *tests)


def has_param(refs: Any, code: str) -> ColumnElement[bool]:
    """``refs`` hold a key of parameter ``code`` (``:missing``)."""
    return _OverKeys(refs, code, "any")


def _targets(code: str) -> list[str]:
    param = params_for(AUDIT_EVENT).get(code)
    return sorted(param.targets) if param is not None and param.targets else []


def _key_text(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """A key as ``storage.audit_refs.key_text`` writes it (without the separator)."""
    return func.replace(value, literal(SEP), literal(""))


class _OverKeys(ColumnElement[Any]):
    """A sub-query over the keys of parameter ``code`` in ``refs`` (PostgreSQL): whether one is
    there (``any``), whether one names a resource of any type with id ``target_id`` (``id``: the
    generic index's ``target_id`` matches whatever the ``target_type``), or the least or greatest
    id they name (``min``, ``max``: ``_sort`` by a reference parameter)."""

    __visit_name__ = "audit_refs_over_keys"
    inherit_cache = True
    _traverse_internals = [
        ("refs", InternalTraversal.dp_clauseelement),
        ("prefix", InternalTraversal.dp_clauseelement),
        ("kind", InternalTraversal.dp_string),
        ("target_id", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, refs: Any, code: str, kind: str, target_id: ColumnElement[Any] | None = None) -> None:
        self.refs = refs
        self.prefix = literal(f"{code}|")
        self.kind = kind
        self.target_id = target_id if target_id is not None else literal("")
        self.type = String() if kind in ("min", "max") else Boolean()


@compiles(_OverKeys)
def _over_keys(element: _OverKeys, compiler: SQLCompiler, **kw: Any) -> str:
    keys = f"unnest({compiler.process(refs_array(element.refs), **kw)}) AS k(value)"
    prefix = compiler.process(element.prefix, **kw)
    named_id = f"split_part(substr(k.value, length({prefix}) + 1), '/', 2)"
    where = f"starts_with(k.value, {prefix})"
    if element.kind == "any":
        return f"EXISTS (SELECT 1 FROM {keys} WHERE {where})"
    where += f" AND substr(k.value, length({prefix}) + 1) ~ {TYPED}"
    if element.kind == "id":
        target_id = compiler.process(element.target_id, **kw)
        return f"EXISTS (SELECT 1 FROM {keys} WHERE {where} AND {named_id} = {target_id})"
    return f"(SELECT {element.kind}({named_id}) FROM {keys} WHERE {where})"


def target_id(refs: Any, code: str, *, greatest: bool = False) -> ColumnElement[str]:
    """The id a sort by reference parameter ``code`` orders by (``_OverKeys``)."""
    return _OverKeys(refs, code, "max" if greatest else "min")


@cache
def keys_of(terms: Any, depth: int) -> Any:
    """The FROM item of the keys of ``terms`` (an ``audit_terms`` alias nested ``depth`` deep) as
    rows of ``value``: a lateral ``unnest`` (chains, ``_include``), built once per alias."""
    keys = func.unnest(refs_array(terms.c.refs)).table_valued("value").render_derived()
    return keys.lateral(f"audit_keys_{depth}")


def after_param(key: ColumnElement[Any], param: str | None = None) -> ColumnElement[Any]:
    """What follows ``param|`` in ``key`` (``Type/id`` for a key naming a resource); ``param``
    None: whatever the parameter."""
    start = func.strpos(key, "|") + 1 if param is None else len(param) + 2
    return func.substr(key, start)


def names(row: Any, named: ColumnElement[Any]) -> ColumnElement[bool]:
    """Resource alias ``row`` is the one that ``named`` (a key after its ``param|``) names."""
    return and_(
        named.op("~")(literal_column(TYPED)),
        row.c.res_type == func.split_part(named, "/", 1),
        row.c.res_id == func.split_part(named, "/", 2),
    )
