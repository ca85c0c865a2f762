"""FHIR REST routes under ``/fhir`` (FHIR R4 http.html): parse the request, call the service.

No logic here: each route opens the request's unit of work with the caller's
AccessContext, calls one service function and renders its result.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.dependency import require_access
from fhir_gateway.fhir import reads, searching, writes
from fhir_gateway.fhir.context import Ctx, unit_of_work
from fhir_gateway.fhir.history_bundle import history_bundle
from fhir_gateway.fhir.requests import parse_if_match, parse_resource, read_body, read_form_body
from fhir_gateway.fhir.resource_types import require_stored_type
from fhir_gateway.fhir.responses import fhir_response, resource_response, write_response
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import MethodNotAllowed

router = APIRouter(prefix="/fhir")


def limited_access(
    request: Request, access: Annotated[AccessContext, Depends(require_access)]
) -> AccessContext:
    """The caller's AccessContext, after its request-rate check (429 above the limit)."""
    request.state.client_id = access.client_id
    request.app.state.rate_limiter.check(access.client_id)
    return access


Access = Annotated[AccessContext, Depends(limited_access)]
Body = Annotated[bytes, Depends(read_body)]
FormBody = Annotated[bytes, Depends(read_form_body)]


def _unit(request: Request, access: AccessContext, *, write: bool) -> AbstractContextManager[Ctx]:
    state = request.app.state
    return unit_of_work(
        state.database, state.settings, access, write=write, audit_sink=state.audit_writer.submit
    )


def _base(request: Request) -> str:
    return str(request.app.state.settings.fhir_base)


@router.get("/_history")
def system_history(request: Request, access: Access) -> Response:
    params = dict(request.query_params)
    with _unit(request, access, write=False) as ctx:
        page = reads.history(ctx, None, None, params)
    return fhir_response(history_bundle(page, _base(request), "/_history", params))


@router.get("/{res_type}/_history")
def type_history(res_type: str, request: Request, access: Access) -> Response:
    require_stored_type(res_type)
    params = dict(request.query_params)
    with _unit(request, access, write=False) as ctx:
        page = reads.history(ctx, res_type, None, params)
    return fhir_response(history_bundle(page, _base(request), f"/{res_type}/_history", params))


@router.get("/{res_type}/{res_id}/_history")
def instance_history(res_type: str, res_id: str, request: Request, access: Access) -> Response:
    require_stored_type(res_type)
    params = dict(request.query_params)
    with _unit(request, access, write=False) as ctx:
        page = reads.history(ctx, res_type, res_id, params)
    path = f"/{res_type}/{res_id}/_history"
    return fhir_response(history_bundle(page, _base(request), path, params))


@router.get("/{res_type}/{res_id}/_history/{version}")
def vread(res_type: str, res_id: str, version: str, request: Request, access: Access) -> Response:
    require_stored_type(res_type)
    with _unit(request, access, write=False) as ctx:
        row = reads.vread(ctx, res_type, res_id, version)
    return resource_response(row, _base(request))


@router.get("/{res_type}/{res_id}")
def read(res_type: str, res_id: str, request: Request, access: Access) -> Response:
    require_stored_type(res_type)
    with _unit(request, access, write=False) as ctx:
        row = reads.read(ctx, res_type, res_id)
    return resource_response(row, _base(request))


@router.get("/{res_type}")
def search_get(res_type: str, request: Request, access: Access) -> Response:
    require_stored_type(res_type)
    items = list(request.query_params.multi_items())
    return _search(request, access, res_type, items)


@router.post("/{res_type}/_search")
def search_post(res_type: str, request: Request, access: Access, body: FormBody) -> Response:
    require_stored_type(res_type)
    items = list(request.query_params.multi_items()) + parse_qsl(body.decode(), keep_blank_values=True)
    return _search(request, access, res_type, items)


def _search(request: Request, access: AccessContext, res_type: str, items: list[tuple[str, str]]) -> Response:
    with _unit(request, access, write=False) as ctx:
        body = searching.search(ctx, res_type, items, request.headers.get("prefer"), _base(request))
    return fhir_response(body)


@router.post("/{res_type}")
def create(
    res_type: str,
    request: Request,
    access: Access,
    body: Body,
    if_none_exist: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    require_stored_type(res_type)
    resource = parse_resource(request, body)
    with _unit(request, access, write=True) as ctx:
        result = writes.create(ctx, res_type, resource, if_none_exist)
    return write_response(result.row, 201 if result.created else 200, _base(request), prefer)


@router.put("/{res_type}/{res_id}")
def update(
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
    with _unit(request, access, write=True) as ctx:
        result = writes.update(ctx, res_type, res_id, resource, parse_if_match(if_match))
    return write_response(result.row, 201 if result.created else 200, _base(request), prefer)


@router.put("/{res_type}")
def conditional_update(
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
    with _unit(request, access, write=True) as ctx:
        result = writes.conditional_update(ctx, res_type, query, resource, parse_if_match(if_match))
    return write_response(result.row, 201 if result.created else 200, _base(request), prefer)


@router.patch("/{res_type}/{res_id}")
def patch(
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
    with _unit(request, access, write=True) as ctx:
        result = writes.patch(ctx, res_type, res_id, operations, parse_if_match(if_match))
    return write_response(result.row, 200, _base(request), prefer)


@router.delete("/{res_type}/{res_id}")
def delete(res_type: str, res_id: str, request: Request, access: Access) -> Response:
    require_stored_type(res_type)
    with _unit(request, access, write=True) as ctx:
        writes.delete(ctx, res_type, res_id)
    return Response(status_code=204)


def unit_for(request: Request, access: AccessContext, *, write: bool) -> AbstractContextManager[Ctx]:
    """The unit of work for other routers (bundles, operations)."""
    return _unit(request, access, write=write)


__all__ = ["Ctx", "router", "unit_for"]
