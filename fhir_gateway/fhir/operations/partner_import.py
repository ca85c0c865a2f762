"""``POST /fhir/$import-partner?format=F&organization=Organization/ID`` (issue 5).

The body is a partner file (``text/csv``) of a format of ``mappings/``
(partner-formats/README.md). It is imported with the caller's token: its scopes and the
consent of each person apply to every write, as for the REST API (DESIGN.md, Mapping).
``organization`` defaults to the client's own and must be it unless the client is trusted.

Parameters: ``format`` (required), ``organization``, ``dry-run`` (true: check and roll
back), ``partial`` (true: keep the good rows, report the bad ones), ``encoding`` (force
utf-8 or windows-1252). The answer is an OperationOutcome (FHIR R4 operationoutcome.html)
with one issue per problem (line, column, value, reason) and an information issue and
extensions with the counts: 200 when imported (or checked, in a dry run), 422 when the file
is refused and nothing was written. An import that wrote ``analyze_after_rows`` resources or
more refreshes the planner's statistics before answering (``storage.statistics``).
"""

from __future__ import annotations

import io

from fastapi import Request
from starlette.responses import Response

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.fhir.endpoints import run_in_unit
from fhir_gateway.fhir.responses import json_response
from fhir_gateway.kit.errors import BadRequest
from fhir_gateway.mapping.importer import DryRunDone, ImportOptions, ImportRefused
from fhir_gateway.mapping.report import FileRefused, Summary
from fhir_gateway.mapping.service import find_format, import_file
from fhir_gateway.mapping.spec import Format
from fhir_gateway.storage.statistics import refresh_statistics

_TRUE = {"true", "1", "yes"}


def flag(request: Request, name: str) -> bool:
    """A boolean query parameter (``true``/``false``)."""
    value = request.query_params.get(name, "false").lower()
    if value not in _TRUE | {"false", "0", "no"}:
        raise BadRequest(f"'{name}' must be true or false", expression=[name])
    return value in _TRUE


def format_and_organization(request: Request, access: AccessContext, direction: str) -> tuple[Format, str]:
    """The ``format`` (declared for ``direction``) and the ``organization`` (default: the
    caller's) of ``$import-partner`` / ``$export-partner``; 400 naming the missing one."""
    operation = f"${direction}-partner"
    name = request.query_params.get("format")
    if not name:
        raise BadRequest(f"{operation} needs a 'format' parameter", expression=["format"])
    fmt = find_format(request.app.state.settings, name, direction)
    organization = request.query_params.get("organization") or access.organization
    if not organization:
        raise BadRequest(f"{operation} needs an 'organization' parameter", expression=["organization"])
    return fmt, organization


async def import_partner(request: Request, access: AccessContext, body: bytes) -> Response:
    """Run the import; see the module docstring."""
    fmt, organization = format_and_organization(request, access, "import")
    options = ImportOptions(
        partial=flag(request, "partial"),
        dry_run=flag(request, "dry-run"),
        encoding=request.query_params.get("encoding"),
    )
    try:
        summary: Summary = await run_in_unit(
            request,
            access,
            lambda ctx: import_file(ctx, fmt, io.BytesIO(body), organization, options),
            write=True,
        )
    except DryRunDone as done:
        return json_response(done.summary.outcome(), 200)
    except ImportRefused as refused:
        return json_response(refused.summary.outcome(), 422)
    except FileRefused as refused:
        summary = Summary(fmt.name, problems=refused.problems)
        return json_response(summary.outcome(), 422)
    state = request.app.state
    if summary.stored() >= state.settings.analyze_after_rows:  # committed: the planner learns of it
        await state.database.run(refresh_statistics)
    return json_response(summary.outcome(), 200)
