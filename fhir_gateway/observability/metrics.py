"""Prometheus metrics at ``/metrics`` (text exposition format 0.0.4).

Request count and latency by FHIR interaction and resource type, consent refusals, partner
file rows imported, the depth of the audit writer's queue and of the subscription outbox.
Each server process exposes its own figures (the outbox depth is read from the database,
the same for all); the ``fhir-gateway import`` command prints its counts instead.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.responses import Response

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.dependency import require_access
from fhir_gateway.storage import subscription_repository

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "fhir_requests_total",
    "HTTP requests by interaction, type and status",
    ["interaction", "resource_type", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "fhir_request_seconds",
    "request duration by interaction and type",
    ["interaction", "resource_type"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSENT_DENIALS = Counter(
    "fhir_consent_denials_total",
    "accesses refused by consent or scope decision",
    ["resource_type"],
    registry=REGISTRY,
)
IMPORT_ROWS = Counter(
    "fhir_import_rows_total",
    "partner file rows by format and outcome: imported, rejected (partial import), "
    "refused (the whole file refused), dry-run",
    ["format", "outcome"],
    registry=REGISTRY,
)
AUDIT_QUEUE = Gauge("fhir_audit_queue_depth", "AuditEvents waiting to be written", registry=REGISTRY)
OUTBOX_DEPTH = Gauge(
    "fhir_subscription_outbox_depth", "Subscription notifications not yet delivered", registry=REGISTRY
)

_INTERACTIONS = {
    ("GET", "/fhir/{res_type}/{res_id}"): "read",
    ("GET", "/fhir/{res_type}/{res_id}/_history/{version}"): "vread",
    ("GET", "/fhir/{res_type}"): "search-type",
    ("POST", "/fhir/{res_type}/_search"): "search-type",
    ("POST", "/fhir/{res_type}"): "create",
    ("PUT", "/fhir/{res_type}/{res_id}"): "update",
    ("PUT", "/fhir/{res_type}"): "update",
    ("PATCH", "/fhir/{res_type}/{res_id}"): "patch",
    ("DELETE", "/fhir/{res_type}/{res_id}"): "delete",
    ("GET", "/fhir/{res_type}/{res_id}/_history"): "history-instance",
    ("GET", "/fhir/{res_type}/_history"): "history-type",
    ("GET", "/fhir/_history"): "history-system",
    ("POST", "/fhir"): "transaction",  # or batch: the route cannot tell
    ("POST", "/fhir/"): "transaction",
    ("GET", "/fhir/metadata"): "capabilities",
}


def interaction_of(method: str, route: str) -> str:
    """The FHIR interaction (restful-interaction code) a route stands for, else ``other``."""
    if "$" in route:
        return "operation"
    return _INTERACTIONS.get((method, route), "other")


# the labelled series of each (method, route, type, status): ``labels()`` per request cost a
# sixth of a cached read's framework time. Keys are bounded (route templates, known types).
_series: dict[tuple[str, str, str | None, int], tuple[Any, Any]] = {}


def observe(method: str, route: str, resource_type: str | None, status: int, seconds: float) -> None:
    key = (method, route, resource_type, status)
    series = _series.get(key)
    if series is None:
        interaction = interaction_of(method, route)
        kind = resource_type or ""
        series = (REQUESTS.labels(interaction, kind, str(status)), LATENCY.labels(interaction, kind))
        if len(_series) < 10_000:
            _series[key] = series
    series[0].inc()
    series[1].observe(seconds)


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, _access: Annotated[AccessContext, Depends(require_access)]) -> Response:
    """Prometheus scrape endpoint; like every non-discovery URL it needs an access token
    (Prometheus sends one with ``authorization: {type: Bearer}``). No personal data in it."""
    AUDIT_QUEUE.set(request.app.state.audit_writer.pending())
    with request.app.state.database.transaction() as conn:
        OUTBOX_DEPTH.set(subscription_repository.outbox_depth(conn))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
