"""``POST /fhir``: batch and transaction Bundles (FHIR R4 http.html#transaction)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from fhir_gateway.fhir.bundles import EntryRequest, parse_entries, run_entry, run_transaction
from fhir_gateway.fhir.endpoints import Access, Body, run_in_unit
from fhir_gateway.fhir.lean_route import LeanRoute
from fhir_gateway.fhir.requests import parse_resource
from fhir_gateway.fhir.responses import json_response
from fhir_gateway.kit.errors import FhirError

router = APIRouter(route_class=LeanRoute)  # FastAPI's dependency solver skipped


def _minimal(request: Request) -> bool:
    return "return=minimal" in (request.headers.get("prefer") or "").replace(" ", "")


@router.post("/fhir")
@router.post("/fhir/")
async def batch_or_transaction(request: Request, access: Access, body: Body) -> Response:
    """Process a batch or transaction Bundle; answer the matching response Bundle."""
    bundle = parse_resource(request, body)
    settings = request.app.state.settings
    kind, entries = parse_entries(bundle, settings.max_bundle_entries)
    base = settings.fhir_base
    if kind == "transaction":
        minimal = _minimal(request)
        responses = await run_in_unit(
            request, access, lambda ctx: run_transaction(ctx, entries, base, minimal), write=True
        )
    else:
        responses = [await _batch_entry(request, access, entry, base) for entry in entries]
    return json_response({"resourceType": "Bundle", "type": f"{kind}-response", "entry": responses})


async def _batch_entry(request: Request, access: Access, entry: EntryRequest, base: str) -> dict[str, Any]:
    """One batch entry in its own transaction; a failure becomes that entry's outcome."""
    minimal = _minimal(request)
    try:
        return await run_in_unit(
            request, access, lambda ctx: run_entry(ctx, entry, base, minimal), write=entry.method != "GET"
        )
    except FhirError as exc:
        return {"response": {"status": str(exc.status), "outcome": exc.outcome()}}
