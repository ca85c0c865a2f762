"""Routes of the FHIR operations (``$name``); one module per operation beside this one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import FileResponse, Response

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.exports.files import remove_job_files
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.endpoints import Access, Body, run_in_unit
from fhir_gateway.fhir.requests import parse_resource, read_csv_body
from fhir_gateway.fhir.resource_types import require_stored_type
from fhir_gateway.fhir.responses import fhir_response, json_response
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import BadRequest, Issue, operation_outcome
from fhir_gateway.kit.timeutil import http_date

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


@router.get("/Patient/{patient_id}/$everything")
async def patient_everything(patient_id: str, request: Request, access: Access) -> Response:
    """The person's record, consent-filtered and paged (FHIR R4 patient-operation-everything.html)."""
    from fhir_gateway.fhir.operations.everything import everything

    params = dict(request.query_params)
    base = str(request.app.state.settings.fhir_base)
    prefer = request.headers.get("prefer")
    body = await run_in_unit(
        request, access, lambda ctx: everything(ctx, patient_id, params, base, prefer), write=False
    )
    return fhir_response(body)


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


async def _kick_off(request: Request, access: AccessContext, level: str, group_id: str | None) -> Response:
    from fhir_gateway.fhir.operations.export import KickOff, kick_off

    k = KickOff(
        params=list(request.query_params.multi_items()),
        prefer=request.headers.get("prefer", ""),
        accept=request.headers.get("accept"),
        url=str(request.url),
        break_glass=access.break_glass is not None,
    )
    job_id = await run_in_unit(request, access, lambda ctx: kick_off(ctx, level, group_id, k), write=True)
    status_url = f"{request.app.state.settings.fhir_base}/$export-status/{job_id}"
    outcome = operation_outcome([Issue("information", "informational", f"Export job {job_id} accepted")])
    return json_response(outcome, 202, {"Content-Location": status_url})


@router.get("/$export")
async def export_system(request: Request, access: Access) -> Response:
    """Bulk export of everything the client may see (Bulk Data IG v2, system level)."""
    return await _kick_off(request, access, "system", None)


@router.get("/Patient/$export")
async def export_patients(request: Request, access: Access) -> Response:
    """Bulk export of the persons' compartments the client may see (Bulk Data IG v2, patient level)."""
    return await _kick_off(request, access, "patient", None)


@router.get("/Group/{group_id}/$export")
async def export_group(group_id: str, request: Request, access: Access) -> Response:
    """Bulk export of the compartments of a Group's members (Bulk Data IG v2, group level)."""
    return await _kick_off(request, access, "group", group_id)


@router.get("/$export-status/{job_id}")
async def export_status(job_id: str, request: Request, access: Access) -> Response:
    """Progress (202), manifest (200) or failure (500) of an export job of this client."""
    from fhir_gateway.fhir.operations.export import manifest, owned_job

    found = await run_in_unit(request, access, lambda ctx: owned_job(ctx, job_id), write=False)
    if found.status == "completed":
        headers = {"Expires": http_date(found.expires_at.replace(tzinfo=UTC))} if found.expires_at else {}
        body = jsonutil.dumps(manifest(found, str(request.app.state.settings.fhir_base)))
        return Response(body, 200, headers, media_type="application/json")
    if found.status == "failed":
        outcome = operation_outcome([Issue("error", "exception", f"The export failed: {found.error}")])
        return json_response(outcome, 500)
    progress = found.progress or ("waiting for a worker" if found.status == "accepted" else "started")
    return Response(status_code=202, headers={"X-Progress": progress[:100], "Retry-After": "2"})


@router.delete("/$export-status/{job_id}")
async def export_cancel(job_id: str, request: Request, access: Access) -> Response:
    """Cancel an export job of this client and drop its files (202)."""
    from fhir_gateway.fhir.operations.export import cancel

    await run_in_unit(request, access, lambda ctx: cancel(ctx, job_id), write=True)
    remove_job_files(request.app.state.settings.export_path, job_id)
    outcome = operation_outcome([Issue("information", "informational", f"Export job {job_id} cancelled")])
    return json_response(outcome, 202)


@router.get("/$export-file/{job_id}/{name}")
async def export_file(job_id: str, name: str, request: Request, access: Access) -> Response:
    """One NDJSON file of an export job, for the client that started it."""
    from fhir_gateway.fhir.operations.export import NDJSON, job_file

    folder = request.app.state.settings.export_path
    path = await run_in_unit(request, access, lambda ctx: job_file(ctx, job_id, name, folder), write=False)
    return FileResponse(path, media_type=NDJSON)


# A worklist (issue 8, ``fhir.operations.worklists``) from the query parameters, the Prefer
# header and the base URL of links: a searchset Bundle.
Worklist = Callable[[Ctx, dict[str, str], str | None, str], bytes]


async def _worklist(request: Request, access: AccessContext, run: Worklist) -> Response:
    params, base = dict(request.query_params), str(request.app.state.settings.fhir_base)
    prefer = request.headers.get("prefer")
    body = await run_in_unit(request, access, lambda ctx: run(ctx, params, prefer, base), write=False)
    return fhir_response(body)


@router.get("/Task/$late")
async def late_tasks(request: Request, access: Access) -> Response:
    """Worklist: the owner's late Tasks (issue 8, ``fhir.operations.worklists``)."""
    from fhir_gateway.fhir.operations.worklists import late_tasks as run

    return await _worklist(request, access, lambda ctx, params, prefer, base: run(ctx, params, base, prefer))


@router.get("/Task/$orientations-waiting")
async def orientations_waiting(request: Request, access: Access) -> Response:
    """Worklist: orientation decisions without admission after N days."""
    from fhir_gateway.fhir.operations.worklists import orientations_waiting as run

    return await _worklist(request, access, run)


@router.get("/Task/$open-alerts")
async def open_alerts(request: Request, access: Access) -> Response:
    """Worklist: vigilance alerts not handled yet."""
    from fhir_gateway.fhir.operations.worklists import open_alerts as run

    return await _worklist(request, access, run)


@router.get("/Patient/$follow-up-gaps")
async def follow_up_gaps(request: Request, access: Access) -> Response:
    """Worklist: people whose plan has expired or who have no coordinator."""
    from fhir_gateway.fhir.operations.worklists import follow_up_gaps as run

    return await _worklist(request, access, lambda ctx, params, prefer, base: run(ctx, params, base, prefer))


@router.get("/Measure/activity-indicators")
async def activity_measure(request: Request, access: Access) -> Response:
    """The Measure of the activity indicators (``profiles/Measure/activity-indicators.json``)."""
    from fhir_gateway.fhir.operations.indicators import measure_definition

    return fhir_response(measure_definition())


@router.get("/Measure/activity-indicators/$evaluate-measure")
async def activity_indicators(request: Request, access: Access) -> Response:
    """The activity of a period as a MeasureReport, or CSV (issue 8)."""
    from fhir_gateway.fhir.operations.indicators import as_csv, evaluate, wants_csv

    params = dict(request.query_params)
    report, found = await run_in_unit(request, access, lambda ctx: evaluate(ctx, params), write=False)
    if wants_csv(params, request.headers.get("accept")):
        headers = {"Content-Disposition": 'attachment; filename="activity-indicators.csv"'}
        return Response(as_csv(report, found), media_type="text/csv; charset=utf-8", headers=headers)
    return json_response(report)
