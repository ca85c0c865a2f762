"""Real OAuth clients and tokens for tests: registered in the database, token over HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.testclient import TestClient

from fhir_gateway.auth.registry import register
from fhir_gateway.storage.database import Database

SECRET = "s3cret-for-tests"


def register_client(
    database: Database,
    name: str,
    scope: str,
    *,
    organization: str | None = None,
    trusted: bool = False,
    patient: str | None = None,
    break_glass: bool = False,
) -> tuple[str, str]:
    """Register a client_secret_basic client; (client_id, secret)."""
    client_id = f"{name}-{uuid.uuid4().hex[:6]}"
    register(
        database,
        client_id,
        scope,
        secret=SECRET,
        organization=organization,
        trusted=trusted,
        patient=patient,
        break_glass=break_glass,
    )
    return client_id, SECRET


def issue_token(http: TestClient, client_id: str, secret: str, scope: str | None = None) -> str:
    """A real token from POST /auth/token with HTTP Basic client authentication."""
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    response = http.post("/auth/token", data=data, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def make_private_key_jwt(
    client_id: str,
    key: ECKey | RSAKey,
    token_url: str,
    *,
    alg: str = "ES384",
    lifetime: int = 240,
    jti: str | None = None,
    **overrides: Any,
) -> str:
    """A SMART Backend Services client assertion (RFC 7523)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + lifetime,
        "jti": jti or uuid.uuid4().hex,
    }
    claims.update(overrides)
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])
