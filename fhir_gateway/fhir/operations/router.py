"""Routes of the FHIR operations (``$name``); one module per operation beside this one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from fhir_gateway.fhir.endpoints import Access, Body, run_in_unit
from fhir_gateway.fhir.requests import parse_resource, read_csv_body
from fhir_gateway.fhir.resource_types import require_stored_type
from fhir_gateway.fhir.responses import json_response
from fhir_gateway.kit.errors import BadRequest

router = APIRouter(prefix="/fhir")


@router.get("/Patient/{patient_id}/$access")
async def patient_access(patient_id: str, request: Request, access: Access) -> Response:
    """Explain the consent decision for an actor on this person (issue 4, ``$access``)."""
    from fhir_gateway.fhir.operations.access import access_operation

    actor = request.query_params.get("actor")
    if not actor:
        raise BadRequest("$access needs an 'actor' parameter such as Organization/123", expression=["actor"])
    purpose = request.query_params.get("purpose") or request.app.state.settings.default_purpose_of_use
    res_type = request.query_params.get("type")
    policy = request.app.state.settings.consent_default_policy
    result = await run_in_unit(
        request,
        access,
        lambda ctx: access_operation(ctx.conn, access, patient_id, actor, purpose, res_type, policy=policy),
        write=False,
    )
    return json_response(result)


@router.post("/{res_type}/$validate")
async def validate_type(res_type: str, request: Request, access: Access, body: Body) -> Response:
    """Validate the body's resource (FHIR R4 resource-operation-validate.html, type level)."""
    from fhir_gateway.fhir.operations import validate

    require_stored_type(res_type)
    resource = parse_resource(request, body) if body else None
    profiles = request.query_params.getlist("profile")
    mode = request.query_params.get("mode")
    result = await run_in_unit(
        request,
        access,
        lambda ctx: validate.validate_type(ctx, res_type, resource, profiles, mode),
        write=False,
    )
    return json_response(result)


@router.api_route("/{res_type}/{res_id}/$validate", methods=["GET", "POST"])
async def validate_instance(
    res_type: str, res_id: str, request: Request, access: Access, body: Body
) -> Response:
    """Validate a stored resource, or the body's resource for it (instance level)."""
    from fhir_gateway.fhir.operations import validate

    require_stored_type(res_type)
    resource = parse_resource(request, body) if body else None
    profiles = request.query_params.getlist("profile")
    mode = request.query_params.get("mode")
    result = await run_in_unit(
        request,
        access,
        lambda ctx: validate.validate_instance(ctx, res_type, res_id, resource, profiles, mode),
        write=False,
    )
    return json_response(result)


@router.post("/$import-partner")
async def import_partner(
    request: Request, access: Access, body: Annotated[bytes, Depends(read_csv_body)]
) -> Response:
    """Import a partner file (issue 5, ``$import-partner``)."""
    from fhir_gateway.fhir.operations.partner_import import import_partner as run

    return await run(request, access, body)


@router.get("/$export-partner")
async def export_partner(request: Request, access: Access) -> Response:
    """Export a partner file (issue 5, ``$export-partner``)."""
    from fhir_gateway.fhir.operations.partner_export import export_partner as run

    return await run(request, access)
