"""Create, update, patch and delete (FHIR R4 http.html#create, #update, #patch, #delete).

Every write: scope check, structural validation, consent check on the person the data
belongs to, a new version in history, the search index and the consent grants rewritten,
all in the request's transaction.
"""

from __future__ import annotations

from typing import Any

import jsonpatch

from fhir_gateway.consent import hooks
from fhir_gateway.fhir.conditional import find_matches
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.resource_types import APPEND_ONLY_TYPES
from fhir_gateway.fhir.storing import Pending, WriteResult, apply, prepare
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import BadRequest, MethodNotAllowed, NotFound, PreconditionFailed, Unprocessable
from fhir_gateway.kit.ids import new_id
from fhir_gateway.kit.timeutil import utcnow
from fhir_gateway.storage import repository
from fhir_gateway.storage.index_repository import replace_index
from fhir_gateway.storage.locks import lock_for_transaction
from fhir_gateway.storage.repository import StoredRow
from fhir_gateway.storage.tables import resource
from fhir_gateway.subscriptions import hooks as subscription_hooks
from fhir_gateway.validation.profiles import validate_profiles
from fhir_gateway.validation.structural import validate_structure

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def check_id(res_id: str) -> str:
    """A FHIR id: 1-64 of [A-Za-z0-9-.] (FHIR R4 datatypes.html#id)."""
    if not 1 <= len(res_id) <= 64 or not set(res_id) <= _ID_CHARS:
        raise BadRequest(f"'{res_id[:80]}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})", expression=["id"])
    return res_id


def check_body(res_type: str, body: dict[str, Any]) -> None:
    """The body's resourceType matches the URL, the structure is valid R4 and the resource meets
    the profiles it claims or the deployment enforces (FHIR R4 profiling.html)."""
    if body.get("resourceType") != res_type:
        raise BadRequest(
            f"resourceType '{body.get('resourceType')}' does not match the URL type '{res_type}'",
            expression=["resourceType"],
        )
    validate_structure(res_type, body)
    validate_profiles(res_type, body)


def _store(
    ctx: Ctx, res_type: str, res_id: str, body: dict[str, Any], current: StoredRow | None, method: str
) -> WriteResult:
    """Stamp ``meta`` and write a new version (or the first one) of ``body``."""
    prepared = prepare(ctx, res_type, res_id, body, current, method)
    if isinstance(prepared, WriteResult):
        return prepared
    apply(ctx, [prepared])
    return prepared.result


def create(
    ctx: Ctx,
    res_type: str,
    body: dict[str, Any],
    if_none_exist: str | None = None,
    *,
    assigned_id: str | None = None,
) -> WriteResult:
    """FHIR R4 http.html#create, with conditional create (``If-None-Exist``, #ccreate).

    ``assigned_id``: the id a transaction gave a ``urn:uuid`` entry beforehand.
    """
    check_create(ctx, res_type, body)
    if if_none_exist:
        lock_for_transaction(ctx.conn, f"{res_type}?{if_none_exist}")
        matches = find_matches(ctx, res_type, if_none_exist)
        if len(matches) == 1:
            return WriteResult(matches[0], created=False)
        if len(matches) > 1:
            raise PreconditionFailed(f"If-None-Exist '{if_none_exist}' matches {len(matches)} resources")
    return _store(ctx, res_type, assigned_id or new_id(), body, None, "POST")


def check_create(ctx: Ctx, res_type: str, body: dict[str, Any]) -> None:
    """What a create needs first: the scope and a valid body."""
    ctx.require_scope(res_type, "c")
    check_body(res_type, body)


def _check_if_match(current: StoredRow | None, if_match: int | None, res_type: str, res_id: str) -> None:
    if if_match is None:
        return
    if current is None or current.deleted:
        raise PreconditionFailed(f"If-Match: {res_type}/{res_id} does not exist")
    if current.version != if_match:
        raise PreconditionFailed(
            f'If-Match W/"{if_match}" does not match the current version W/"{current.version}" '
            f"of {res_type}/{res_id}"
        )


def update(ctx: Ctx, res_type: str, res_id: str, body: dict[str, Any], if_match: int | None) -> WriteResult:
    """FHIR R4 http.html#update, including create-on-update with the client's id.

    Append-only types (AuditEvent) may be created this way, never replaced.
    """
    check_update(ctx, res_type, res_id, body)
    current = repository.get_current(ctx.conn, res_type, res_id, for_update=True)
    prepared = prepare_update(ctx, res_type, res_id, body, current, if_match)
    if isinstance(prepared, WriteResult):
        return prepared
    apply(ctx, [prepared])
    return prepared.result


def check_update(ctx: Ctx, res_type: str, res_id: str, body: dict[str, Any]) -> None:
    """What an update needs before the current version is read: scope, id and a valid body."""
    ctx.require_scope(res_type, "u")
    check_id(res_id)
    check_body(res_type, body)
    if body.get("id") is None:
        raise BadRequest("The resource in an update must carry its id", expression=[f"{res_type}.id"])
    if body["id"] != res_id:
        raise BadRequest(
            f"Resource id '{body['id']}' does not match the URL id '{res_id}'", expression=[f"{res_type}.id"]
        )


def prepare_update(
    ctx: Ctx,
    res_type: str,
    res_id: str,
    body: dict[str, Any],
    current: StoredRow | None,
    if_match: int | None,
) -> Pending | WriteResult:
    """The update of ``current`` (read for update) by a body ``check_update`` accepted."""
    if current is not None:
        _refuse_append_only(res_type)
    _check_if_match(current, if_match, res_type, res_id)
    if current is None or current.deleted:
        ctx.require_scope(res_type, "c")
    return prepare(ctx, res_type, res_id, body, current, "PUT")


def conditional_update(
    ctx: Ctx, res_type: str, query: str, body: dict[str, Any], if_match: int | None
) -> WriteResult:
    """FHIR R4 http.html#cond-update: 0 matches create, 1 updates, several is 412."""
    _refuse_append_only(res_type)
    ctx.require_scope(res_type, "u")
    check_body(res_type, body)
    lock_for_transaction(ctx.conn, f"{res_type}?{query}")
    matches = find_matches(ctx, res_type, query)
    if len(matches) > 1:
        raise PreconditionFailed(f"Conditional update '{query}' matches {len(matches)} resources")
    if not matches:
        ctx.require_scope(res_type, "c")
        res_id = check_id(str(body["id"])) if body.get("id") else new_id()
        current = repository.get_current(ctx.conn, res_type, res_id, for_update=True)
        if current is not None and not current.deleted:
            raise PreconditionFailed(f"{res_type}/{res_id} exists but does not match '{query}'")
        return _store(ctx, res_type, res_id, body, current, "PUT")
    found = matches[0]
    if body.get("id") not in (None, found.res_id):
        raise BadRequest(f"Resource id '{body['id']}' differs from the matching resource '{found.res_id}'")
    current = repository.get_current(ctx.conn, res_type, found.res_id, for_update=True)
    _check_if_match(current, if_match, res_type, found.res_id)
    body["id"] = found.res_id
    return _store(ctx, res_type, found.res_id, body, current, "PUT")


def patch(ctx: Ctx, res_type: str, res_id: str, operations: Any, if_match: int | None) -> WriteResult:
    """FHIR R4 http.html#patch with JSON Patch (RFC 6902)."""
    _refuse_append_only(res_type)
    ctx.require_scope(res_type, "u")
    current = _existing_for_write(ctx, res_type, res_id)
    _check_if_match(current, if_match, res_type, res_id)
    if not isinstance(operations, list):
        raise BadRequest("A JSON Patch body is an array of operations (RFC 6902)")
    assert current.content is not None
    try:
        patched = jsonpatch.apply_patch(jsonutil.loads(current.content), operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise Unprocessable(f"JSON Patch could not be applied: {exc}") from None
    if (
        not isinstance(patched, dict)
        or patched.get("id") != res_id
        or patched.get("resourceType") != res_type
    ):
        raise Unprocessable("A patch may not change the resource's id or resourceType")
    check_body(res_type, patched)
    return _store(ctx, res_type, res_id, patched, current, "PATCH")


def delete(ctx: Ctx, res_type: str, res_id: str) -> StoredRow | None:
    """FHIR R4 http.html#delete: a deleted version; reads then answer 410 Gone."""
    _refuse_append_only(res_type)
    ctx.require_scope(res_type, "d")
    current = repository.get_current(
        ctx.conn, res_type, res_id, visible=ctx.visible(resource, res_type), for_update=True
    )
    if current is None:
        raise NotFound(f"{res_type}/{res_id} is not known")
    if current.deleted:
        return None
    ctx.check_write(res_type, current.patient_id, "delete")
    ctx.check_shared_write(res_type, res_id, None, current, "delete")
    if not repository.write_next_version(
        ctx.conn, current, None, current.patient_id, utcnow().replace(tzinfo=None), "DELETE"
    ):
        raise PreconditionFailed(f"{res_type}/{res_id} was changed by another request")
    replace_index(ctx.conn, res_type, res_id, None)
    hooks.after_write(ctx.conn, res_type, res_id, None)
    subscription_hooks.after_delete(ctx, res_type, res_id)
    ctx.audit("delete", res_type, res_id, current.patient_id)
    return current


def _existing_for_write(ctx: Ctx, res_type: str, res_id: str) -> StoredRow:
    current = repository.get_current(
        ctx.conn, res_type, res_id, visible=ctx.visible(resource, res_type), for_update=True
    )
    if current is None or current.deleted or current.content is None:
        raise NotFound(f"{res_type}/{res_id} is not known")
    return current


def _refuse_append_only(res_type: str) -> None:
    if res_type in APPEND_ONLY_TYPES:
        raise MethodNotAllowed(f"{res_type} is append-only: it can be created, never changed or deleted")
