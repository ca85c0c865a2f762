"""Liveness and readiness probes (open without a token)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.responses import JSONResponse

from fhir_gateway.storage.migrate import schema_state

router = APIRouter(prefix="/health")


@router.get("/live")
def live() -> JSONResponse:
    """The process answers."""
    return JSONResponse({"status": "ok"})


@router.get("/ready")
def ready(request: Request) -> JSONResponse:
    """The database answers and its schema is at this code's newest migration: a replica
    started before ``fhir-gateway migrate`` ran is not ready (``migrations pending``), nor is
    one of the previous release once a newer one has migrated (``schema newer than this server``)."""
    database = request.app.state.database
    if not database.ping():
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    try:
        state = schema_state(database)
    except (OperationalError, DBAPIError):
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    if state != "current":
        reason = "migrations pending" if state == "pending" else "schema newer than this server"
        return JSONResponse({"status": "unavailable", "database": reason}, status_code=503)
    return JSONResponse({"status": "ok"})
