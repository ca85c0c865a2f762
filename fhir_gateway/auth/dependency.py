"""The FastAPI dependency that turns a bearer token into the request's AccessContext.

CPU only (signature and claims): it runs on the event loop; the client's revocation
status is checked in the request's own transaction (``fhir.context.unit_of_work``).

RFC 6750 §2.1 (Authorization: Bearer), §3 (WWW-Authenticate on 401). The purpose of use
comes from the token (``purpose_of_use``) or the ``X-Purpose-Of-Use`` header, else the
deployment default. ``X-Break-Glass`` is honoured only for clients registered for it.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.types import Scope

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.scopes import parse_scopes
from fhir_gateway.auth.tokens import check_time_claims, invalid_token
from fhir_gateway.auth.validation import TokenValidator
from fhir_gateway.kit.errors import Unauthorized


def _bearer(header: str | None) -> str:
    """The token of an ``Authorization`` header (401 when absent or not a bearer token)."""
    if not header:
        raise Unauthorized(
            "An access token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": 'Bearer realm="fhir-gateway"'},
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise invalid_token("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _access_headers(scope: Scope) -> tuple[str | None, str | None, str | None]:
    """The first ``Authorization``, ``X-Purpose-Of-Use`` and ``X-Break-Glass`` of a request, in
    one pass over its headers (as ``Request.headers.get`` reads each: latin-1 text)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _ACCESS_HEADERS and name not in found:
            found[name] = value.decode("latin-1")
    return found.get(b"authorization"), found.get(b"x-purpose-of-use"), found.get(b"x-break-glass")


_ACCESS_HEADERS = frozenset({b"authorization", b"x-purpose-of-use", b"x-break-glass"})


async def require_access(request: Request) -> AccessContext:
    """Validate the request's token and build its AccessContext (401 when invalid)."""
    validator: TokenValidator = request.app.state.token_validator
    authorization, purpose, break_glass = _access_headers(request.scope)
    default = request.app.state.settings.default_purpose_of_use
    key = (authorization, purpose, break_glass, default)
    # a client sends the same headers with each request until its token expires
    contexts = validator.access_contexts
    found = contexts.get(key)
    if found is not None:
        access, claims = found
        check_time_claims(claims)
        return access
    claims = validator.validate(_bearer(authorization))
    access = _access_context(claims, purpose, break_glass, default)
    contexts.put(key, (access, claims))
    return access


def _access_context(
    claims: dict[str, Any], purpose_header: str | None, break_glass_header: str | None, default_purpose: str
) -> AccessContext:
    purpose = str(claims.get("purpose_of_use") or purpose_header or default_purpose)
    break_glass = break_glass_header if claims.get("break_glass") else None
    patient = claims.get("patient")
    return AccessContext(
        client_id=str(claims.get("client_id", "")),
        scopes=parse_scopes(str(claims.get("scope", ""))),
        organization=claims.get("organization"),
        practitioner=claims.get("practitioner"),
        trusted=bool(claims.get("trusted", False)),
        patient=str(patient).removeprefix("Patient/") if patient else None,
        purpose=purpose.strip()[:64],
        break_glass=break_glass.strip()[:500] if break_glass and break_glass.strip() else None,
        raw_scope=str(claims.get("scope", "")),
        verify_client=bool(claims.get("local_client")),
    )
