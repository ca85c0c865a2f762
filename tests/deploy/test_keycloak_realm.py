"""The Keycloak realm of deploy/keycloak/ issues tokens the gateway of docker-compose.yml
accepts (issue 10): issuer, audience, organisation claim and SMART scopes agree with the
FHIR_GATEWAY_* settings; then a token built as Keycloak builds it from that realm (RS256,
its mappers' claims, JWKS with a signing and an encryption key as Keycloak publishes them)
goes through the external-issuer path, its client bound to the mapped Organization."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import respx
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.auth.scopes import parse_scope
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from tests.consent.support import careteam
from tests.deploy.files import environment, keycloak_issuer, mappers, realm, realm_client

PARTNER = "saad-domicile"
FHIR = {"Content-Type": "application/fhir+json"}


def _gateway() -> dict[str, str]:
    return environment("gateway")


def test_the_gateway_trusts_the_realm_issuer() -> None:
    trusted = [i.strip().rstrip("/") for i in _gateway()["FHIR_GATEWAY_TRUSTED_ISSUERS"].split(",")]
    assert keycloak_issuer() in trusted


def test_the_partner_client_is_a_confidential_service_account() -> None:
    client = realm_client(PARTNER)
    assert client["enabled"]
    assert client["serviceAccountsEnabled"]  # grant client_credentials (SMART Backend Services)
    assert not client["publicClient"]
    assert not client["standardFlowEnabled"]
    assert not client["directAccessGrantsEnabled"]
    assert not client["implicitFlowEnabled"]


def test_the_audience_mapper_names_the_gateway_audience() -> None:
    audiences = [
        m["included.custom.audience"] for m in mappers(realm_client(PARTNER), "oidc-audience-mapper")
    ]
    assert audiences == [_gateway()["FHIR_GATEWAY_EXTERNAL_AUDIENCE"]]
    audience = mappers(realm_client(PARTNER), "oidc-audience-mapper")[0]
    assert audience["access.token.claim"] == "true"


def test_the_organization_mapper_fills_the_claim_the_gateway_reads() -> None:
    (config,) = mappers(realm_client(PARTNER), "oidc-hardcoded-claim-mapper")
    assert config["claim.name"] == _gateway()["FHIR_GATEWAY_ISSUER_ORGANIZATION_CLAIM"]
    assert config["claim.value"].startswith("Organization/")
    assert config["access.token.claim"] == "true"
    assert config["jsonType.label"] == "String"


def test_smart_scopes_are_client_scopes_put_in_the_scope_claim() -> None:
    defined = {s["name"]: s for s in realm()["clientScopes"]}
    client = realm_client(PARTNER)
    offered = client["defaultClientScopes"] + client["optionalClientScopes"]
    assert offered
    for name in offered:
        assert name in defined, f"{name} is not a client scope of the realm"
        assert parse_scope(name) is not None, f"{name} is not a SMART v2 scope"
        assert defined[name]["attributes"]["include.in.token.scope"] == "true"
        assert defined[name]["protocol"] == "openid-connect"


def keycloak_claims(client_id: str, requested: list[str], lifetime: int = 300) -> dict[str, Any]:
    """The access token claims Keycloak's client_credentials grant gives ``client_id`` of the
    realm: the standard ones, ``scope`` from its default and requested optional client scopes
    (those marked include.in.token.scope), ``aud`` from audience mappers and the hardcoded claims."""
    client = realm_client(client_id)
    scopes = {s["name"]: s for s in realm()["clientScopes"]}
    granted = list(client["defaultClientScopes"])
    granted += [s for s in requested if s in client["optionalClientScopes"]]
    audiences = [m["included.custom.audience"] for m in mappers(client, "oidc-audience-mapper")]
    now = int(time.time())
    claims: dict[str, Any] = {
        "exp": now + lifetime,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": keycloak_issuer(),
        "aud": audiences[0] if len(audiences) == 1 else audiences,
        "typ": "Bearer",
        "azp": client_id,
        "acr": "1",
        "scope": " ".join(s for s in granted if scopes[s]["attributes"]["include.in.token.scope"] == "true"),
    }
    for config in mappers(client, "oidc-hardcoded-claim-mapper"):
        if config.get("access.token.claim") == "true":
            claims[config["claim.name"]] = config["claim.value"]
    return claims


@pytest.fixture
def realm_keys() -> Iterator[RSAKey]:
    """Keycloak's JWKS (an RS256 signing key and an RSA-OAEP encryption key), over respx."""
    issuer = keycloak_issuer()
    signing = RSAKey.generate_key(2048, parameters={"kid": "kc-sig", "use": "sig", "alg": "RS256"})
    encryption = RSAKey.generate_key(2048, parameters={"kid": "kc-enc", "use": "enc", "alg": "RSA-OAEP"})
    with respx.mock(assert_all_called=False) as mock:
        mock.get(f"{issuer}/.well-known/openid-configuration").respond(
            json={
                "issuer": issuer,
                "jwks_uri": f"{issuer}/protocol/openid-connect/certs",
                "token_endpoint": f"{issuer}/protocol/openid-connect/token",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )
        mock.get(f"{issuer}/protocol/openid-connect/certs").respond(
            json={"keys": [signing.as_dict(private=False), encryption.as_dict(private=False)]}
        )
        yield signing


@pytest.fixture
def compose_app(settings: Settings, database: Database) -> FastAPI:
    """The gateway with the external-issuer settings of docker-compose.yml."""
    env = _gateway()
    return create_app(
        settings.model_copy(
            update={
                "trusted_issuers": env["FHIR_GATEWAY_TRUSTED_ISSUERS"],
                "external_audience": env["FHIR_GATEWAY_EXTERNAL_AUDIENCE"],
                "issuer_organization_claim": env["FHIR_GATEWAY_ISSUER_ORGANIZATION_CLAIM"],
            }
        ),
        database,
    )


def _bearer(key: RSAKey, requested: list[str]) -> dict[str, str]:
    token = jwt.encode(
        {"alg": "RS256", "typ": "JWT", "kid": key.kid}, keycloak_claims(PARTNER, requested), key
    )
    return {"Authorization": f"Bearer {token}"}


def test_a_keycloak_token_of_the_realm_is_accepted_for_its_organization(
    compose_app: FastAPI, realm_keys: RSAKey, fhir: TestClient
) -> None:
    (mapped,) = mappers(realm_client(PARTNER), "oidc-hardcoded-claim-mapper")
    organization = mapped["claim.value"]
    followed = fhir.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()["id"]
    stranger = fhir.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()["id"]
    team = careteam(followed, [(organization, None, None)])
    assert fhir.post("/fhir/CareTeam", json=team, headers=FHIR).status_code == 201

    partner = TestClient(compose_app)
    headers = _bearer(realm_keys, ["system/Patient.rs", "system/Task.cruds"])
    assert partner.get(f"/fhir/Patient/{followed}", headers=headers).status_code == 200
    assert partner.get(f"/fhir/Patient/{stranger}", headers=headers).status_code == 404  # consent
    found = partner.get("/fhir/Patient", headers=headers).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [followed]
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": f"Patient/{followed}"},
    }
    assert partner.post("/fhir/Task", json=task, headers={**headers, **FHIR}).status_code == 201

    audits = fhir.get("/fhir/AuditEvent", params={"_count": "200"}).json()
    partner_agents = [
        agent["who"]
        for entry in audits.get("entry", [])
        for agent in entry["resource"].get("agent", [])
        if agent["who"].get("identifier", {}).get("value") == PARTNER  # client_id from azp
    ]
    assert len(partner_agents) >= 4
    assert all(who.get("reference") == organization for who in partner_agents)


def test_the_token_carries_only_the_requested_scopes(compose_app: FastAPI, realm_keys: RSAKey) -> None:
    partner = TestClient(compose_app)
    headers = _bearer(realm_keys, ["system/Patient.rs"])
    assert partner.get("/fhir/Patient", headers=headers).status_code == 200
    assert partner.get("/fhir/Task", headers=headers).status_code == 403
    unknown = _bearer(realm_keys, ["system/Consent.cruds"])  # not offered to the client: not granted
    assert partner.get("/fhir/Consent", headers=unknown).status_code == 403
