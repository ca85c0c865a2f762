"""``GET /fhir/$export-partner?format=F[&organization=Organization/ID][&since=YYYY-MM-DD]`` (issue 5).

The partner file of a format of ``mappings/`` (partner-formats/README.md), in its dialect
(encoding, separator, line ending), read with the caller's token: only what its scopes and
the persons' consent let it see is exported. ``organization`` defaults to the client's own
and must be it unless the client is trusted; ``since`` keeps resources changed since that
day (``_lastUpdated=ge``).
"""

from __future__ import annotations

import io
from datetime import date

from fastapi import Request
from starlette.responses import Response

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.fhir.endpoints import run_in_unit
from fhir_gateway.fhir.operations.partner_import import format_and_organization
from fhir_gateway.kit.errors import BadRequest
from fhir_gateway.mapping.csvio import ENCODINGS
from fhir_gateway.mapping.exporter import write_rows
from fhir_gateway.mapping.service import export_file


async def export_partner(request: Request, access: AccessContext) -> Response:
    """Run the export; see the module docstring."""
    fmt, organization = format_and_organization(request, access, "export")
    since_text = request.query_params.get("since")
    try:
        since = date.fromisoformat(since_text) if since_text else None
    except ValueError:
        raise BadRequest("'since' must be YYYY-MM-DD", expression=["since"]) from None
    rows = await run_in_unit(
        request, access, lambda ctx: export_file(ctx, fmt, organization, since), write=False
    )
    out = io.BytesIO()
    write_rows(fmt, rows, out)
    charset = ENCODINGS.get(fmt.dialect.export_encoding, fmt.dialect.export_encoding).replace("-sig", "")
    headers = {"Content-Disposition": f'attachment; filename="{fmt.name}.csv"'}
    return Response(out.getvalue(), media_type=f"text/csv; charset={charset}", headers=headers)
