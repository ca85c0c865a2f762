"""End to end: a SMART Backend Services client against a live ``fhir-gateway serve``.

A key pair is generated, the client registered with its JWKS through the real CLI, a
signed assertion (RFC 7523, ES384) exchanged for a token, and the real ``fhirpy``
client creates, reads, updates, searches and deletes with it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound
from joserfc import jwt
from joserfc.jwk import ECKey

from tests.e2e.conftest import LiveServer, serving

pytestmark = pytest.mark.e2e

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _register_backend_client(server: LiveServer, tmp_path: Path, name: str, scope: str) -> ECKey:
    key = ECKey.generate_key("P-384", parameters={"kid": f"{name}-key", "alg": "ES384", "use": "sig"})
    jwks = {"keys": [key.as_dict(private=False)]}
    jwks_file = tmp_path / f"{name}.jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    result = server.cli("clients", "add", name, "--scope", scope, "--jwks-file", str(jwks_file), "--trusted")
    assert result.returncode == 0, result.stdout + result.stderr
    return key


def _token(server: LiveServer, name: str, key: ECKey, scope: str) -> str:
    token_url = server.base_url + "/auth/token"
    now = int(time.time())
    claims = {
        "iss": name,
        "sub": name,
        "aud": token_url,
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    assertion = jwt.encode({"alg": "ES384", "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=["ES384"])
    response = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] <= 300
    return str(body["access_token"])


def test_smart_backend_services_flow_with_fhirpy(live_server: LiveServer, tmp_path: Path) -> None:
    scope = "system/*.cruds"
    key = _register_backend_client(live_server, tmp_path, "dac-integration", scope)
    token = _token(live_server, "dac-integration", key, scope)
    client = SyncFHIRClient(live_server.fhir, authorization=f"Bearer {token}")

    patient = client.resource(
        "Patient",
        identifier=[{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "2410375123456"}],
        name=[{"family": "Lefebvre", "given": ["Odette"]}],
        birthDate="1938-05-12",
    )
    patient.save()
    assert patient.id

    plan = client.resource(
        "CarePlan",
        status="active",
        intent="plan",
        title="Plan personnalisé de coordination",
        subject=patient.to_reference(),
    )
    plan.save()
    fetched = client.reference("CarePlan", plan.id).to_resource()
    assert fetched["title"] == "Plan personnalisé de coordination"
    plan_url, bearer = f"{live_server.fhir}/CarePlan/{plan.id}", {"Authorization": f"Bearer {token}"}
    got, head = httpx.get(plan_url, headers=bearer), httpx.head(plan_url, headers=bearer)
    assert (head.status_code, head.content, head.headers["ETag"]) == (200, b"", got.headers["ETag"])
    assert int(head.headers["Content-Length"]) == len(got.content)  # uvicorn sends no body after it

    fetched["status"] = "completed"
    fetched.save()
    assert fetched["meta"]["versionId"] == "2"

    found = (
        client.resources("CarePlan").search(subject=f"Patient/{patient.id}", status="completed").fetch_all()
    )
    assert [p.id for p in found] == [plan.id]
    by_identifier = client.resources("Patient").search(identifier="urn:oid:1.2.250.1.213.1.4.8|2410375123456")
    assert by_identifier.count() == 1

    fetched.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("CarePlan", plan.id).to_resource()


def test_live_server_refuses_requests_without_token(live_server: LiveServer) -> None:
    response = httpx.get(live_server.fhir + "/Patient")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"
    assert httpx.get(live_server.fhir + "/metadata").status_code == 200


def test_fhirpy_follows_cursor_links_bound_to_its_client_on_every_replica(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """fhirpy pages through ``next`` links as given (their ``_cursor``); another client is refused
    the same link (403); a second ``fhir-gateway serve`` on the same database (a replica) follows it."""
    scope = "system/*.cruds"
    owner_key = _register_backend_client(live_server, tmp_path, "pager", scope)
    owner_token = _token(live_server, "pager", owner_key, scope)
    other_key = _register_backend_client(live_server, tmp_path, "bystander", scope)
    other_token = _token(live_server, "bystander", other_key, scope)
    client = SyncFHIRClient(live_server.fhir, authorization=f"Bearer {owner_token}")
    family = f"Pagination-{uuid.uuid4().hex[:8]}"
    for k in range(12):
        client.resource("Patient", name=[{"family": family, "given": [f"n{k:02d}"]}]).save()

    found = client.resources("Patient").search(family=family).sort("_id").limit(5).fetch_all()
    assert len(found) == 12
    assert len({p.id for p in found}) == 12

    first = httpx.get(
        live_server.fhir + "/Patient",
        params={"family": family, "_count": "5"},
        headers={"Authorization": f"Bearer {owner_token}"},
    ).json()
    link = next(x["url"] for x in first["link"] if x["relation"] == "next")
    assert "_cursor=" in link
    assert "_offset" not in link
    refused = httpx.get(link, headers={"Authorization": f"Bearer {other_token}"})
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["code"] == "forbidden"
    assert family not in refused.text
    assert httpx.get(link, headers={"Authorization": f"Bearer {owner_token}"}).status_code == 200

    url = live_server.env["FHIR_GATEWAY_DATABASE_URL"]
    with serving(url, tmp_path, base_url=live_server.base_url) as replica:
        moved = link.replace(live_server.base_url, replica.base_url)
        answer = httpx.get(moved, headers={"Authorization": f"Bearer {owner_token}"})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["entry"]) == 5
        assert httpx.get(moved, headers={"Authorization": f"Bearer {other_token}"}).status_code == 403
