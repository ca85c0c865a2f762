"""Adversarial token matrix (issue 3): every forged, stale or misdirected token is refused.

Each case goes through HTTP against the real app and database; none may leak data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from fhir_gateway.auth import tokens
from fhir_gateway.auth.keys import ALGORITHM
from fhir_gateway.storage import client_repository
from fhir_gateway.storage.database import Database
from tests.consent.support import consent, provision
from tests.support.auth import issue_token, register_client

FHIR = "application/fhir+json"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(app: FastAPI, client_id: str, **overrides: Any) -> dict[str, Any]:
    settings = app.state.settings
    now = int(time.time())
    claims = {
        "iss": settings.base_url,
        "aud": settings.fhir_base,
        "sub": client_id,
        "client_id": client_id,
        "scope": "system/*.cruds",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "trusted": True,
    }
    claims.update(overrides)
    return claims


def _signed(app: FastAPI, claims: dict[str, Any]) -> str:
    key = app.state.signing_keys.current()
    return jwt.encode({"alg": ALGORITHM, "kid": key.kid}, claims, key)


@pytest.fixture
def secret_data(fhir: TestClient) -> str:
    """A person's record that no refused token may see."""
    created = fhir.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Secret"}]},
        headers={"Content-Type": FHIR},
    )
    return str(created.json()["id"])


@pytest.fixture
def client_id(database: Database) -> str:
    cid, _ = register_client(database, "matrix", "system/*.cruds", trusted=True)
    return cid


def _refused(http: TestClient, token: str | None, patient_id: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = http.get(f"/fhir/Patient/{patient_id}", headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "Secret" not in response.text
    listing = http.get("/fhir/Patient", headers=headers)
    assert listing.status_code == 401


def test_no_token(http: TestClient, secret_data: str) -> None:
    response = http.get(f"/fhir/Patient/{secret_data}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="fhir-gateway"'


def test_malformed_token(http: TestClient, secret_data: str) -> None:
    _refused(http, "not-a-jwt", secret_data)
    _refused(http, "a.b.c", secret_data)


def test_expired_token(app: FastAPI, http: TestClient, client_id: str, secret_data: str) -> None:
    past = int(time.time()) - 3600
    _refused(http, _signed(app, _claims(app, client_id, iat=past, nbf=past, exp=past + 300)), secret_data)


def test_a_token_used_before_is_refused_once_expired(
    app: FastAPI, http: TestClient, client_id: str, secret_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AccessContext built for a token is kept for its next requests; its expiry still holds."""
    token = _signed(app, _claims(app, client_id))
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get(f"/fhir/Patient/{secret_data}", headers=headers).status_code == 200
    assert http.get(f"/fhir/Patient/{secret_data}", headers=headers).status_code == 200
    later = time.time() + 3600
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    _refused(http, token, secret_data)


def test_the_first_authorization_header_is_the_one_read(
    app: FastAPI, http: TestClient, client_id: str, secret_data: str
) -> None:
    good = f"Bearer {_signed(app, _claims(app, client_id))}"
    both = [("Authorization", "Bearer forged.token.x"), ("Authorization", good)]
    assert http.get(f"/fhir/Patient/{secret_data}", headers=both).status_code == 401
    assert http.get(f"/fhir/Patient/{secret_data}", headers=both[::-1]).status_code == 200


def test_not_yet_valid_token(app: FastAPI, http: TestClient, client_id: str, secret_data: str) -> None:
    future = int(time.time()) + 3600
    _refused(http, _signed(app, _claims(app, client_id, nbf=future, exp=future + 300)), secret_data)


def test_wrong_audience(app: FastAPI, http: TestClient, client_id: str, secret_data: str) -> None:
    _refused(http, _signed(app, _claims(app, client_id, aud="https://other.example/fhir")), secret_data)


def test_wrong_issuer(app: FastAPI, http: TestClient, client_id: str, secret_data: str) -> None:
    _refused(http, _signed(app, _claims(app, client_id, iss="https://evil.example")), secret_data)


def test_alg_none(app: FastAPI, http: TestClient, client_id: str, secret_data: str) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(app, client_id)).encode())
    _refused(http, f"{header}.{payload}.", secret_data)


def test_hs256_signed_with_the_public_key(
    app: FastAPI, http: TestClient, client_id: str, secret_data: str
) -> None:
    public = json.dumps(app.state.signing_keys.public_jwks()["keys"][0]).encode()
    kid = app.state.signing_keys.current().kid
    header = _b64(json.dumps({"alg": "HS256", "kid": kid}).encode())
    payload = _b64(json.dumps(_claims(app, client_id)).encode())
    signature = _b64(hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    _refused(http, f"{header}.{payload}.{signature}", secret_data)


def test_unknown_kid(app: FastAPI, http: TestClient, client_id: str, secret_data: str) -> None:
    stranger = ECKey.generate_key("P-256", parameters={"kid": "stranger"})
    token = jwt.encode({"alg": "ES256", "kid": "stranger"}, _claims(app, client_id), stranger)
    _refused(http, token, secret_data)


def test_tampered_signature(app: FastAPI, http: TestClient, client_id: str, secret_data: str) -> None:
    token = _signed(app, _claims(app, client_id))
    header, payload, signature = token.split(".")
    forged_payload = _b64(
        json.dumps(_claims(app, client_id, scope="system/*.cruds", trusted=True, sub="someone-else")).encode()
    )
    _refused(http, f"{header}.{forged_payload}.{signature}", secret_data)
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    _refused(http, f"{header}.{payload}.{flipped}", secret_data)


def test_revoked_client_tokens_stop_at_once(http: TestClient, database: Database, secret_data: str) -> None:
    cid, secret = register_client(database, "soon-revoked", "system/*.cruds", trusted=True)
    token = issue_token(http, cid, secret)
    ok = http.get(f"/fhir/Patient/{secret_data}", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    with database.transaction(write=True) as conn:
        client_repository.revoke_client(conn, cid)
    _refused(http, token, secret_data)
    again = http.post("/auth/token", data={"grant_type": "client_credentials"}, auth=(cid, secret))
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_client"


@pytest.mark.parametrize("caller", ["trusted", "partner"])
def test_revoked_client_refused_on_every_read_path(
    http: TestClient, fhir: TestClient, database: Database, secret_data: str, caller: str
) -> None:
    """Read requests fold the client check into their query: each path still answers 401, for a
    trusted client and for a partner whose reads consent decides (``Ctx.decided_read``)."""
    if caller == "trusted":
        cid, secret = register_client(database, "read-paths", "system/*.cruds", trusted=True)
    else:
        org = f"Organization/reader-{uuid.uuid4().hex[:6]}"
        cid, secret = register_client(database, "read-paths", "system/*.cruds", organization=org)
        permit = consent(secret_data, provision("permit", actors=[org]))
        assert fhir.post("/fhir/Consent", json=permit, headers={"Content-Type": FHIR}).status_code == 201
    headers = {"Authorization": f"Bearer {issue_token(http, cid, secret)}"}
    paths = [
        f"/fhir/Patient/{secret_data}",  # a row found
        "/fhir/Patient/unknown-id",  # no row
        f"/fhir/Patient/{secret_data}/_history/1",
        f"/fhir/Patient/{secret_data}/_history",
        "/fhir/Patient?family=Secret",  # a page with matches
        "/fhir/Patient?family=Nobody",  # an empty page
        "/fhir/Task?_summary=count",
        "/fhir/_history",
    ]
    before = {p: http.get(p, headers=headers).status_code for p in paths}
    assert before[paths[0]] == 200, before
    assert before[paths[1]] == 404, before
    with database.transaction(write=True) as conn:
        client_repository.revoke_client(conn, cid)
        audited_before = conn.exec_driver_sql(
            "SELECT count(*) FROM resource WHERE res_type = 'AuditEvent'"
        ).scalar_one()
    for path in paths:
        response = http.get(path, headers=headers)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
        assert "Secret" not in response.text
    with database.transaction() as conn:
        audited_after = conn.exec_driver_sql(
            "SELECT count(*) FROM resource WHERE res_type = 'AuditEvent'"
        ).scalar_one()
    assert audited_after == audited_before  # nothing recorded as served to the revoked client


def test_wrong_client_secret(http: TestClient, database: Database) -> None:
    cid, _ = register_client(database, "basic", "system/*.rs", trusted=True)
    response = http.post("/auth/token", data={"grant_type": "client_credentials"}, auth=(cid, "wrong"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_unsupported_grant_and_scope_outside_registration(http: TestClient, database: Database) -> None:
    cid, secret = register_client(database, "narrow", "system/Task.rs", trusted=True)
    grant = http.post("/auth/token", data={"grant_type": "password"}, auth=(cid, secret))
    assert grant.json()["error"] == "unsupported_grant_type"
    scope = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/Patient.cruds"},
        auth=(cid, secret),
    )
    assert scope.json()["error"] == "invalid_scope"
    narrowed = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/Task.r system/Patient.r"},
        auth=(cid, secret),
    )
    assert narrowed.json()["scope"] == "system/Task.r"


def test_key_rotation_keeps_old_tokens_valid_until_they_expire(
    app: FastAPI, http: TestClient, database: Database, secret_data: str
) -> None:
    cid, secret = register_client(database, "rotating", "system/*.cruds", trusted=True)
    old_token = issue_token(http, cid, secret)
    old_kid = app.state.signing_keys.current().kid
    new_kid = app.state.signing_keys.rotate()
    assert new_kid != old_kid
    new_token = issue_token(http, cid, secret)
    assert json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"] == new_kid
    for token in (old_token, new_token):
        ok = http.get(f"/fhir/Patient/{secret_data}", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    published = {k["kid"] for k in http.get("/auth/jwks").json()["keys"]}
    assert {old_kid, new_kid} <= published
