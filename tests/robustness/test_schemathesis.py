"""schemathesis against the gateway's own OpenAPI, with a valid token (issue 11): whatever
the generated request, no 5xx, and every error is a FHIR OperationOutcome."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.settings import Settings

# The document only: the app that serves it here never touches its database.
_SPEC = create_app(Settings(database_url="sqlite://", subscription_worker_in_serve=False)).openapi()
api = schemathesis.openapi.from_dict(_SPEC)


def _request(case: schemathesis.Case) -> dict[str, Any]:
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    allowed = ("method", "url", "params", "headers", "json", "content", "data")
    return {k: v for k, v in kwargs.items() if k in allowed and v is not None}


@api.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_errors_are_operation_outcomes(case: schemathesis.Case, fhir: TestClient) -> None:
    response = fhir.request(**_request(case))
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"
    if response.status_code >= 400 and not case.path.startswith("/auth/"):
        assert response.json()["resourceType"] == "OperationOutcome", response.text[:300]
