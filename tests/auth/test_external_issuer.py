"""Tokens of an external OIDC issuer (e.g. Keycloak): discovery and JWKS over httpx, stubbed
with respx; cached, refetched on an unknown kid, at most once per interval."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.auth import external
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database

ISSUER = "https://keycloak.example/realms/dac"
FHIR = "application/fhir+json"


def _token(key: ECKey, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "fhir-gateway",
        "azp": "saad-software",
        "sub": "svc-saad",
        "scope": "system/*.rs",
        "organization": "saad-7",
        "iat": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


@pytest.fixture
def keycloak() -> Any:
    keys = {"first": ECKey.generate_key("P-256", parameters={"kid": "first"})}
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{ISSUER}/.well-known/openid-configuration").respond(
            json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs"}
        )
        certs = mock.get(f"{ISSUER}/protocol/openid-connect/certs").mock(
            side_effect=lambda _request: httpx.Response(
                200, json={"keys": [k.as_dict(private=False) for k in keys.values()]}
            )
        )
        yield keys, certs


@pytest.fixture
def external_app(settings: Settings, database: Database) -> FastAPI:
    return create_app(settings.model_copy(update={"trusted_issuers": ISSUER}), database)


def test_external_token_is_accepted_and_mapped_to_its_organization(
    external_app: FastAPI, keycloak: Any
) -> None:
    keys, _ = keycloak
    client = TestClient(external_app)
    response = client.get("/fhir/Organization", headers={"Authorization": f"Bearer {_token(keys['first'])}"})
    assert response.status_code == 200, response.text
    audit = external_app.state.audit_writer  # sync mode: written already
    assert audit.pending() == 0


def test_unknown_kid_refetches_once_then_is_rate_limited(
    external_app: FastAPI, keycloak: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, certs = keycloak
    client = TestClient(external_app)
    assert (
        client.get(
            "/fhir/Organization", headers={"Authorization": f"Bearer {_token(keys['first'])}"}
        ).status_code
        == 200
    )
    assert certs.call_count == 1
    keys["rotated"] = ECKey.generate_key("P-256", parameters={"kid": "rotated"})
    monkeypatch.setattr(external, "REFETCH_SECONDS", 0.0)
    assert (
        client.get(
            "/fhir/Organization", headers={"Authorization": f"Bearer {_token(keys['rotated'])}"}
        ).status_code
        == 200
    )
    assert certs.call_count == 2
    monkeypatch.setattr(external, "REFETCH_SECONDS", 3600.0)
    forged = ECKey.generate_key("P-256", parameters={"kid": "forged"})
    for _ in range(5):
        assert (
            client.get(
                "/fhir/Organization", headers={"Authorization": f"Bearer {_token(forged)}"}
            ).status_code
            == 401
        )
    assert certs.call_count == 2  # the forged kid made no request: refetches are rate-limited


def test_external_token_with_wrong_audience_or_issuer_is_refused(
    external_app: FastAPI, keycloak: Any
) -> None:
    keys, _ = keycloak
    client = TestClient(external_app)
    for token in (
        _token(keys["first"], aud="another-api"),
        _token(keys["first"], iss="https://other.example"),
    ):
        assert (
            client.get("/fhir/Organization", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        )


def test_external_partner_is_bound_by_consent(external_app: FastAPI, keycloak: Any, fhir: TestClient) -> None:
    keys, _ = keycloak
    patient = fhir.post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR}
    ).json()
    client = TestClient(external_app)
    response = client.get(
        f"/fhir/Patient/{patient['id']}", headers={"Authorization": f"Bearer {_token(keys['first'])}"}
    )
    assert response.status_code == 404


def _audited_organizations(fhir: TestClient, client_id: str) -> list[str | None]:
    events = fhir.get("/fhir/AuditEvent", params={"_count": "100"}).json().get("entry", [])
    return [
        agent["who"].get("reference")
        for entry in events
        for agent in entry["resource"]["agent"]
        if agent["who"].get("identifier", {}).get("value") == client_id
    ]


def test_organization_claim_forms(external_app: FastAPI, keycloak: Any, fhir: TestClient) -> None:
    keys, _ = keycloak
    client = TestClient(external_app)
    for value, expected in (
        (["saad-8"], 200),  # a multivalued mapper with one value
        (["saad-8", "saad-9"], 401),  # which one would the client speak for?
        ("Organization/a/b", 401),
        (42, 200),
    ):
        token = _token(keys["first"], organization=value, azp=f"client-{expected}")
        response = client.get("/fhir/Organization", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == expected, (value, response.text)
    assert set(_audited_organizations(fhir, "client-200")) == {"Organization/saad-8", "Organization/42"}


def test_only_the_configured_claim_names_the_organization(
    settings: Settings, database: Database, keycloak: Any, fhir: TestClient
) -> None:
    keys, _ = keycloak
    app = create_app(
        settings.model_copy(
            update={"trusted_issuers": ISSUER, "issuer_organization_claim": "fhir_organization"}
        ),
        database,
    )
    client = TestClient(app)
    forged = _token(keys["first"], organization="Organization/forged", azp="other-claim")
    assert client.get("/fhir/Organization", headers={"Authorization": f"Bearer {forged}"}).status_code == 200
    assert _audited_organizations(fhir, "other-claim") == [None]
    mapped = _token(keys["first"], fhir_organization="Organization/saad-3", azp="mapped-claim")
    assert client.get("/fhir/Organization", headers={"Authorization": f"Bearer {mapped}"}).status_code == 200
    assert _audited_organizations(fhir, "mapped-claim") == ["Organization/saad-3"]
