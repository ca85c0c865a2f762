"""SMART Backend Services client authentication (RFC 7523): RS384/ES384 assertions, replay,
lifetime and audience checks, through POST /auth/token."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, RSAKey
from starlette.testclient import TestClient

from fhir_gateway.auth.registry import register
from fhir_gateway.storage.database import Database
from tests.support.auth import make_private_key_jwt

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_URL = "http://testserver/auth/token"


def _client(database: Database, tmp_path: Path, name: str, key: ECKey | RSAKey) -> str:
    jwks = tmp_path / f"{name}.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    register(database, name, "system/*.rs", jwks_file=jwks, organization="Organization/saad-1")
    return name


def _exchange(http: TestClient, assertion: str) -> tuple[int, dict[str, object]]:
    response = http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": ASSERTION,
            "client_assertion": assertion,
        },
    )
    return response.status_code, dict(response.json())


@pytest.fixture
def ec_key() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": "ec-1", "alg": "ES384"})


def test_es384_assertion_gives_a_token(
    http: TestClient, database: Database, tmp_path: Path, ec_key: ECKey
) -> None:
    name = _client(database, tmp_path, "es-client", ec_key)
    status, body = _exchange(http, make_private_key_jwt(name, ec_key, TOKEN_URL))
    assert status == 200, body
    assert body["token_type"] == "Bearer"
    introspected = http.post(
        "/auth/introspect",
        data={
            "client_assertion_type": ASSERTION,
            "token": body["access_token"],
            "client_assertion": make_private_key_jwt(name, ec_key, TOKEN_URL),
        },
    )
    assert introspected.json()["active"] is True
    assert introspected.json()["organization"] == "Organization/saad-1"


def test_rs384_assertion_gives_a_token(http: TestClient, database: Database, tmp_path: Path) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "alg": "RS384"})
    name = _client(database, tmp_path, "rs-client", key)
    status, body = _exchange(http, make_private_key_jwt(name, key, TOKEN_URL, alg="RS384"))
    assert status == 200, body


def test_access_token_is_an_rfc9068_jwt_named_in_the_jwks(
    http: TestClient, database: Database, tmp_path: Path, ec_key: ECKey
) -> None:
    name = _client(database, tmp_path, "profile", ec_key)
    _, body = _exchange(http, make_private_key_jwt(name, ec_key, TOKEN_URL))
    header = json.loads(base64.urlsafe_b64decode(str(body["access_token"]).split(".")[0] + "=="))
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    published = {key["kid"] for key in http.get("/auth/jwks").json()["keys"]}
    assert header["kid"] in published
    assert body["expires_in"] == 300
    assert body["scope"] == "system/*.rs"
    claims = json.loads(base64.urlsafe_b64decode(str(body["access_token"]).split(".")[1] + "=="))
    assert claims["fhirUser"] == "http://testserver/fhir/Organization/saad-1"
    assert claims["organization"] == "Organization/saad-1"


def test_assertion_with_a_symmetric_algorithm_is_refused(
    http: TestClient, database: Database, tmp_path: Path, ec_key: ECKey
) -> None:
    name = _client(database, tmp_path, "hs-client", ec_key)
    header = base64.urlsafe_b64encode(b'{"alg":"HS256"}').rstrip(b"=").decode()
    payload = (
        base64.urlsafe_b64encode(
            json.dumps({"iss": name, "sub": name, "aud": TOKEN_URL, "exp": 9999999999, "jti": "x"}).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    status, body = _exchange(http, f"{header}.{payload}.c2lnbmF0dXJl")
    assert status == 401
    assert body["error"] == "invalid_client"


def test_replayed_assertion_is_refused(
    http: TestClient, database: Database, tmp_path: Path, ec_key: ECKey
) -> None:
    name = _client(database, tmp_path, "replay", ec_key)
    assertion = make_private_key_jwt(name, ec_key, TOKEN_URL, jti="same-jti")
    assert _exchange(http, assertion)[0] == 200
    status, body = _exchange(http, assertion)
    assert status == 401
    assert "replay" in str(body["error_description"])


def test_assertion_living_more_than_five_minutes_is_refused(
    http: TestClient, database: Database, tmp_path: Path, ec_key: ECKey
) -> None:
    name = _client(database, tmp_path, "long", ec_key)
    status, body = _exchange(http, make_private_key_jwt(name, ec_key, TOKEN_URL, lifetime=900))
    assert status == 401
    assert "five minutes" in str(body["error_description"])


def test_assertion_for_another_audience_is_refused(
    http: TestClient, database: Database, tmp_path: Path, ec_key: ECKey
) -> None:
    name = _client(database, tmp_path, "aud", ec_key)
    assert _exchange(http, make_private_key_jwt(name, ec_key, "https://elsewhere/token"))[0] == 401


def test_assertion_signed_by_another_key_is_refused(
    http: TestClient, database: Database, tmp_path: Path, ec_key: ECKey
) -> None:
    name = _client(database, tmp_path, "other-key", ec_key)
    stranger = ECKey.generate_key("P-384", parameters={"kid": "ec-1", "alg": "ES384"})
    assert _exchange(http, make_private_key_jwt(name, stranger, TOKEN_URL))[0] == 401


def test_introspection_of_garbage_is_inactive(
    http: TestClient, database: Database, tmp_path: Path, ec_key: ECKey
) -> None:
    name = _client(database, tmp_path, "intro", ec_key)
    response = http.post(
        "/auth/introspect",
        data={
            "client_assertion_type": ASSERTION,
            "token": "garbage",
            "client_assertion": make_private_key_jwt(name, ec_key, TOKEN_URL),
        },
    )
    assert response.json() == {"active": False}


def test_discovery_documents(http: TestClient) -> None:
    smart = http.get("/.well-known/smart-configuration").json()
    assert smart["token_endpoint"] == TOKEN_URL
    assert "private_key_jwt" in smart["token_endpoint_auth_methods_supported"]
    assert smart["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    jwks = http.get("/auth/jwks").json()
    assert all("d" not in key for key in jwks["keys"])
    metadata = http.get("/fhir/metadata").json()
    oauth = metadata["rest"][0]["security"]["extension"][0]["extension"]
    assert {"url": "token", "valueUri": TOKEN_URL} in oauth
