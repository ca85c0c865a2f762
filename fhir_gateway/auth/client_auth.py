"""Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2, SMART Backend Services).

- ``client_secret_basic``: HTTP Basic with the registered secret;
- ``private_key_jwt``: a client assertion signed with a key of the client's JWKS (RS384 or
  ES384), ``iss`` = ``sub`` = client id, ``aud`` = the token URL, ``exp`` at most five
  minutes ahead, and a ``jti`` never seen before.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from joserfc.jwk import KeySet
from sqlalchemy import Connection

from fhir_gateway.auth.secrets import verify_secret
from fhir_gateway.auth.tokens import verify_signed
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.storage import client_repository
from fhir_gateway.storage.client_repository import ClientRecord

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = 300


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def _client_or_fail(conn: Connection, client_id: str) -> ClientRecord:
    client = client_repository.get_client(conn, client_id)
    if client is None or client.revoked:
        raise OAuthError("invalid_client", "unknown or revoked client", 401)
    return client


def authenticate_basic(conn: Connection, header: str) -> ClientRecord:
    try:
        decoded = base64.b64decode(header.split(" ", 1)[1]).decode()
        client_id, secret = decoded.split(":", 1)
    except (ValueError, IndexError, UnicodeDecodeError):
        raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
    client = _client_or_fail(conn, client_id)
    if not verify_secret(secret, client.secret_hash):
        raise OAuthError("invalid_client", "client authentication failed", 401)
    return client


def _client_keys(client: ClientRecord) -> KeySet:
    if client.jwks:
        data = jsonutil.loads(client.jwks)
    elif client.jwks_url:
        try:
            data = httpx.get(client.jwks_url, timeout=5).json()
        except (httpx.HTTPError, ValueError):
            raise OAuthError("invalid_client", "the client's JWKS could not be fetched", 401) from None
    else:
        raise OAuthError("invalid_client", "this client has no registered keys", 401)
    try:
        return KeySet.import_key_set(data)
    except (ValueError, KeyError, TypeError):
        raise OAuthError("invalid_client", "the client's JWKS is not valid", 401) from None


def _unverified_issuer(assertion: str) -> str:
    try:
        payload = assertion.split(".")[1]
        claims = jsonutil.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["iss"])
    except (IndexError, ValueError, KeyError, TypeError, FhirError):
        raise OAuthError("invalid_client", "malformed client assertion", 401) from None


def authenticate_assertion(conn: Connection, form: dict[str, str], token_url: str) -> ClientRecord:
    """Verify a SMART Backend Services client assertion (RFC 7523 §3)."""
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}", 401)
    assertion = form.get("client_assertion", "")
    client = _client_or_fail(conn, _unverified_issuer(assertion))
    try:
        claims: dict[str, Any] = verify_signed(assertion, _client_keys(client), ASSERTION_ALGORITHMS)
    except FhirError as exc:
        raise OAuthError("invalid_client", f"client assertion rejected: {exc.diagnostics}", 401) from None
    now = time.time()
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise OAuthError("invalid_client", "assertion iss and sub must be the client id", 401)
    audience = claims.get("aud")
    if audience != token_url and not (isinstance(audience, list) and token_url in audience):
        raise OAuthError("invalid_client", "assertion aud must be the token URL", 401)
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp < now:
        raise OAuthError("invalid_client", "assertion expired or without exp", 401)
    if exp > now + MAX_ASSERTION_LIFETIME + 5:
        raise OAuthError("invalid_client", "assertion exp is more than five minutes ahead", 401)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise OAuthError("invalid_client", "assertion has no jti", 401)
    expires = datetime.fromtimestamp(exp, UTC).replace(tzinfo=None)
    if not client_repository.remember_assertion(
        conn, jti, client.client_id, expires, datetime.now(UTC).replace(tzinfo=None)
    ):
        raise OAuthError("invalid_client", "assertion jti was already used (replay)", 401)
    return client
