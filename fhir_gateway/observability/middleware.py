"""A pure ASGI middleware: request id, one access log line per request.

The request id comes from ``X-Request-ID`` when the caller sends a sane one, else a new
one (32 hex digits: 16 drawn at random per process, then a counter; a UUID per request cost
a system call and an object); it is echoed in the response. The route logged is the matched
route template (``/fhir/{res_type}/{res_id}``) with the resource type, never the path itself
nor the query string. A resource type this server does not store is logged and counted as
``unknown``: the path segment is the client's text (``/fhir/Dupont``), not a bounded label.
The lines reach ``logging`` a batch at a time (``observability.access_log``).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_gateway.fhir.resource_types import STORED_TYPES
from fhir_gateway.observability.access_log import ACCESS_LOG
from fhir_gateway.observability.metrics import observe

_process_prefix = os.urandom(8).hex()
_sequence = itertools.count(1)


def _new_process_ids() -> None:
    """A forked child draws its own prefix (the parent's ids must not repeat)."""
    global _process_prefix, _sequence
    _process_prefix, _sequence = os.urandom(8).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_new_process_ids)


def new_request_id() -> str:
    return f"{_process_prefix}{next(_sequence):016x}"


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = str(value.decode("latin-1"))
            if 0 < len(text) <= 64 and text.replace("-", "").isalnum():
                return text
    return new_request_id()


def _resource_type(params: dict[str, Any]) -> str | None:
    res_type = params.get("res_type")
    if res_type is None:
        return None
    return str(res_type) if res_type in STORED_TYPES else "unknown"


class RequestLogMiddleware:
    """Adds ``X-Request-ID`` and logs method, route, type, client, status and duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await logged(self.app, scope, receive, send)


async def logged(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """``app`` serving the HTTP request ``scope``, with its request id and access log line (the
    middleware's work; ``front.GatewayApp`` calls it for the requests it dispatches itself)."""
    request_id = _request_id(scope)
    state: dict[str, Any] = scope.setdefault("state", {})
    state["request_id"] = request_id
    started = time.perf_counter()
    status = 500

    async def send_with_id(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            message.setdefault("headers", [])
            message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
        await send(message)

    try:
        await app(scope, receive, send_with_id)
    finally:
        route = scope.get("route")
        res_type = _resource_type(scope.get("path_params") or {})
        elapsed = time.perf_counter() - started
        route_path = getattr(route, "path", "unmatched")
        observe(scope["method"], route_path, res_type, status, elapsed)
        ACCESS_LOG.add(
            {
                "request_id": request_id,
                "method": scope["method"],
                "route": route_path,
                "resource_type": res_type,
                "client_id": state.get("client_id"),
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            }
        )
