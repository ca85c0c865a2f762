"""Liveness and readiness probes (open without a token)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.responses import JSONResponse

from fhir_gateway.storage.migrate import is_current

router = APIRouter(prefix="/health")


@router.get("/live")
def live() -> JSONResponse:
    """The process answers."""
    return JSONResponse({"status": "ok"})


@router.get("/ready")
def ready(request: Request) -> JSONResponse:
    """The database answers and its schema is at the newest migration (a replica started
    before ``fhir-gateway migrate`` ran, or an older image, is not ready)."""
    database = request.app.state.database
    if not database.ping():
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    try:
        current = is_current(database)
    except (OperationalError, DBAPIError):
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    if not current:
        return JSONResponse({"status": "unavailable", "database": "migrations pending"}, status_code=503)
    return JSONResponse({"status": "ok"})
