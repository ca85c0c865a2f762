"""The built-in authorization server's endpoints (RFC 6749, RFC 7662, SMART App Launch v2).

``POST /auth/token`` (client_credentials), ``GET /auth/jwks``, ``POST /auth/introspect`` and
``GET /.well-known/smart-configuration``; all open without an access token.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from fhir_gateway.auth.authorization_server import GatewayAuthorizationServer, TokenIntrospection

router = APIRouter()
MAX_FORM_BYTES = 65536


async def _form_request(request: Request, path: str) -> tuple[GatewayAuthorizationServer, object]:
    body = (await request.body())[:MAX_FORM_BYTES].decode("utf-8", "replace")
    form = dict(parse_qsl(body, keep_blank_values=True))
    server: GatewayAuthorizationServer = request.app.state.authorization_server
    return server, server.form_request(request.method, request.headers, form, path)


@router.post("/auth/token")
async def token(request: Request) -> Response:
    """RFC 6749 §4.4 client credentials grant (SMART Backend Services), by Authlib."""
    server, oauth_request = await _form_request(request, "/auth/token")
    response: Response = await run_in_threadpool(server.create_token_response, oauth_request)
    return response


@router.get("/auth/jwks")
def jwks(request: Request) -> JSONResponse:
    """The public keys that verify our access tokens (RFC 7517 §5)."""
    return JSONResponse(request.app.state.signing_keys.public_jwks())


@router.post("/auth/introspect")
async def introspect(request: Request) -> Response:
    """RFC 7662 token introspection, for authenticated clients (partner gateways), by Authlib."""
    server, oauth_request = await _form_request(request, "/auth/introspect")
    response: Response = await run_in_threadpool(
        server.create_endpoint_response, TokenIntrospection.ENDPOINT_NAME, oauth_request
    )
    return response


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
