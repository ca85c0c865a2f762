"""A resource's token values on its own row (``resource.tokens``), for searches of one person.

A search of one person's rows (``Task?patient=…&status=requested,accepted``: FHIR R4
search.html#token with a compartment criterion) reads that person's rows by their own index and
tests the other criteria on each of them (``search.compiler``, ``WhereShape.per_row``). Through
``idx_token`` that test is an index probe per row: on PostgreSQL more than a third of the
search's own time. The same test on a text of the row, already read, costs no probe: each
resource keeps its token values in ``resource.tokens`` (migration 0014), written with its index
rows by the same write, and a person's search looks for its value there.

Each ``idx_token`` row of parameter ``P``, system ``S`` and code ``C`` gives the terms that the
criteria of search.html#token test for exactly (the encoding of ``search.audit_terms``):

- ``P`` FS ``C``: ``[parameter]=[code]``, any system;
- ``P`` RS ``S`` RS ``C``: ``[system]|[code]``, and ``|[code]`` when ``S`` is empty (no system);
- ``P`` RS ``S`` RS, for a row with a system and no code: ``[system]|`` finds it as the prefix of
  a term, as it finds the terms of the system's codes.

``tokens`` is the terms each between two FILE SEPARATORs (0x1C), so that a criterion is one
substring test: ``strpos``, or SQLite's ``instr``. A resource whose values hold one of the
separators 0x1C–0x1F, an empty system or code, or a value that is not text (nothing the
validation lets through) gets no ``tokens`` (NULL), as do rows stored before migration 0014
that it did not fill; a search tests the index rows of those, as before. ``:text``,
``:missing`` and a code-less criterion other than ``[system]|`` test the index rows too.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, case, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from fhir_gateway.search.audit_terms import FS, GS, RS
from fhir_gateway.search.shape import NULL

TS = "\x1c"  # between two terms
_SEPARATORS = re.compile(f"[{TS}{FS}{RS}{GS}]")


def tokens_of(rows: dict[str, list[dict[str, Any]]]) -> str | None:
    """``resource.tokens`` of a resource with the index rows ``rows`` (``extract_index_rows``);
    None when one of its token values cannot be a term (its searches test the index rows)."""
    terms: list[str] = []
    values: list[str] = []
    for row in rows.get("token", ()):
        param, system, code = row["param"], row["system"], row["code"]
        if code is not None:
            terms += (f"{param}{FS}{code}", f"{param}{RS}{system or ''}{RS}{code}")
            values.append(code)
        elif system is not None:
            terms.append(f"{param}{RS}{system}{RS}")
        if system is not None:
            values.append(system)
    if not terms:
        return TS
    if not all(type(v) is str and v for v in values) or _SEPARATORS.search("".join(values)):
        return None
    return TS + TS.join(terms) + TS


def plain(value_shape: tuple[Any, ...]) -> bool:
    """Whether ``value_shape`` (``search.shape``: ``("token", code, system)``) is a value the
    terms answer: a code (with any, a given or no system), or a system with any code."""
    if value_shape[0] != "token":
        return False
    _, code, system = value_shape
    return code is not None or (system is not None and system != NULL)


def holds(tokens: Any, term: ColumnElement[Any], *, whole: bool) -> ColumnElement[bool]:
    """``tokens`` holds ``term`` (``audit_terms.code_term`` of the criterion's bound values);
    ``whole``: as a whole term, otherwise as the start of one (``[system]|``, any code). A term
    holding 0x1C (from a searched value) could reach across two stored terms: it finds nothing,
    as no stored value holds one."""
    needle = literal(TS) + term + literal(TS) if whole else literal(TS) + term
    return and_(_Position(tokens, needle) > 0, _Position(term, literal(TS)) == 0)


def with_index_fallback(
    tokens: Any, in_row: ColumnElement[bool], in_index: ColumnElement[bool]
) -> ColumnElement[bool]:
    """``in_row`` for a row with ``tokens``, ``in_index`` (the index rows' test) for one without
    (a CASE: the index rows are read for those rows only)."""
    return case((tokens.is_(None), in_index), else_=in_row)


class _Position(FunctionElement[int]):
    """Where ``needle`` starts in ``text`` (1-based), 0 when it is not there."""

    name = "strpos"
    inherit_cache = True
    type = Integer()


@compiles(_Position)
def _position(element: _Position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


@compiles(_Position, "sqlite")
def _position_sqlite(element: _Position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"
