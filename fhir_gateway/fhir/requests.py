"""Reading FHIR request bodies and headers (FHIR R4 http.html#mime-type, #concurrency)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request

from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from fhir_gateway.search.dates import parse_date_range

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json-patch+json")


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 above the configured size, 415 unless JSON."""
    return await _read(request, _JSON_TYPES)


async def read_form_body(request: Request) -> bytes:
    """A search's form body (FHIR R4 http.html#search: POST [type]/_search)."""
    return await _read(request, ("application/x-www-form-urlencoded",))


async def read_csv_body(request: Request) -> bytes:
    """A partner file (``$import-partner``): ``text/csv``, within the configured size."""
    return await _read(request, ("text/csv", "application/csv", "text/plain"))


async def _read(request: Request, accepted: tuple[str, ...]) -> bytes:
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    json_ok = accepted is _JSON_TYPES and content_type.endswith("+json")
    if body and content_type not in accepted and not json_ok:
        raise UnsupportedMediaType(
            f"Content-Type '{content_type or '(none)'}' is not supported here; send {accepted[0]}"
        )
    return body


def parse_resource(request: Request, body: bytes) -> dict[str, Any]:
    """The body as a JSON object, within the configured nesting depth."""
    if not body:
        raise BadRequest("The request has no body; a FHIR resource is expected", code="required")
    return jsonutil.loads_object(body, request.app.state.settings.max_json_depth)


def parse_if_match(value: str | None) -> int | None:
    """``If-Match: W/"3"`` -> 3 (FHIR R4 http.html#concurrency)."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise BadRequest(f"If-Match '{value[:40]}' is not a version ETag such as W/\"3\"")
    return int(text)


def parse_instant(name: str, value: str | None) -> datetime | None:
    """A FHIR instant/dateTime parameter (``_since``, ``_at``) as naive UTC, its lower bound (FHIR R4
    search.html#date); absent or empty: None; malformed: 400 naming the parameter."""
    if not value:
        return None
    try:
        low, _high = parse_date_range(value)
    except ValueError:
        raise BadRequest(f"{name}: '{value[:60]}' is not a FHIR instant", expression=[name]) from None
    return low
