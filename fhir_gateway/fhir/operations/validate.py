"""``$validate`` (FHIR R4 resource-operation-validate.html), type and instance level.

``POST /fhir/{type}/$validate`` validates the resource in the body, given alone or as the
``resource`` parameter of a Parameters body. ``GET|POST /fhir/{type}/{id}/$validate``
validates the stored resource, read through the normal consent-filtered read (so a
resource the caller may not see is a 404), or, for POST, the resource of the body
(``mode`` update). The ``profile`` parameter (query string or Parameters, repeatable)
names profiles to validate against besides the ones the resource claims and those the
deployment enforces.

Parameters in: ``resource`` (Resource), ``mode`` (code: ``create``, ``update``, ``delete``
or ``profile``, see ``validate_mode``; query string or Parameters), ``profile`` (uri). Out: ``return``, an
OperationOutcome of the issues found — structure (validation.html "Structure") and
profiles — or one ``information`` issue when the resource is valid. The answer is 200
either way; only a request the operation cannot honour (unknown profile parameter, no
resource) is a 4xx. The caller needs a scope on the type (create, read or update).
"""

from __future__ import annotations

from typing import Any

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.operations.validate_mode import check_mode, create_issues, delete_issues, update_issues
from fhir_gateway.fhir.reads import read
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import BadRequest, Forbidden, Issue, Unprocessable, operation_outcome
from fhir_gateway.storage import repository
from fhir_gateway.validation.profiles import profile_issues
from fhir_gateway.validation.registry import registry
from fhir_gateway.validation.structural import validate_structure

PARAMETERS = {"resource": "Resource", "mode": "code", "profile": "uri"}


def split_body(body: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The resource and ``profile`` values of a body (a resource, or Parameters wrapping one)."""
    resource, profiles, _mode = split_parameters(body)
    return resource, profiles


def split_parameters(body: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[str], str | None]:
    """The resource, ``profile`` and ``mode`` values of a body (a resource, or Parameters)."""
    if body is None or body.get("resourceType") != "Parameters":
        return body, [], None
    resource: dict[str, Any] | None = None
    profiles: list[str] = []
    mode: str | None = None
    for param in body.get("parameter") or []:
        name = param.get("name") if isinstance(param, dict) else None
        if name == "resource" and isinstance(param.get("resource"), dict):
            resource = param["resource"]
        elif name == "mode" and isinstance(param.get("valueCode"), str):
            mode = param["valueCode"]
        elif name == "profile":
            value = param.get("valueUri") or param.get("valueCanonical") or param.get("valueString")
            if isinstance(value, str):
                profiles.append(value)
    return resource, profiles, mode


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


def outcome_for(
    res_type: str, resource: dict[str, Any], profiles: list[str], extra: list[Issue] | None = None
) -> dict[str, Any]:
    """The OperationOutcome of ``resource`` against its structure, its profiles and ``profiles``
    (``extra``: what the mode found besides)."""
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
    issues.extend(extra or [])
    if not issues:
        checked = ", ".join(profiles) or "its structure and claimed profiles"
        issues.append(Issue("information", "informational", f"valid: {res_type} conforms to {checked}"))
    return operation_outcome(issues)


def _outcome(issues: list[Issue], valid: str) -> dict[str, Any]:
    if not any(i.severity in ("error", "fatal") for i in issues):
        issues.append(Issue("information", "informational", valid))
    return operation_outcome(issues)


def validate_type(
    ctx: Ctx,
    res_type: str,
    body: dict[str, Any] | None,
    query_profiles: list[str],
    query_mode: str | None = None,
) -> dict[str, Any]:
    """Type level: the body's resource (modes create, update with the resource's id, profile)."""
    _require_scope(ctx, res_type)
    resource, body_profiles, body_mode = split_parameters(body)
    mode = check_mode(query_mode or body_mode)
    profiles = query_profiles + body_profiles
    _check_profiles(profiles)
    if mode == "delete":
        raise BadRequest(
            "mode delete validates a stored resource: POST [type]/[id]/$validate", expression=["mode"]
        )
    if resource is None:
        raise BadRequest("$validate needs a resource: the body, or a 'resource' parameter", code="required")
    if mode == "create":
        return outcome_for(res_type, resource, profiles, create_issues(ctx, res_type, resource))
    if mode == "update":
        res_id = str(resource.get("id") or "")
        current = repository.get_current(ctx.conn, res_type, res_id) if res_id else None
        if current is not None and not current.deleted:
            current = read(ctx, res_type, res_id)  # through consent: a hidden resource is a 404
        return outcome_for(
            res_type, resource, profiles, update_issues(ctx, res_type, res_id, resource, current)
        )
    return outcome_for(res_type, resource, profiles)


def validate_instance(
    ctx: Ctx,
    res_type: str,
    res_id: str,
    body: dict[str, Any] | None,
    query_profiles: list[str],
    query_mode: str | None = None,
) -> dict[str, Any]:
    """Instance level: the stored resource (consent-filtered read), or the body's resource for it
    (modes update, delete, profile)."""
    _require_scope(ctx, res_type)
    resource, body_profiles, body_mode = split_parameters(body)
    mode = check_mode(query_mode or body_mode)
    if mode == "create":
        raise BadRequest("mode create validates a new resource: POST [type]/$validate", expression=["mode"])
    profiles = query_profiles + body_profiles
    _check_profiles(profiles)
    row = read(ctx, res_type, res_id)
    if mode == "delete":
        return _outcome(delete_issues(ctx, res_type, row), f"{res_type}/{res_id} may be deleted")
    if resource is None:
        assert row.content is not None
        resource = jsonutil.loads(row.content)
    elif resource.get("id") not in (None, res_id):
        raise BadRequest(f"The resource's id '{resource.get('id')}' is not {res_id}", expression=["id"])
    extra = update_issues(ctx, res_type, res_id, resource, row) if mode == "update" else None
    return outcome_for(res_type, resource, profiles, extra)
