"""Finding the targets of conditional interactions (FHIR R4 http.html#ccreate, #cond-update)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit.errors import BadRequest
from fhir_gateway.search.parser import parse_search
from fhir_gateway.storage import repository
from fhir_gateway.storage.repository import StoredRow
from fhir_gateway.storage.search_repository import find_ids


def find_matches(ctx: Ctx, res_type: str, query: str) -> list[StoredRow]:
    """The current rows matching ``query`` (at most 2: the caller only needs 0, 1 or many)."""
    items = parse_qsl(query.lstrip("?").split("?", 1)[-1], keep_blank_values=True)
    if not items:
        raise BadRequest(f"The condition '{query[:80]}' has no search parameter")
    request = parse_search(res_type, items, default_count=2, max_count=2, strict=True)
    rows = []
    for found_type, found_id in find_ids(ctx.conn, request, ctx.visible, 2):
        row = repository.get_current(ctx.conn, found_type, found_id)
        if row is not None:
            rows.append(row)
    return rows
