"""Every match of a FHIR search, read page by page under the caller's filter.

For operations that apply a business rule the search language cannot say (a Task's due
date in ``restriction.period``, a CareTeam's current coordinator) to candidates found by an
ordinary search: the candidates come from ``search.parser`` and ``storage.search_repository``
with the caller's visibility filter (scopes and consent in SQL, DESIGN.md), so the rule only
ever narrows what the caller may see; paging and totals are then computed on the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit import jsonutil
from fhir_gateway.search.parser import parse_search
from fhir_gateway.storage.search_repository import execute_search

PAGE = 500
CHUNK = 100  # values OR-ed in one parameter when searching by many ids


def all_matches(ctx: Ctx, res_type: str, items: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Every resource of ``res_type`` matching ``items`` that the caller may see (``_id`` order)."""
    ctx.require_scope(res_type, "s")
    offset = 0
    while True:
        page = [*items, ("_sort", "_id"), ("_count", str(PAGE))]
        request = parse_search(res_type, page, default_count=PAGE, max_count=PAGE, strict=True)
        request.offset = offset  # internal paging: no cursor, no client-given _offset
        request.total = "none"
        result = execute_search(ctx.conn, request, ctx, 0)
        for _type, _id, content, _person in result.matches:
            yield jsonutil.loads(content)
        if len(result.matches) < PAGE:
            return
        offset += PAGE


def by_ids(
    ctx: Ctx, res_type: str, param: str, refs: list[str], items: list[tuple[str, str]]
) -> Iterator[dict[str, Any]]:
    """``all_matches`` with ``param`` one of ``refs`` (searched ``CHUNK`` at a time)."""
    for i in range(0, len(refs), CHUNK):
        yield from all_matches(ctx, res_type, [*items, (param, ",".join(refs[i : i + CHUNK]))])
