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

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.scopes import parse_scopes
from fhir_gateway.auth.tokens import invalid_token
from fhir_gateway.auth.validation import TokenValidator
from fhir_gateway.kit.errors import Unauthorized
from fhir_gateway.kit.lru import Lru


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized(
            "An access token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": 'Bearer realm="fhir-gateway"'},
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise invalid_token("the Authorization header must be 'Bearer <token>'")
    return token.strip()


# AccessContexts already built, per token, X-Purpose-Of-Use, X-Break-Glass and default purpose: a client sends
# the same token with each request until it expires. The token is validated at every use.
_built: Lru[AccessContext] = Lru(10_000)


async def require_access(request: Request) -> AccessContext:
    """Validate the request's token and build its AccessContext (401 when invalid)."""
    validator: TokenValidator = request.app.state.token_validator
    token = _bearer(request)
    claims = validator.validate(token)
    headers = request.headers
    default = request.app.state.settings.default_purpose_of_use
    key = (token, headers.get("x-purpose-of-use"), headers.get("x-break-glass"), default)
    access = _built.get(key)
    if access is None:
        access = _access_context(claims, key[1], key[2], default)
        _built.put(key, access)
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
