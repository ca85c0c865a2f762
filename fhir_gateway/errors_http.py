"""One handler renders every error as an OperationOutcome (FHIR R4 operationoutcome.html).

No stack trace or SQL ever reaches a client: unexpected exceptions are logged with the
request id and answered with a generic 500 OperationOutcome.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from fhir_gateway.fhir.responses import json_response
from fhir_gateway.kit.errors import FhirError, Issue, operation_outcome
from fhir_gateway.storage.faults import refused_value, storage_refusal

log = logging.getLogger("fhir_gateway.errors")

_HTTP_CODES = {404: "not-found", 405: "not-supported", 401: "login", 403: "forbidden", 413: "too-costly"}


def _outcome(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(operation_outcome([Issue("error", code, message)]), status, headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(FhirError)
    async def _fhir_error(_request: Request, exc: FhirError) -> Response:
        return json_response(exc.outcome(), exc.status, exc.headers or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail) if exc.detail else "HTTP error"
        if exc.status_code == 404:
            message = "No such endpoint on this FHIR server"
        elif exc.status_code == 405:
            message = "This interaction is not supported on this URL"
        return _outcome(
            exc.status_code,
            _HTTP_CODES.get(exc.status_code, "processing"),
            message,
            dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:5]]
        return _outcome(400, "invalid", "Invalid request: " + "; ".join(parts))

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, exc: OperationalError) -> Response:
        log.error("database unavailable: %s", type(exc.orig).__name__ if exc.orig else "unknown")
        refusal = storage_refusal(exc)
        return _outcome(
            503,
            "transient",
            refusal or "The database is not available; try again shortly",
            {"Retry-After": "5"},
        )

    @app.exception_handler(DBAPIError)
    async def _db_error(_request: Request, exc: DBAPIError) -> Response:
        if refused_value(exc):
            # invalid input for the database (a NUL character, a number out of range...): the
            # client's value, not the server, is at fault; the SQL stays in the log only
            refused = type(exc.orig).__name__ if exc.orig else "unknown"
            log.warning("value refused by the database: %s", refused)
            return _outcome(
                400,
                "invalid",
                "A value in the request cannot be stored or compared (invalid character or out of range)",
            )
        refusal = storage_refusal(exc)
        if refusal is not None:  # read-only or full storage: the operator must know, clients retry
            log.error("database refuses writes: %s", refusal)
            return _outcome(503, "transient", refusal, {"Retry-After": "30"})
        if exc.connection_invalidated:  # the connection was lost (server restart, session ended)
            log.error("database connection lost: %s", type(exc.orig).__name__ if exc.orig else "unknown")
            return _outcome(
                503, "transient", "The database is not available; try again shortly", {"Retry-After": "5"}
            )
        log.exception("database error")
        return _outcome(500, "exception", "The server could not complete the request (database error)")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return _outcome(500, "exception", "The server could not complete the request (internal error)")
