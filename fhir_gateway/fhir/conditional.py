"""Finding the targets of conditional interactions (FHIR R4 http.html#ccreate, #cond-update).

``find_matches`` answers one query; ``token_query`` and ``find_token_matches`` answer many
``param=system|code`` queries (business identifiers) in one round trip, with the same
visibility filter, for the partner imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import parse_qsl

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit.errors import BadRequest, FhirError
from fhir_gateway.search.model import Criterion, SearchRequest, Value
from fhir_gateway.search.parser import parse_search
from fhir_gateway.search.registry import param as param_of
from fhir_gateway.search.shape import compartment_ids
from fhir_gateway.storage import repository
from fhir_gateway.storage.audit_refs import AUDIT_EVENT
from fhir_gateway.storage.repository import StoredRow
from fhir_gateway.storage.search_repository import find_by_tokens, find_ids, find_with_references


def _request(res_type: str, query: str) -> SearchRequest:
    items = parse_qsl(query.lstrip("?").split("?", 1)[-1], keep_blank_values=True)
    if not items:
        raise BadRequest(f"The condition '{query[:80]}' has no search parameter")
    return parse_search(res_type, items, default_count=2, max_count=2, strict=True)


def find_matches(ctx: Ctx, res_type: str, query: str) -> list[StoredRow]:
    """The current rows matching ``query`` (at most 2: the caller only needs 0, 1 or many)."""
    request = _request(res_type, query)
    rows = []
    for found_type, found_id in find_ids(ctx.conn, request, ctx, 2):
        row = repository.get_current(ctx.conn, found_type, found_id)
        if row is not None:
            rows.append(row)
    return rows


class TokenQuery(NamedTuple):
    """A query that is exactly ``param=system|code`` on a token parameter (search.html#token);
    a named tuple (made, hashed and compared in C: an import makes several per row)."""

    res_type: str
    param: str
    system: str
    code: str


def token_query(res_type: str, query: str) -> TokenQuery | None:
    """``query`` as a TokenQuery, or None when it is any other kind of search."""
    try:
        request = _request(res_type, query)
    except FhirError:
        return None
    if request.ids or request.has or len(request.criteria) != 1:
        return None
    criterion = request.criteria[0]
    if (
        criterion.param.type != "token"
        or criterion.modifier is not None
        or criterion.chain is not None
        or criterion.missing is not None
        or len(criterion.values) != 1
    ):
        return None
    value = criterion.values[0]
    if not value.system or value.code is None:
        return None
    return TokenQuery(res_type, criterion.param.code, value.system, value.code)


def find_token_matches(
    ctx: Ctx, res_type: str, param: str, system: str, codes: Sequence[str], *, for_update: bool
) -> dict[str, list[StoredRow]]:
    """The rows matching ``param=system|code`` for each of ``codes``, as ``find_matches`` would
    answer each query (``for_update``: locked until the transaction ends)."""
    found: dict[str, list[StoredRow]] = {code: [] for code in codes}
    for code, row in find_by_tokens(
        ctx.conn, res_type, param, system, codes, ctx.visible, for_update=for_update
    ):
        rows = found.setdefault(code, [])
        if all(r.res_id != row.res_id for r in rows):
            rows.append(row)
    return found


# (type, reference parameter, the query's other criteria): queries of one group differ only in
# the one value of that parameter, and are answered together.
Group = tuple[str, str, tuple[Criterion, ...]]
_GROUP_SIZE = 500  # reference targets asked in one query


def reference_group(res_type: str, query: str) -> tuple[Group, Value] | None:
    """``query``'s group and its value when it is ``param=Type/id`` on a reference parameter
    (plain, one value) plus any criteria without chains; None otherwise (and for AuditEvents,
    whose references are not index rows on PostgreSQL: ``storage.audit_refs``)."""
    if res_type == AUDIT_EVENT:
        return None
    try:
        request = _request(res_type, query)
    except FhirError:
        return None
    if request.ids or request.has:
        return None
    plain = [
        c
        for c in request.criteria
        if c.param.type == "reference"
        and c.modifier is None
        and c.chain is None
        and c.missing is None
        and len(c.values) == 1
        and c.values[0].target_type
        and c.values[0].target_id
        and "://" not in c.values[0].raw
        and not (c.values[0].code and "://" in c.values[0].code)
    ]
    if len(plain) != 1 or any(c.chain is not None for c in request.criteria):
        return None
    varying = plain[0]
    others = tuple(c for c in request.criteria if c is not varying)
    return (res_type, varying.param.code, others), varying.values[0]


def find_reference_matches(ctx: Ctx, group: Group, values: dict[str, Value]) -> dict[str, list[StoredRow]]:
    """The rows each query of ``group`` (by text, with its value) matches, as ``find_matches``
    would answer it but with every match: the rows matching the other criteria that hold one
    of the references asked (``find_with_references``; ``compiler._reference`` for
    ``Type/id``), told apart by reference, and by person where the parameter is the patient
    compartment (``search.shape.compartment_ids``)."""
    res_type, code, others = group
    ref_param = param_of(res_type, code)
    assert ref_param is not None
    request = SearchRequest(res_type, criteria=list(others))
    by_type: dict[str, list[str]] = {}
    for value in values.values():
        assert value.target_type is not None
        assert value.target_id is not None
        by_type.setdefault(value.target_type, []).append(value.target_id)
    held: dict[tuple[str, str], dict[str, StoredRow]] = {}
    for target_type, ids in by_type.items():
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _GROUP_SIZE):
            part = unique[start : start + _GROUP_SIZE]
            for target_id, row in find_with_references(
                ctx.conn, request, code, target_type, part, ctx.visible
            ):
                held.setdefault((target_type, target_id), {})[row.res_id] = row
    found: dict[str, list[StoredRow]] = {}
    for text, value in values.items():
        assert value.target_type is not None
        assert value.target_id is not None
        rows = held.get((value.target_type, value.target_id), {})
        persons = compartment_ids(res_type, Criterion(ref_param, None, (value,)))
        found[text] = [r for r in rows.values() if persons is None or r.patient_id in persons]
    return found
