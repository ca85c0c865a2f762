"""Paging positions of searches, histories and operations, as cursors bound to the client.

FHIR R4 search.html#paging: the server decides what a paging link holds. Links replay the
query in the clear with ``_cursor`` (``kit.cursor``: HMAC-signed client id, query digest,
offset and issue time), except those to the first page: the query alone is that page. A
cursor is only good for the client it was issued to (another client: 403), for the query it
came with (400) and for ``paging_cursor_ttl_seconds`` (410).

Clients do not send ``_offset``: a search treats it as an unknown parameter (ignored with a
warning, or 400 under ``Prefer: handling=strict``), so do ``$everything`` and the worklists;
a history refuses it (400), as a history Bundle has no place for a warning. Internal pagers
(``fhir.collect``, ``mapping.exporter``) set ``SearchRequest.offset`` themselves.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit.cursor import PARAM, CursorIssuer, open_cursor, query_digest
from fhir_gateway.kit.errors import BadRequest, Issue

OFFSET = "_offset"
OFFSET_ADVICE = "page with the Bundle's next/previous links (their _cursor)"


def open_page(
    ctx: Ctx, scope: str, params: Iterable[tuple[str, str]], cursor: str | None = None
) -> tuple[int, CursorIssuer]:
    """The offset the request's cursor points at (0 without one) and the issuer of its links' cursors.

    ``scope`` is the URL of the links without their query; ``params`` the parameters the links
    replay; ``cursor`` the ``_cursor`` given (else taken from ``params``).
    """
    items = list(params)
    if cursor is None:
        given = [value for name, value in items if name == PARAM]
        if len(given) > 1:
            raise BadRequest(f"{PARAM} may be given once", expression=[PARAM])
        cursor = given[0] if given else None
    key = ctx.paging_key
    now = _now()
    offset, digest = 0, None
    if cursor:
        digest = query_digest(key, scope, items)
        offset = open_cursor(
            key,
            cursor,
            client_id=ctx.access.client_id,
            digest=digest,
            now=now,
            ttl=ctx.settings.paging_cursor_ttl_seconds,
        )
    return offset, CursorIssuer(key, ctx.access.client_id, scope, items, now, digest)


def _now() -> int:
    return int(time.time())


def offset_warnings(params: Iterable[tuple[str, str]], *, strict: bool) -> list[Issue]:
    """``_offset`` from a client: a warning to put in the answer, or 400 under strict handling."""
    if not any(name == OFFSET for name, _ in params):
        return []
    if strict:
        raise BadRequest(f"{OFFSET} is not accepted; {OFFSET_ADVICE}", expression=[OFFSET])
    return [
        Issue(
            "warning", "not-supported", f"{OFFSET} is not accepted and was ignored; {OFFSET_ADVICE}", [OFFSET]
        )
    ]


def refuse_offset(params: Iterable[tuple[str, str]]) -> None:
    """``_offset`` on a history: 400 (a history Bundle cannot carry the warning)."""
    offset_warnings(params, strict=True)
