"""The built-in authorization server: Authlib's ``AuthorizationServer`` wired to FastAPI.

Authlib ships no FastAPI/Starlette server integration; this module is that integration
(request and response adapters, RFC 6749 §4.4 grant, RFC 7662 endpoint) on the gateway's
models (``oauth_models``). Grants: ``client_credentials`` only (SMART Backend Services).
Access tokens are self-contained JWTs (RFC 9068): nothing is stored when one is issued.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from starlette.responses import JSONResponse

from fhir_gateway.auth.keys import SigningKeys
from fhir_gateway.auth.oauth_models import (
    CLIENT_SECRET_BASIC,
    PRIVATE_KEY_JWT,
    GatewayTokenGenerator,
    RegisteredClient,
    SmartClientAssertion,
    find_active_client,
)
from fhir_gateway.auth.validation import TokenValidator, ensure_client_active
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database

log = logging.getLogger(__name__)
CLIENT_AUTH_METHODS = [CLIENT_SECRET_BASIC, PRIVATE_KEY_JWT]
INTROSPECTED_CLAIMS = (
    "scope",
    "client_id",
    "exp",
    "iat",
    "nbf",
    "sub",
    "aud",
    "iss",
    "jti",
    "organization",
    "patient",
)


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """An ``application/x-www-form-urlencoded`` request to the token or introspection endpoint."""

    def __init__(self, method: str, uri: str, headers: Mapping[str, str], form: dict[str, str]) -> None:
        super().__init__(method, uri, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class SmartClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    """RFC 6749 §4.4, client authenticated by a secret or a signed assertion."""

    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS


class IntrospectedToken:
    """An access token found valid by the resource-side validator (RFC 7662 §2.2)."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims

    def is_expired(self) -> bool:
        return False  # the validator refused expired tokens already

    def is_revoked(self) -> bool:
        return False  # and tokens of revoked clients


class TokenIntrospection(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662 for partner gateways: any authenticated client may introspect an access token."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS
    SUPPORTED_TOKEN_TYPES = ("access_token",)

    def __init__(self, server: GatewayAuthorizationServer) -> None:
        super().__init__(server)
        self.gateway = server

    def query_token(self, token_string: str, token_type_hint: str | None) -> IntrospectedToken | None:
        try:
            claims = self.gateway.validator.validate(token_string)
            if claims.get("local_client"):
                with self.gateway.database.transaction() as conn:
                    ensure_client_active(conn, str(claims.get("client_id", "")))
        except FhirError:
            return None
        return IntrospectedToken(claims)

    def check_permission(self, token: IntrospectedToken, client: RegisteredClient, request: Any) -> bool:
        return True

    def introspect_token(self, token: IntrospectedToken) -> dict[str, Any]:
        kept = {k: token.claims[k] for k in INTROSPECTED_CLAIMS if k in token.claims}
        return {"active": True, "token_type": "Bearer", **kept}


class GatewayAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's authorization server on the client registry and the gateway's signing keys."""

    def __init__(
        self, database: Database, settings: Settings, keys: SigningKeys, validator: TokenValidator
    ) -> None:
        super().__init__(scopes_supported=None)
        self.database, self.settings, self.validator = database, settings, validator
        self.token_url = settings.base_url.rstrip("/") + "/auth/token"
        self.register_client_auth_method(PRIVATE_KEY_JWT, SmartClientAssertion(database, self.token_url))
        self.register_grant(SmartClientCredentialsGrant)
        self.register_token_generator("default", GatewayTokenGenerator(settings, keys))
        self.register_endpoint(TokenIntrospection(self))

    def query_client(self, client_id: str) -> RegisteredClient | None:
        return find_active_client(self.database, client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Nothing to store: the token is a signed, self-contained JWT (RFC 9068)."""
        log.info("access token issued", extra={"client_id": request.client.get_client_id()})

    def generate_token(self, grant_type: str, client: RegisteredClient, **kwargs: Any) -> dict[str, Any]:
        """The RFC 6749 §5.1 response, plus ``patient`` for a patient-context client (SMART)."""
        token: dict[str, Any] = super().generate_token(grant_type, client, **kwargs)
        if client.record.patient:
            token["patient"] = client.record.patient
        return token

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> JSONResponse:
        response = JSONResponse(body, status_code=status)
        for name, value in headers:
            if name.lower() != "content-type":
                response.headers[name] = value
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        return response

    def form_request(
        self, method: str, headers: Mapping[str, str], form: dict[str, str], path: str
    ) -> FormRequest:
        """Our request adapter; its URI is the configured public URL (https in production)."""
        return FormRequest(method, self.settings.base_url.rstrip("/") + path, headers, form)


def allow_plain_http_in_development(settings: Settings) -> None:
    """Authlib refuses non-https URLs (RFC 6749 §3.1); production requires an https base URL
    at start-up, development and tests may run on plain http."""
    if settings.env == "development" and not settings.base_url.startswith("https://"):
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
