"""``POST /fhir``: batch and transaction Bundles (FHIR R4 http.html#transaction)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from fhir_gateway.fhir.bundles import EntryRequest, parse_entries, run_entry, run_transaction
from fhir_gateway.fhir.endpoints import Access, Body, unit_for
from fhir_gateway.fhir.requests import parse_resource
from fhir_gateway.fhir.responses import json_response
from fhir_gateway.kit.errors import FhirError

router = APIRouter()


def _minimal(request: Request) -> bool:
    return "return=minimal" in (request.headers.get("prefer") or "").replace(" ", "")


@router.post("/fhir")
@router.post("/fhir/")
def batch_or_transaction(request: Request, access: Access, body: Body) -> Response:
    """Process a batch or transaction Bundle; answer the matching response Bundle."""
    bundle = parse_resource(request, body)
    settings = request.app.state.settings
    kind, entries = parse_entries(bundle, settings.max_bundle_entries)
    base = settings.fhir_base
    if kind == "transaction":
        with unit_for(request, access, write=True) as ctx:
            responses = run_transaction(ctx, entries, base, _minimal(request))
    else:
        responses = [_batch_entry(request, access, entry, base) for entry in entries]
    return json_response({"resourceType": "Bundle", "type": f"{kind}-response", "entry": responses})


def _batch_entry(request: Request, access: Access, entry: EntryRequest, base: str) -> dict[str, Any]:
    """One batch entry in its own transaction; a failure becomes that entry's outcome."""
    try:
        with unit_for(request, access, write=entry.method != "GET") as ctx:
            return run_entry(ctx, entry, base, _minimal(request))
    except FhirError as exc:
        return {"response": {"status": str(exc.status), "outcome": exc.outcome()}}
