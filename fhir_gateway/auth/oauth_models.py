"""The gateway's models behind Authlib's authorization server (RFC 6749 §2, RFC 7523, RFC 9068).

- ``RegisteredClient``: a client of the registry seen through Authlib's ``ClientMixin``;
- ``SmartClientAssertion``: SMART Backend Services client authentication (``private_key_jwt``:
  RS384 or ES384, ``aud`` = the token URL, ``exp`` at most five minutes ahead, ``jti`` never
  seen before), on Authlib's RFC 7523 ``JWTBearerClientAssertion``;
- ``GatewayTokenGenerator``: RFC 9068 JWT access tokens signed with the current signing key,
  carrying the client's Organization (the actor consent is checked against).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from authlib.oauth2.rfc6749 import ClientMixin, InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhir_gateway.auth.keys import ALGORITHM, SigningKeys
from fhir_gateway.auth.scopes import narrow
from fhir_gateway.auth.secrets import verify_secret
from fhir_gateway.auth.tokens import decode_header_kid
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.settings import Settings
from fhir_gateway.storage import client_repository
from fhir_gateway.storage.client_repository import ClientRecord
from fhir_gateway.storage.database import Database

GRANT_TYPE = "client_credentials"
PRIVATE_KEY_JWT = "private_key_jwt"
CLIENT_SECRET_BASIC = "client_secret_basic"
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = 300
CLOCK_LEEWAY = 5


class RegisteredClient(ClientMixin):  # type: ignore[misc]
    """A registered client (RFC 6749 §2) as Authlib's grants and endpoints see it."""

    def __init__(self, record: ClientRecord) -> None:
        self.record = record

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scopes the registration covers; None (invalid_scope) when none is."""
        return narrow(scope, self.record.scope) or None

    def check_client_secret(self, client_secret: str) -> bool:
        return self.record.secret_hash is not None and verify_secret(client_secret, self.record.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """A client authenticates by the credential it registered: a secret or a key set."""
        if method == CLIENT_SECRET_BASIC:
            return self.record.secret_hash is not None
        if method == PRIVATE_KEY_JWT:
            return bool(self.record.jwks or self.record.jwks_url)
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE

    def get_default_redirect_uri(self) -> None:
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False


def find_active_client(database: Database, client_id: str) -> RegisteredClient | None:
    """The client ``client_id`` unless unknown or revoked."""
    with database.transaction() as conn:
        record = client_repository.get_client(conn, client_id)
    if record is None or record.revoked:
        return None
    return RegisteredClient(record)


def client_key_set(record: ClientRecord) -> KeySet:
    """The public keys a client registered: inline JWKS or a JWKS URL (SMART Backend Services)."""
    if record.jwks:
        data = jsonutil.loads(record.jwks)
    elif record.jwks_url:
        try:
            data = httpx.get(record.jwks_url, timeout=5).json()
        except (httpx.HTTPError, ValueError):
            raise InvalidClientError(
                status_code=401, description="the client's JWKS could not be fetched"
            ) from None
    else:
        raise InvalidClientError(status_code=401, description="this client has no registered keys")
    try:
        return KeySet.import_key_set(data)
    except (ValueError, KeyError, TypeError, JoseError):
        raise InvalidClientError(status_code=401, description="the client's JWKS is not valid") from None


def _refused(description: str) -> InvalidClientError:
    return InvalidClientError(status_code=401, description=description)


class SmartClientAssertion(JWTBearerClientAssertion):  # type: ignore[misc]
    """``private_key_jwt`` client authentication (RFC 7523 §2.2, SMART Backend Services §4.2.2)."""

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

    def __init__(self, database: Database, token_url: str) -> None:
        super().__init__(validate_jti=True, leeway=CLOCK_LEEWAY)
        self.database = database
        self.audience = token_url

    def get_audiences(self) -> list[str]:
        return [self.audience]

    def resolve_client_public_key(self, client: RegisteredClient) -> KeySet:
        return client_key_set(client.record)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        """Verify the signature with the client's keys (RS384/ES384 only), then the claims."""
        try:
            alg, _kid = decode_header_kid(assertion)
        except FhirError:
            raise _refused("malformed client assertion") from None
        if alg not in ASSERTION_ALGORITHMS:
            raise _refused(f"client assertion algorithm {alg!r} is not RS384 or ES384")
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise _refused(f"client assertion signature rejected ({type(exc).__name__})") from None
        claims = dict(token.claims)
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > time.time() + MAX_ASSERTION_LIFETIME + CLOCK_LEEWAY:
            raise _refused("client assertion exp is more than five minutes ahead")
        try:
            self.verify_claims(token.claims)
        except InvalidClientError as exc:
            raise _refused(f"client assertion rejected: {exc.description}") from None
        return claims

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        """A ``jti`` is accepted once until the assertion expires (replay protection)."""
        if not isinstance(jti, str) or not jti:
            return False
        expires = datetime.fromtimestamp(float(claims["exp"]), UTC).replace(tzinfo=None)
        with self.database.transaction(write=True) as conn:
            first_use = client_repository.remember_assertion(
                conn, jti, str(claims["sub"]), expires, datetime.now(UTC).replace(tzinfo=None)
            )
        if not first_use:
            raise _refused("assertion jti was already used (replay)")
        return True


class GatewayTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    """RFC 9068 access tokens: ``iss`` our base URL, ``aud`` our FHIR base, signed ES256 with a
    ``kid`` of /auth/jwks; extra claims ``organization``
    (also as a SMART ``fhirUser`` URL), ``trusted``, ``patient``, ``break_glass``."""

    def __init__(self, settings: Settings, keys: SigningKeys) -> None:
        super().__init__(
            issuer=settings.base_url, alg=ALGORITHM, expires_generator=settings.token_lifetime_seconds
        )
        self.settings = settings
        self.keys = keys

    def get_jwks(self) -> KeySet:
        """Only the current key, so that joserfc names it in the ``kid`` header."""
        return KeySet([self.keys.current()])

    def get_audiences(self, client: RegisteredClient, user: Any, scope: str) -> str:
        return self.settings.fhir_base

    def get_jti(self, client: RegisteredClient, grant_type: str, user: Any, scope: str) -> str:
        return uuid.uuid4().hex

    def get_extra_claims(
        self, client: RegisteredClient, grant_type: str, user: Any, scope: str
    ) -> dict[str, Any]:
        record = client.record
        claims: dict[str, Any] = {"nbf": int(time.time()), "trusted": record.trusted}
        if record.organization:
            claims["organization"] = record.organization
            claims["fhirUser"] = f"{self.settings.fhir_base}/{record.organization}"
        if record.patient:
            claims["patient"] = record.patient
        if record.break_glass:
            claims["break_glass"] = True
        return claims
