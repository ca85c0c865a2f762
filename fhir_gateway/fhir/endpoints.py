"""FHIR REST routes under ``/fhir`` (FHIR R4 http.html): parse the request, call the service.

No logic here: each route opens the request's unit of work with the caller's
AccessContext, calls one service function and renders its result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.dependency import require_access
from fhir_gateway.fhir import reads, searching, writes
from fhir_gateway.fhir.context import Ctx, run_unit
from fhir_gateway.fhir.history_bundle import history_bundle
from fhir_gateway.fhir.lean_route import LeanRoute
from fhir_gateway.fhir.requests import parse_if_match, parse_resource, read_body, read_form_body
from fhir_gateway.fhir.resource_types import require_stored_type
from fhir_gateway.fhir.responses import fhir_response, resource_response, write_response
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import MethodNotAllowed
from fhir_gateway.kit.query_string import parse_pairs
from fhir_gateway.search.indexing import patient_compartment_id

# GET interactions take (request, path params) and call ``limited_access`` themselves, so
# that ``LeanRoute`` serves them without FastAPI's dependency solver.
router = APIRouter(prefix="/fhir", route_class=LeanRoute)
T = TypeVar("T")


async def limited_access(request: Request) -> AccessContext:
    """The caller's AccessContext, after its request-rate check (429 above the limit)."""
    access = await require_access(request)
    request.state.client_id = access.client_id
    request.app.state.rate_limiter.check(access.client_id)
    return access


Access = Annotated[AccessContext, Depends(limited_access)]
Body = Annotated[bytes, Depends(read_body)]
FormBody = Annotated[bytes, Depends(read_form_body)]


async def run_in_unit(
    request: Request,
    access: AccessContext,
    work: Callable[[Ctx], T],
    *,
    write: bool,
    brief: bool = False,
    write_probe: tuple[str, str | None] | None = None,
    single_write: bool = False,
) -> T:
    """``work(ctx)`` in the request's unit of work (``fhir.context.run_unit``); ``brief``: a read
    of one REST interaction, bounded by its page (``_count``), not an operation's; ``write_probe``:
    the type and person of the write ``work`` checks first; ``single_write``: ``work`` writes one
    resource, as its last statement (``Ctx.single_write``)."""
    state = request.app.state
    return await run_unit(
        state.database,
        state.settings,
        access,
        work,
        write=write,
        audit_sink=state.audit_writer.submit,
        cursor_key=await state.paging_key.load(),
        brief=brief,
        write_probe=write_probe,
        single_write=single_write,
    )


def _base(request: Request) -> str:
    return str(request.app.state.settings.fhir_base)


@router.get("/_history")
async def system_history(request: Request) -> Response:
    access = await limited_access(request)
    params = dict(request.query_params)
    page = await run_in_unit(
        request, access, lambda ctx: reads.history(ctx, None, None, params), write=False, brief=True
    )
    return fhir_response(history_bundle(page, _base(request)))


@router.get("/{res_type}/_history")
async def type_history(request: Request, res_type: str) -> Response:
    access = await limited_access(request)
    require_stored_type(res_type)
    params = dict(request.query_params)
    page = await run_in_unit(
        request, access, lambda ctx: reads.history(ctx, res_type, None, params), write=False, brief=True
    )
    return fhir_response(history_bundle(page, _base(request)))


@router.get("/{res_type}/{res_id}/_history")
async def instance_history(request: Request, res_type: str, res_id: str) -> Response:
    access = await limited_access(request)
    require_stored_type(res_type)
    params = dict(request.query_params)
    page = await run_in_unit(
        request, access, lambda ctx: reads.history(ctx, res_type, res_id, params), write=False, brief=True
    )
    return fhir_response(history_bundle(page, _base(request)))


@router.get("/{res_type}/{res_id}/_history/{version}")
async def vread(request: Request, res_type: str, res_id: str, version: str) -> Response:
    access = await limited_access(request)
    require_stored_type(res_type)
    row = await run_in_unit(
        request, access, lambda ctx: reads.vread(ctx, res_type, res_id, version), write=False, brief=True
    )
    return resource_response(row, _base(request))


@router.get("/{res_type}/{res_id}")
async def read(request: Request, res_type: str, res_id: str) -> Response:
    access = await limited_access(request)
    require_stored_type(res_type)
    row = await run_in_unit(
        request, access, lambda ctx: reads.read(ctx, res_type, res_id), write=False, brief=True
    )
    return resource_response(row, _base(request))


@router.get("/{res_type}")
async def search_get(request: Request, res_type: str) -> Response:
    access = await limited_access(request)
    require_stored_type(res_type)
    items = parse_pairs(request.scope["query_string"])
    return await _search(request, access, res_type, items)


@router.post("/{res_type}/_search")
async def search_post(res_type: str, request: Request, access: Access, body: FormBody) -> Response:
    require_stored_type(res_type)
    items = parse_pairs(request.scope["query_string"]) + parse_qsl(body.decode(), keep_blank_values=True)
    return await _search(request, access, res_type, items)


async def _search(
    request: Request, access: AccessContext, res_type: str, items: list[tuple[str, str]]
) -> Response:
    body = await run_in_unit(
        request,
        access,
        lambda ctx: searching.search(ctx, res_type, items, request.headers.get("prefer"), _base(request)),
        write=False,
        brief=True,
    )
    return fhir_response(body)


@router.post("/{res_type}")
async def create(
    res_type: str,
    request: Request,
    access: Access,
    body: Body,
    if_none_exist: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    require_stored_type(res_type)
    resource = parse_resource(request, body)
    result = await run_in_unit(
        request,
        access,
        lambda ctx: writes.create(ctx, res_type, resource, if_none_exist),
        write=True,
        write_probe=(res_type, patient_compartment_id(resource)),
        single_write=if_none_exist is None,  # a conditional create searches under a lock first
    )
    return write_response(result.row, 201 if result.created else 200, _base(request), prefer)


@router.put("/{res_type}/{res_id}")
async def update(
    res_type: str,
    res_id: str,
    request: Request,
    access: Access,
    body: Body,
    if_match: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    require_stored_type(res_type)
    resource = parse_resource(request, body)
    expected = parse_if_match(if_match)
    result = await run_in_unit(
        request,
        access,
        lambda ctx: writes.update(ctx, res_type, res_id, resource, expected),
        write=True,
        write_probe=(res_type, patient_compartment_id(resource)),
    )
    return write_response(result.row, 201 if result.created else 200, _base(request), prefer)


@router.put("/{res_type}")
async def conditional_update(
    res_type: str,
    request: Request,
    access: Access,
    body: Body,
    if_match: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    require_stored_type(res_type)
    resource = parse_resource(request, body)
    query = request.url.query
    if not query:
        raise MethodNotAllowed("PUT on a type needs search criteria (conditional update) or an id")
    expected = parse_if_match(if_match)
    result = await run_in_unit(
        request,
        access,
        lambda ctx: writes.conditional_update(ctx, res_type, query, resource, expected),
        write=True,
    )
    return write_response(result.row, 201 if result.created else 200, _base(request), prefer)


@router.patch("/{res_type}/{res_id}")
async def patch(
    res_type: str,
    res_id: str,
    request: Request,
    access: Access,
    body: Body,
    if_match: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    require_stored_type(res_type)
    operations = jsonutil.loads(body) if body else None
    expected = parse_if_match(if_match)
    result = await run_in_unit(
        request, access, lambda ctx: writes.patch(ctx, res_type, res_id, operations, expected), write=True
    )
    return write_response(result.row, 200, _base(request), prefer)


@router.delete("/{res_type}/{res_id}")
async def delete(res_type: str, res_id: str, request: Request, access: Access) -> Response:
    require_stored_type(res_type)
    await run_in_unit(request, access, lambda ctx: writes.delete(ctx, res_type, res_id), write=True)
    return Response(status_code=204)


__all__ = ["Ctx", "router", "run_in_unit"]
