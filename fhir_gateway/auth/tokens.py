"""Access tokens: verification of the signed JWTs (RFC 9068 profile, SMART v2).

Issued by ``oauth_models.GatewayTokenGenerator``.

Claims: iss (our base URL), aud (our FHIR base), sub = client_id, client_id, scope, iat,
nbf, exp, jti, ``organization`` (the client's Organization: the actor consent is checked
against), ``trusted``, and ``patient`` for a patient-context client.
"""

from __future__ import annotations

import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from fhir_gateway.kit.errors import Unauthorized

ACCEPTED_ALGORITHMS = ["ES256", "ES384", "RS256", "RS384"]
LEEWAY_SECONDS = 10


def invalid_token(reason: str) -> Unauthorized:
    """401 with the RFC 6750 §3 challenge."""
    return Unauthorized(
        f"Invalid access token: {reason}",
        headers={
            "WWW-Authenticate": f'Bearer realm="fhir-gateway", error="invalid_token", '
            f'error_description="{reason}"'
        },
    )


def decode_header_kid(token: str) -> tuple[str | None, str | None]:
    """(alg, kid) of a compact JWS without verifying it; raises 401 when malformed."""
    import base64
    import json

    parts = token.split(".")
    if len(parts) != 3:
        raise invalid_token("malformed token")
    try:
        padded = parts[0] + "=" * (-len(parts[0]) % 4)
        header = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError):
        raise invalid_token("malformed token header") from None
    if not isinstance(header, dict):
        raise invalid_token("malformed token header")
    return header.get("alg"), header.get("kid")


def verify_signed(token: str, key_set: Any, algorithms: list[str]) -> dict[str, Any]:
    """Verify signature (only asymmetric ``algorithms``) and return the claims."""
    alg, _kid = decode_header_kid(token)
    if alg not in algorithms:
        raise invalid_token(f"algorithm {alg!r} is not accepted")
    try:
        decoded = jwt.decode(token, key_set, algorithms=algorithms)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise invalid_token(f"signature or format rejected ({type(exc).__name__})") from None
    return dict(decoded.claims)


def check_time_claims(claims: dict[str, Any]) -> None:
    """exp, nbf and iat within a small leeway (RFC 7519 §4.1.4, §4.1.5)."""
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if not isinstance(exp, int | float):
        raise invalid_token("no expiry")
    if exp + LEEWAY_SECONDS < now:
        raise invalid_token("token expired")
    if isinstance(nbf, int | float) and nbf - LEEWAY_SECONDS > now:
        raise invalid_token("token not yet valid")
