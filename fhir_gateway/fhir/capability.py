"""``GET /fhir/metadata``: the CapabilityStatement, generated from what is implemented.

FHIR R4 capabilitystatement.html and http.html#capabilities. Interactions per type come
from the resource type table; search parameters from the registry the server indexes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from fhir_gateway import __version__
from fhir_gateway.fhir.resource_types import APPEND_ONLY_TYPES, STORED_TYPES
from fhir_gateway.fhir.responses import fhir_response
from fhir_gateway.kit import jsonutil
from fhir_gateway.search.registry import params_for
from fhir_gateway.validation.registry import registry

router = APIRouter(prefix="/fhir")

_ALL = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
_APPEND_ONLY = ["read", "vread", "history-instance", "history-type", "create", "search-type"]
_OAUTH = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_VALIDATE = {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
# Operations of one resource type (beside $validate, on every type)
_BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
_TYPE_OPERATIONS: dict[str, list[dict[str, str]]] = {
    "Patient": [
        {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
        {"name": "export", "definition": f"{_BULK}/patient-export"},
        {"name": "access", "definition": "urn:fhir-gateway:OperationDefinition/Patient-access"},
        {
            "name": "follow-up-gaps",
            "definition": "urn:fhir-gateway:OperationDefinition/Patient-follow-up-gaps",
        },
    ],
    "Group": [{"name": "export", "definition": f"{_BULK}/group-export"}],
    "Task": [
        {"name": name, "definition": f"urn:fhir-gateway:OperationDefinition/Task-{name}"}
        for name in ("late", "orientations-waiting", "open-alerts")
    ],
}


def _reference_params(res_type: str) -> list[str]:
    return sorted(f"{res_type}:{code}" for code, p in params_for(res_type).items() if p.type == "reference")


def _rev_includes(res_type: str) -> list[str]:
    out = []
    for source in sorted(STORED_TYPES):
        for code, p in params_for(source).items():
            if p.type == "reference" and (res_type in p.targets or not p.targets):
                out.append(f"{source}:{code}")
    return out


def _resource(res_type: str) -> dict[str, Any]:
    interactions = _APPEND_ONLY if res_type in APPEND_ONLY_TYPES else _ALL
    supported = sorted(p.url for p in registry().profiles.values() if p.type == res_type)
    return {
        "type": res_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{res_type}",
        **({"supportedProfile": supported} if supported else {}),
        "interaction": [{"code": c} for c in interactions],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": res_type not in APPEND_ONLY_TYPES,
        "conditionalCreate": True,
        "conditionalUpdate": res_type not in APPEND_ONLY_TYPES,
        "conditionalDelete": "not-supported",
        "searchInclude": _reference_params(res_type),
        "searchRevInclude": _rev_includes(res_type),
        "operation": [_VALIDATE, *_TYPE_OPERATIONS.get(res_type, [])],
        "searchParam": [
            {
                "name": code,
                "type": p.type,
                "definition": f"http://hl7.org/fhir/SearchParameter/{res_type}-{code}",
            }
            for code, p in sorted(params_for(res_type).items())
        ],
    }


def _paging_documentation(cursor_ttl: int) -> str:
    """How paging works here (rest.documentation): links with a cursor bound to the client."""
    return (
        "Paging (search, history, $everything, worklists): follow the Bundle's self, first, previous, "
        "next and last links as given. They replay the query with `_count` and an opaque `_cursor` "
        "bound to the client that ran it and to the query: another client gets 403, an altered "
        f"cursor or one moved to another query 400, a cursor older than {cursor_ttl} s 410. "
        "`_offset` is not accepted: an unknown parameter of searches and operations (ignored with "
        "a warning, 400 under `Prefer: handling=strict`), a 400 on histories. A search's full page "
        "carries `total` and a `last` link only with `_total=accurate` or `_total=estimate`; a page "
        "that is not full always carries its total."
    )


@cache
def _statement(base_url: str, cursor_ttl: int) -> bytes:
    base = base_url.rstrip("/")
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-24",
        "publisher": "fhir-gateway",
        "kind": "instance",
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "software": {"name": "fhir-gateway", "version": __version__},
        "implementation": {"description": "fhir-gateway care-pathway coordination", "url": f"{base}/fhir"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": _paging_documentation(cursor_ttl),
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": _OAUTH,
                            "extension": [
                                {"url": "token", "valueUri": f"{base}/auth/token"},
                                {"url": "introspect", "valueUri": f"{base}/auth/introspect"},
                            ],
                        }
                    ],
                },
                "resource": [_resource(t) for t in sorted(STORED_TYPES)],
                "interaction": [{"code": c} for c in ("transaction", "batch", "history-system")],
                "operation": [
                    {"name": "export", "definition": f"{_BULK}/export"},
                    {
                        "name": "evaluate-measure",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
                    },
                    {"name": "access", "definition": "urn:fhir-gateway:OperationDefinition/Patient-access"},
                    {
                        "name": "validate",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                    },
                ],
            }
        ],
    }
    return jsonutil.dumps(statement)


@router.get("/metadata")
def metadata(request: Request) -> Response:
    """The CapabilityStatement (open without a token, http.html#capabilities)."""
    settings = request.app.state.settings
    return fhir_response(_statement(settings.base_url, settings.paging_cursor_ttl_seconds))
