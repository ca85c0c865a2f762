"""searchset Bundles built by operations (``$everything``, worklists): stored JSON spliced in.

FHIR R4 bundle.html#searchset and search.html#paging: ``total``, ``self``/``first``/
``previous``/``next``/``last`` links that replay the operation with ``_count`` and a
``_cursor`` bound to the client (``fhir.cursors``), entries with ``search.mode`` (match,
include, outcome). Stored JSON text is sent as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.cursors import OFFSET, offset_warnings, open_page
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.cursor import PARAM, CursorIssuer
from fhir_gateway.kit.errors import BadRequest, Issue, operation_outcome
from fhir_gateway.kit.query_string import urlencode


@dataclass(frozen=True)
class PageEntry:
    """One entry: the stored resource text and how it came in."""

    res_type: str
    res_id: str
    content: str
    mode: str = "match"
    search_extension: tuple[dict[str, Any], ...] = ()


@dataclass
class Paging:
    """The page of an answer (``_count``, the cursor's offset) and the parameters that replay it."""

    url: str  # the operation's URL without query, e.g. http://x/fhir/Patient/1/$everything
    kept: list[tuple[str, str]]
    count: int
    offset: int
    cursors: CursorIssuer
    warnings: list[Issue] = field(default_factory=list)  # ``_offset`` ignored


def int_param(params: dict[str, str], name: str, default: int, maximum: int) -> int:
    """A non-negative integer parameter, at most ``maximum`` (400 when malformed)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, not '{raw[:40]}'", expression=[name])
    return min(int(raw), maximum)


def paging(ctx: Ctx, url: str, params: dict[str, str], *, strict: bool = False) -> Paging:
    """The paging of an operation at ``url`` called with ``params`` (the others kept for the links)."""
    warnings = offset_warnings(params.items(), strict=strict)
    kept = [(k, v) for k, v in params.items() if k not in ("_count", OFFSET, PARAM)]
    count = int_param(params, "_count", ctx.settings.default_count, ctx.settings.max_count)
    offset, cursors = open_page(ctx, url, kept, params.get(PARAM))
    return Paging(url, kept, count, offset, cursors, warnings)


def paging_links(p: Paging, total: int | None, matched: int) -> list[dict[str, str]]:
    """self, first, previous, next and last links that replay the same request, each with its
    cursor (FHIR R4 search.html#paging; ``last`` when the total is known). A link to the first
    page is the query alone: its position needs no cursor, nor the query a digest."""

    query = urlencode([*p.kept, ("_count", str(p.count))])  # the same in every link
    made: dict[int, str] = {}  # self and first are one link on the first page

    def url(offset: int) -> str:
        found = made.get(offset)
        if found is None:
            # a cursor is base64url text and a dot: nothing to escape in a query string
            position = f"&{PARAM}={p.cursors.cursor(offset)}" if offset else ""
            found = made[offset] = f"{p.url}?{query}{position}"
        return found

    links = [{"relation": "self", "url": url(p.offset)}]
    if p.count <= 0:
        return links
    links.append({"relation": "first", "url": url(0)})
    if p.offset > 0:
        links.append({"relation": "previous", "url": url(max(0, p.offset - p.count))})
    if matched == p.count and (total is None or p.offset + p.count < total):
        links.append({"relation": "next", "url": url(p.offset + p.count)})
    if total is not None:
        links.append({"relation": "last", "url": url(max(0, total - 1) // p.count * p.count)})
    return links


def searchset(
    base: str,
    p: Paging,
    entries: list[PageEntry],
    total: int | None,
    *,
    warnings: list[Issue] | None = None,
) -> bytes:
    """The Bundle JSON of one page (``entries`` in order, matches counted for paging)."""
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        head["total"] = total
    head["link"] = paging_links(p, total, sum(1 for e in entries if e.mode == "match"))
    parts = []
    for e in entries:
        search: dict[str, Any] = {"mode": e.mode}
        if e.search_extension:
            search["extension"] = list(e.search_extension)
        parts.append(
            b'{"fullUrl":'
            + jsonutil.dumps(f"{base}/{e.res_type}/{e.res_id}")
            + b',"resource":'
            + e.content.encode()
            + b',"search":'
            + jsonutil.dumps(search)
            + b"}"
        )
    warnings = [*p.warnings, *(warnings or [])]
    if warnings:
        outcome = jsonutil.dumps(operation_outcome(warnings))
        parts.append(b'{"resource":' + outcome + b',"search":{"mode":"outcome"}}')
    return jsonutil.dumps(head)[:-1] + b',"entry":[' + b",".join(parts) + b"]}"
