"""The token values of the gateway's own AuditEvents as one row of terms (``audit_terms``).

Every request writes an AuditEvent (FHIR R4 auditevent.html#6.4.4.1) whose token parameters
(auditevent.html#search: ``action``, ``outcome``, ``type``, ``subtype``, ``entity-type``,
``entity-role``, ``site``, ``_tag``) took eleven rows of ``idx_token``, each with two B-tree
entries: more than half of what storing an event cost PostgreSQL. They are few, never drive a
search (millions of events share each value) and only filter the events found by date, person,
agent or entity, whose reference and date rows stay in the generic index. So an event written by
``audit.store`` keeps its token values in one ``audit_terms`` row, a JSON array of strings; an
AuditEvent of any other shape (one a trusted client stored, an older event) keeps its
``idx_token`` rows, and a search matches both (``search.compiler``).

Each token row (parameter ``P``, system ``S``, code ``C``, display ``D``) gives the terms that
the criteria of search.html#token test for exactly, so that a criterion is one string lookup:

- ``P``: the parameter has a value (``:missing``);
- ``P`` FS ``C``: ``[parameter]=[code]``, any system;
- ``P`` RS ``S`` RS ``C``: ``[system]|[code]`` (``S`` empty: ``|[code]``, no system);
- ``P`` RS ``S`` RS: ``[system]|``, any code;
- ``P`` GS ``D``: ``:text``, matched as the generic index matches its ``display`` column.

(FS, RS, GS: the ASCII separators 0x1F, 0x1E, 0x1D, which no system, code or display the
gateway writes holds: ``terms_of`` refuses an event with one, which the generic index then
takes.) Sorting by a token parameter reads the ``P`` FS ``C`` terms.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from sqlalchemy import ColumnElement, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean, String

from fhir_gateway.kit.lru import Lru

FS, RS, GS = "\x1f", "\x1e", "\x1d"


class Unfit(ValueError):
    """A value holds a separator: the event's tokens go to the generic index."""


_SEPARATOR = re.compile(f"[{FS}{RS}{GS}]")


def terms_of(tokens: list[dict[str, Any]]) -> str:
    """The JSON array of terms of an event's token index rows (``search.indexing`` rows:
    ``param``, ``system``, ``code``, ``display``); ``Unfit`` if a value cannot be a term.

    Events of the same kind of request have the same token values: their terms are made once."""
    values = tuple(
        (row["param"], row.get("system") or "", row.get("code"), row.get("display")) for row in tokens
    )
    return _terms.get_or_build(values, lambda: _terms_of(values))


_terms: Lru[str] = Lru(1024)


def _terms_of(tokens: tuple[tuple[str, str, str | None, str | None], ...]) -> str:
    terms: dict[str, None] = {}  # ordered, without repeats
    values: list[str] = []
    for param, system, code, display in tokens:
        prefix = f"{param}{RS}{system}{RS}"
        terms[param] = terms[prefix] = None
        values += (param, system)
        if code is not None:
            terms[f"{param}{FS}{code}"] = terms[prefix + code] = None
            values.append(code)
        if display:
            terms[f"{param}{GS}{display}"] = None
            values.append(display)
    if _SEPARATOR.search("".join(values)):
        raise Unfit(values)
    return orjson.dumps(list(terms)).decode()


def code_term(
    param: str, code: ColumnElement[Any] | None, system: ColumnElement[Any] | None, *, no_system: bool
) -> ColumnElement[Any]:
    """The term a token criterion looks for: ``code`` and ``system`` are the criterion's bound
    values (None: not given), ``no_system`` its ``|code`` form (search.html#token)."""
    if system is None and not no_system:
        return literal(param) if code is None else literal(param + FS) + code
    prefix: ColumnElement[Any] = literal(param + RS)
    if system is not None:
        prefix = prefix + system
    prefix = prefix + literal(RS)
    return prefix if code is None else prefix + code


class _TermsTest(ColumnElement[bool]):
    """A condition on the terms of column ``terms``: ``value`` is one of them (``has``), or one
    of them is LIKE ``value`` whatever the case (``like``); compiled per dialect below."""

    __visit_name__ = "audit_terms_test"
    inherit_cache = True
    _traverse_internals = [
        ("kind", InternalTraversal.dp_string),
        ("terms", InternalTraversal.dp_clauseelement),
        ("value", InternalTraversal.dp_clauseelement),
    ]
    type = Boolean()

    def __init__(self, kind: str, terms: Any, value: ColumnElement[Any]) -> None:
        self.kind = kind
        self.terms = terms
        self.value = value


class _MinCode(ColumnElement[str]):
    """The least (``greatest``: the greatest) code of parameter ``param`` in column ``terms``."""

    __visit_name__ = "audit_terms_min_code"
    inherit_cache = True
    _traverse_internals = [
        ("param", InternalTraversal.dp_string),
        ("greatest", InternalTraversal.dp_boolean),
        ("terms", InternalTraversal.dp_clauseelement),
        ("prefix", InternalTraversal.dp_clauseelement),
    ]
    type = String()

    def __init__(self, terms: Any, param: str, greatest: bool) -> None:
        self.param = param
        self.greatest = greatest
        self.terms = terms
        self.prefix = literal(param + FS)


def has_term(terms: Any, term: ColumnElement[Any]) -> ColumnElement[bool]:
    """``term`` is one of the strings of the JSON array in column ``terms``."""
    return _TermsTest("has", terms, term)


def text_match(terms: Any, param: str, pattern: ColumnElement[Any]) -> ColumnElement[bool]:
    """A display of ``param`` matches the ``:text`` LIKE ``pattern`` case-insensitively."""
    return _TermsTest("like", terms, literal(param + GS) + pattern)


def min_code(terms: Any, param: str, *, greatest: bool = False) -> ColumnElement[Any]:
    """The least (``greatest``: the greatest) code of ``param`` among ``terms`` (``_sort``)."""
    return _MinCode(terms, param, greatest)


def _elements(terms: str, dialect: str) -> str:
    """The FROM item of the strings of JSON array ``terms``, as rows of ``term.value``."""
    if dialect == "postgresql":
        return f"jsonb_array_elements_text(CAST({terms} AS JSONB)) AS term(value)"
    return f"json_each({terms}) AS term"


@compiles(_TermsTest)
def _terms_test(element: _TermsTest, compiler: SQLCompiler, **kw: Any) -> str:
    terms = compiler.process(element.terms, **kw)
    value = compiler.process(element.value, **kw)
    dialect = compiler.dialect.name
    if element.kind == "has":
        if dialect == "postgresql":  # an index-free test of the array's strings, no set to build
            return f"jsonb_exists(CAST({terms} AS JSONB), {value})"
        test = f"term.value = {value}"
    elif dialect == "postgresql":  # as the generic index matches ``display`` (search.compiler)
        test = f"term.value ILIKE {value} ESCAPE '\\'"
    else:
        test = f"lower(term.value) LIKE lower({value}) ESCAPE '\\'"
    return f"EXISTS (SELECT 1 FROM {_elements(terms, dialect)} WHERE {test})"


@compiles(_MinCode)
def _min_code(element: _MinCode, compiler: SQLCompiler, **kw: Any) -> str:
    terms = compiler.process(element.terms, **kw)
    prefix = compiler.process(element.prefix, **kw)
    agg, length = "max" if element.greatest else "min", len(element.param) + 1
    return (
        f"(SELECT {agg}(substr(term.value, {length + 1})) FROM {_elements(terms, compiler.dialect.name)}"
        f" WHERE substr(term.value, 1, {length}) = {prefix})"
    )
