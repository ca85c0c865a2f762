"""The built-in authorization server's endpoints (RFC 6749, RFC 7662, SMART App Launch v2).

``POST /auth/token`` (client_credentials), ``GET /auth/jwks``, ``POST /auth/introspect`` and
``GET /.well-known/smart-configuration``; all open without an access token.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from fhir_gateway.auth.client_auth import OAuthError, authenticate_assertion, authenticate_basic
from fhir_gateway.auth.keys import SigningKeys
from fhir_gateway.auth.scopes import narrow
from fhir_gateway.auth.tokens import issue_access_token
from fhir_gateway.auth.validation import TokenValidator, ensure_client_active
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.settings import Settings
from fhir_gateway.storage.client_repository import ClientRecord

router = APIRouter()
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(exc: OAuthError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="fhir-gateway"'
    return JSONResponse({"error": exc.error, "error_description": exc.description}, exc.status, headers)


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body())[:65536].decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _authenticate(request: Request, form: dict[str, str]) -> ClientRecord:
    settings: Settings = request.app.state.settings
    token_url = settings.base_url.rstrip("/") + "/auth/token"
    with request.app.state.database.transaction(write=True) as conn:
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            return authenticate_basic(conn, authorization)
        if "client_assertion" in form:
            return authenticate_assertion(conn, form, token_url)
    raise OAuthError("invalid_client", "client authentication is required", 401)


@router.post("/auth/token")
async def token(request: Request) -> JSONResponse:
    """RFC 6749 §4.4 client credentials grant."""
    form = await _form(request)
    try:
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "only grant_type=client_credentials is supported")
        client = _authenticate(request, form)
        scope = narrow(form.get("scope"), client.scope)
        if not scope:
            raise OAuthError("invalid_scope", "none of the requested scopes is granted to this client")
    except OAuthError as exc:
        return _oauth_error(exc)
    keys: SigningKeys = request.app.state.signing_keys
    access_token, lifetime = issue_access_token(keys, request.app.state.settings, client, scope)
    body = {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}
    if client.patient:
        body["patient"] = client.patient
    return JSONResponse(body, headers=_NO_STORE)


@router.get("/auth/jwks")
def jwks(request: Request) -> JSONResponse:
    """The public keys that verify our access tokens (RFC 7517 §5)."""
    return JSONResponse(request.app.state.signing_keys.public_jwks())


@router.post("/auth/introspect")
async def introspect(request: Request) -> JSONResponse:
    """RFC 7662 token introspection, for authenticated clients (partner gateways)."""
    form = await _form(request)
    try:
        _authenticate(request, form)
    except OAuthError as exc:
        return _oauth_error(exc)
    validator: TokenValidator = request.app.state.token_validator
    try:
        claims = validator.validate(form.get("token", ""))
        if claims.get("local_client"):
            with request.app.state.database.transaction() as conn:
                ensure_client_active(conn, str(claims.get("client_id", "")))
    except FhirError:
        return JSONResponse({"active": False}, headers=_NO_STORE)
    keep = ("scope", "client_id", "exp", "iat", "nbf", "sub", "aud", "iss", "jti", "organization", "patient")
    return JSONResponse({"active": True, **{k: claims[k] for k in keep if k in claims}}, headers=_NO_STORE)


@router.get("/.well-known/smart-configuration")
def smart_configuration(request: Request) -> JSONResponse:
    """SMART App Launch v2 conformance discovery (conformance.html)."""
    base = request.app.state.settings.base_url.rstrip("/")
    return JSONResponse(
        {
            "issuer": base,
            "token_endpoint": f"{base}/auth/token",
            "jwks_uri": f"{base}/auth/jwks",
            "introspection_endpoint": f"{base}/auth/introspect",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": ["system/*.cruds", "system/*.rs", "user/*.cruds", "patient/*.rs"],
            "capabilities": [
                "client-confidential-asymmetric",
                "client-confidential-symmetric",
                "permission-v2",
                "permission-v1",
            ],
        }
    )
