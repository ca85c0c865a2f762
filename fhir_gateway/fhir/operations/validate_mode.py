"""The ``mode`` of ``$validate`` (FHIR R4 resource-operation-validate.html, "mode").

- ``create``: the content, then whether this caller could create it (scope, consent on the
  person it belongs to, or for a resource of no person the rule of consent.ownership); an
  ``id`` is ignored by a create (http.html#create), so it is a warning;
- ``update``: the content, then whether this caller could update the resource it names
  (scope, append-only types, the id of the URL, consent on the person or ownership, before
  and after);
- ``delete``: the content is ignored; whether this caller could delete the resource (scope,
  append-only types, consent on the person or ownership);
- ``profile`` (or no mode): the content against its structure and profiles only.

The answers are issues of the operation's OperationOutcome, never a refused write: nothing
is written and nothing is audited as a write.
"""

from __future__ import annotations

from typing import Any

from fhir_gateway.consent import ownership, visibility
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.resource_types import APPEND_ONLY_TYPES
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import BadRequest, Forbidden, Issue
from fhir_gateway.search.indexing import patient_compartment_id
from fhir_gateway.storage.repository import StoredRow

MODES = ("create", "update", "delete", "profile")
_SCOPES = {"create": ("c", "create"), "update": ("u", "update"), "delete": ("d", "delete")}


def check_mode(mode: str | None) -> str | None:
    """The mode asked for (None: none), or 400 naming the accepted ones."""
    if mode is None or mode in MODES:
        return mode
    raise BadRequest(f"mode '{mode[:40]}' is not one of {', '.join(MODES)}", expression=["mode"])


def _consent(ctx: Ctx, res_type: str, patient_id: str | None) -> list[Issue]:
    try:
        visibility.check_write(
            ctx.conn, ctx.access, res_type, patient_id, policy=ctx.settings.consent_default_policy
        )
    except Forbidden as exc:
        return [Issue("error", "forbidden", exc.diagnostics)]
    return []


def _ownership(
    ctx: Ctx, res_type: str, res_id: str, new: dict[str, Any] | None, current: StoredRow | None
) -> list[Issue]:
    """What consent.ownership says of a write of a shared resource (one of no person)."""
    old = jsonutil.loads(current.content) if current is not None and current.content is not None else None
    try:
        ownership.check_write(ctx.conn, ctx.access, res_type, res_id, new, old)
    except Forbidden as exc:
        return [Issue("error", "forbidden", exc.diagnostics)]
    return []


def _scope(ctx: Ctx, res_type: str, mode: str) -> list[Issue]:
    letter, name = _SCOPES[mode]
    if ctx.access.allows(res_type, letter):
        return []
    return [Issue("error", "forbidden", f"the token's scopes do not allow {name} on {res_type}")]


def create_issues(ctx: Ctx, res_type: str, resource: dict[str, Any]) -> list[Issue]:
    """What would stop this caller creating ``resource`` (besides its content)."""
    issues = _scope(ctx, res_type, "create")
    if resource.get("id") is not None:
        issues.append(
            Issue("warning", "informational", "a create ignores the resource's id (http.html#create)", ["id"])
        )
    issues += _consent(ctx, res_type, patient_compartment_id(resource))
    return issues + _ownership(ctx, res_type, "", {k: v for k, v in resource.items() if k != "id"}, None)


def update_issues(
    ctx: Ctx, res_type: str, res_id: str | None, resource: dict[str, Any], current: StoredRow | None
) -> list[Issue]:
    """What would stop this caller replacing ``current`` by ``resource`` (besides its content)."""
    if not res_id:
        return [Issue("error", "required", "an update needs the resource's id", ["id"])]
    if resource.get("id") not in (None, res_id):
        return [
            Issue("error", "invalid", f"the resource's id '{resource.get('id')}' is not {res_id}", ["id"])
        ]
    exists = current is not None and not current.deleted
    issues = _scope(ctx, res_type, "update" if exists else "create")
    if exists and res_type in APPEND_ONLY_TYPES:
        issues.append(Issue("error", "not-supported", f"{res_type} is append-only: it cannot be changed"))
    issues += _consent(ctx, res_type, patient_compartment_id({**resource, "id": res_id}))
    if exists and current is not None and current.patient_id != patient_compartment_id(resource):
        issues += _consent(ctx, res_type, current.patient_id)
    return issues + _ownership(ctx, res_type, res_id, {**resource, "id": res_id}, current if exists else None)


def delete_issues(ctx: Ctx, res_type: str, current: StoredRow) -> list[Issue]:
    """What would stop this caller deleting ``current``."""
    issues = _scope(ctx, res_type, "delete")
    if res_type in APPEND_ONLY_TYPES:
        issues.append(Issue("error", "not-supported", f"{res_type} is append-only: it cannot be deleted"))
    return (
        issues
        + _consent(ctx, res_type, current.patient_id)
        + _ownership(ctx, res_type, current.res_id, None, current)
    )
