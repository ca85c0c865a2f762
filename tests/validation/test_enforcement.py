"""``FHIR_GATEWAY_ENFORCE_PROFILES``: every write of a type meets the deployment's profile."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from fhir_gateway.app import create_app
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.validation.profiles import configure, parse_enforced
from fhir_gateway.validation.registry import default_folder, registry
from tests.validation.examples import BASE, valid

JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def settings(database: Database) -> Settings:
    return Settings(
        database_url=database.url,
        base_url="http://testserver",
        audit_mode="sync",
        subscription_worker_in_serve=False,
        enforce_profiles=f"Patient={BASE}fg-patient, Consent={BASE}fg-consent",
    )


def test_enforced_type_is_validated_without_a_claim(fhir: TestClient) -> None:
    resource = valid("fg-patient")
    del resource["meta"]
    assert fhir.post("/fhir/Patient", json=resource, headers=JSON).status_code == 201
    del resource["birthDate"]
    answer = fhir.post("/fhir/Patient", json=resource, headers=JSON)
    assert answer.status_code == 422
    assert answer.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    consent = valid("fg-consent")
    del consent["meta"], consent["provision"]["purpose"]
    assert fhir.post("/fhir/Consent", json=consent, headers=JSON).status_code == 422


def test_other_types_are_free(fhir: TestClient) -> None:
    task = {"resourceType": "Task", "status": "requested", "intent": "order"}
    assert fhir.post("/fhir/Task", json=task, headers=JSON).status_code == 201


def test_validate_applies_the_enforced_profile(fhir: TestClient) -> None:
    answer = fhir.post("/fhir/Patient/$validate", json={"resourceType": "Patient"}, headers=JSON)
    assert {e for i in answer.json()["issue"] for e in i["expression"]} == {
        "Patient.identifier",
        "Patient.name",
        "Patient.birthDate",
    }


@pytest.mark.parametrize(
    "spec",
    ["Patient", f"Task={BASE}fg-patient", f"Patient={BASE}fg-nothing", "=x"],
)
def test_bad_settings_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="FHIR_GATEWAY_ENFORCE_PROFILES"):
        parse_enforced(spec)


def test_empty_setting_enforces_nothing() -> None:
    assert parse_enforced("") == {}


def test_profiles_folder_is_a_setting(tmp_path: Path, database: Database) -> None:
    (tmp_path / "StructureDefinition").mkdir()
    source = default_folder() / "StructureDefinition" / "fg-organization.json"
    (tmp_path / "StructureDefinition" / "fg-organization.json").write_text(source.read_text())
    try:
        create_app(Settings(database_url=database.url, profiles_dir=str(tmp_path)), database)
        assert sorted(registry().profiles) == [f"{BASE}fg-organization"]
    finally:
        configure("")
    assert len(registry().profiles) == 9
