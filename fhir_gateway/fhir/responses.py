"""HTTP responses of the FHIR REST API (FHIR R4 http.html#return, #versioning).

Stored JSON text is sent as it is: no re-parse on the read path. Headers: ETag
``W/"<version>"``, Last-Modified, Location ``<base>/<type>/<id>/_history/<version>``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import Issue, operation_outcome
from fhir_gateway.kit.timeutil import http_date
from fhir_gateway.storage.repository import StoredRow

FHIR_JSON_UTF8 = "application/fhir+json; charset=utf-8"


def fhir_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, headers=headers, media_type=FHIR_JSON_UTF8)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return fhir_response(jsonutil.dumps(obj), status, headers)


def version_headers(row: StoredRow, base: str, *, location: bool = False) -> dict[str, str]:
    headers = {"ETag": f'W/"{row.version}"', "Last-Modified": http_date(row.last_updated_utc)}
    if location:
        headers["Location"] = f"{base}/{row.res_type}/{row.res_id}/_history/{row.version}"
    return headers


def resource_response(row: StoredRow, base: str) -> Response:
    """A read or vread: the stored text with its version headers."""
    assert row.content is not None
    return fhir_response(row.content.encode(), 200, version_headers(row, base))


def write_response(row: StoredRow, status: int, base: str, prefer: str | None) -> Response:
    """Create/update answers honouring ``Prefer: return=`` (FHIR R4 http.html#ops)."""
    headers = version_headers(row, base, location=True)
    preference = _return_preference(prefer)
    if preference == "minimal":
        return Response(status_code=status, headers=headers)
    if preference == "OperationOutcome":
        outcome = operation_outcome(
            [
                Issue(
                    "information",
                    "informational",
                    f"{row.res_type}/{row.res_id} version {row.version} stored",
                )
            ]
        )
        return json_response(outcome, status, headers)
    assert row.content is not None
    return fhir_response(row.content.encode(), status, headers)


def _return_preference(prefer: str | None) -> str:
    if not prefer:
        return "representation"
    for part in prefer.split(","):
        for item in part.split(";"):
            key, _, value = item.strip().partition("=")
            if key.strip().lower() == "return":
                return value.strip().strip('"')
    return "representation"


def strict_handling(prefer: str | None) -> bool:
    """``Prefer: handling=strict`` (FHIR R4 search.html#errors)."""
    return bool(prefer) and "handling=strict" in (prefer or "").replace(" ", "").lower()
