"""Search interactions (FHIR R4 http.html#search): parse, run under the caller's filter,
and answer a ``searchset`` Bundle spliced from the stored JSON text.

The page comes from the request's ``_cursor`` (``fhir.cursors``: bound to the client and to
the query), never from a client's ``_offset``.
"""

from __future__ import annotations

from typing import Any

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.cursors import OFFSET, OFFSET_ADVICE, open_page
from fhir_gateway.fhir.pages import Paging, paging_links
from fhir_gateway.fhir.responses import strict_handling
from fhir_gateway.fhir.subsetting import subset
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import Issue, operation_outcome
from fhir_gateway.search.model import SearchRequest
from fhir_gateway.search.parser import parse_search
from fhir_gateway.search.shape import compartment_ids
from fhir_gateway.storage.audit_refs import AUDIT_EVENT
from fhir_gateway.storage.search_repository import SearchResult, execute_search


def parse(ctx: Ctx, res_type: str, items: list[tuple[str, str]], prefer: str | None) -> SearchRequest:
    settings = ctx.settings
    return parse_search(
        res_type,
        items,
        default_count=settings.default_count,
        max_count=settings.max_count,
        strict=strict_handling(prefer),
    )


def search(ctx: Ctx, res_type: str, items: list[tuple[str, str]], prefer: str | None, base: str) -> bytes:
    """The searchset Bundle for ``items`` on ``res_type``."""
    ctx.require_scope(res_type, "s")
    request = parse(ctx, res_type, items, prefer)
    paging = _paging(ctx, request, base)
    request.offset = paging.offset
    result = execute_search(ctx.conn, request, ctx, ctx.settings.max_include)
    ctx.rows_returned(len(result.matches))
    result.included = [row for row in result.included if ctx.access.allows(row[0], "r")]
    ctx.audit_people("search-type", res_type, persons_of(request, result), query=tuple(request.kept))
    return searchset(request, result, paging, base)


def persons_of(request: SearchRequest, result: SearchResult) -> list[str | None]:
    """The persons whose trail shows a search (``Ctx.audit_people``): those its matches and
    includes are about, then those it names (its person criteria, ``patient``, ``subject``…
    ``=Patient/id``, and a ``Patient?_id=``'s), who see it even when it answered nothing of
    theirs (none stored, or their consent hid it): IHE BALP's PatientQuery records the requested
    person when no result is returned. Included AuditEvents name no one (``Ctx.audit_people``)."""
    rows = (row for found in (result.matches, result.included) for row in found if row[0] != AUDIT_EVENT)
    named = [i for c in request.criteria for i in compartment_ids(request.resource_type, c) or ()]
    if request.resource_type == "Patient":
        named += [i for ids in request.ids for i in ids]
    return [*(row[3] for row in rows), *named]


def _paging(ctx: Ctx, request: SearchRequest, base: str) -> Paging:
    """The page the request's cursor points at, and the parameters its links replay."""
    url = f"{base}/{request.resource_type}"
    kept = [(k, v) for k, v in request.kept if k != "_count"]
    offset, cursors = open_page(ctx, url, kept, request.cursor or "")
    return Paging(url, kept, request.count, offset, cursors)


_MODE_ENDS = {mode: b',"search":{"mode":"' + mode.encode() + b'"}}' for mode in ("match", "include")}


def searchset(request: SearchRequest, result: SearchResult, paging: Paging, base: str) -> bytes:
    """Bundle JSON with stored resources spliced in (no re-parse unless subsetting), joined
    once: each entry is ``{"fullUrl":..,"resource":..,"search":{"mode":..}}`` (bundle.html#searchset)."""
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        head["total"] = result.total
    head["link"] = paging_links(paging, result.total, len(result.matches))
    parts = [jsonutil.dumps(head)[:-1], b',"entry":[']
    subsetting = bool(request.summary or request.elements)
    for mode, rows in (("match", result.matches), ("include", result.included)):
        end = _MODE_ENDS[mode]
        for res_type, res_id, content, _person in rows:
            if subsetting:
                body = jsonutil.dumps(subset(jsonutil.loads(content), request.summary, request.elements))
            else:
                body = content.encode()
            full_url = jsonutil.dumps(f"{base}/{res_type}/{res_id}")
            parts += (b'{"fullUrl":', full_url, b',"resource":', body, end, b",")
    if request.ignored:
        outcome = operation_outcome([_ignored(name) for name in request.ignored])
        parts += (b'{"resource":', jsonutil.dumps(outcome), b',"search":{"mode":"outcome"}}', b",")
    if parts[-1] == b",":
        parts.pop()
    parts.append(b"]}")
    return b"".join(parts)


def _ignored(name: str) -> Issue:
    if name == OFFSET:
        return Issue(
            "warning", "not-supported", f"{OFFSET} is not accepted and was ignored; {OFFSET_ADVICE}", [name]
        )
    return Issue("warning", "not-supported", f"Unknown search parameter '{name}' was ignored", [name])
