"""``$validate`` (FHIR R4 resource-operation-validate.html), type and instance level.

``POST /fhir/{type}/$validate`` validates the resource in the body, given alone or as the
``resource`` parameter of a Parameters body. ``GET|POST /fhir/{type}/{id}/$validate``
validates the stored resource, read through the normal consent-filtered read (so a
resource the caller may not see is a 404), or, for POST, the resource of the body
(``mode`` update). The ``profile`` parameter (query string or Parameters, repeatable)
names profiles to validate against besides the ones the resource claims and those the
deployment enforces.

Parameters in: ``resource`` (Resource), ``mode`` (code, accepted and ignored: every mode
validates the content the same way), ``profile`` (uri). Out: ``return``, an
OperationOutcome of the issues found — structure (validation.html "Structure") and
profiles — or one ``information`` issue when the resource is valid. The answer is 200
either way; only a request the operation cannot honour (unknown profile parameter, no
resource) is a 4xx. The caller needs a scope on the type (create, read or update).
"""

from __future__ import annotations

from typing import Any

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.reads import read
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import BadRequest, Forbidden, Issue, Unprocessable, operation_outcome
from fhir_gateway.validation.profiles import profile_issues
from fhir_gateway.validation.registry import registry
from fhir_gateway.validation.structural import validate_structure

PARAMETERS = {"resource": "Resource", "mode": "code", "profile": "uri"}


def split_body(body: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The resource and ``profile`` values of a body (a resource, or Parameters wrapping one)."""
    if body is None or body.get("resourceType") != "Parameters":
        return body, []
    resource: dict[str, Any] | None = None
    profiles: list[str] = []
    for param in body.get("parameter") or []:
        name = param.get("name") if isinstance(param, dict) else None
        if name == "resource" and isinstance(param.get("resource"), dict):
            resource = param["resource"]
        elif name == "profile":
            value = param.get("valueUri") or param.get("valueCanonical") or param.get("valueString")
            if isinstance(value, str):
                profiles.append(value)
    return resource, profiles


def _require_scope(ctx: Ctx, res_type: str) -> None:
    if not any(ctx.access.allows(res_type, i) for i in ("c", "r", "u")):
        raise Forbidden(f"$validate needs a scope on {res_type} (create, read or update)")


def _check_profiles(profiles: list[str]) -> None:
    for url in profiles:
        if registry().get(url) is None:
            known = ", ".join(sorted(registry().profiles))
            raise BadRequest(
                f"profile '{url}' is not a profile of this server ({known})", expression=["profile"]
            )


def outcome_for(res_type: str, resource: dict[str, Any], profiles: list[str]) -> dict[str, Any]:
    """The OperationOutcome of ``resource`` against its structure, its profiles and ``profiles``."""
    issues: list[Issue] = []
    if resource.get("resourceType") != res_type:
        issues.append(
            Issue(
                "error",
                "invalid",
                f"resourceType '{resource.get('resourceType')}' is not {res_type}",
                ["resourceType"],
            )
        )
        return operation_outcome(issues)
    try:
        validate_structure(res_type, resource)
    except Unprocessable as exc:
        issues.extend(exc.issues)
    issues.extend(profile_issues(res_type, resource, profiles))
    if not issues:
        checked = ", ".join(profiles) or "its structure and claimed profiles"
        issues.append(Issue("information", "informational", f"valid: {res_type} conforms to {checked}"))
    return operation_outcome(issues)


def validate_type(
    ctx: Ctx, res_type: str, body: dict[str, Any] | None, query_profiles: list[str]
) -> dict[str, Any]:
    """Type level: the body's resource."""
    _require_scope(ctx, res_type)
    resource, body_profiles = split_body(body)
    profiles = query_profiles + body_profiles
    _check_profiles(profiles)
    if resource is None:
        raise BadRequest("$validate needs a resource: the body, or a 'resource' parameter", code="required")
    return outcome_for(res_type, resource, profiles)


def validate_instance(
    ctx: Ctx, res_type: str, res_id: str, body: dict[str, Any] | None, query_profiles: list[str]
) -> dict[str, Any]:
    """Instance level: the stored resource (consent-filtered read), or the body's resource for it."""
    _require_scope(ctx, res_type)
    resource, body_profiles = split_body(body)
    profiles = query_profiles + body_profiles
    _check_profiles(profiles)
    row = read(ctx, res_type, res_id)
    if resource is None:
        assert row.content is not None
        resource = jsonutil.loads(row.content)
    elif resource.get("id") not in (None, res_id):
        raise BadRequest(f"The resource's id '{resource.get('id')}' is not {res_id}", expression=["id"])
    return outcome_for(res_type, resource, profiles)
