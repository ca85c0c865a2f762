"""Finding the targets of conditional interactions (FHIR R4 http.html#ccreate, #cond-update).

``find_matches`` answers one query; ``token_query`` and ``find_token_matches`` answer many
``param=system|code`` queries (business identifiers) in one round trip, with the same
visibility filter, for the partner imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit.errors import BadRequest, FhirError
from fhir_gateway.search.model import SearchRequest
from fhir_gateway.search.parser import parse_search
from fhir_gateway.storage import repository
from fhir_gateway.storage.repository import StoredRow
from fhir_gateway.storage.search_repository import find_by_tokens, find_ids


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


@dataclass(frozen=True, slots=True)
class TokenQuery:
    """A query that is exactly ``param=system|code`` on a token parameter (search.html#token)."""

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
