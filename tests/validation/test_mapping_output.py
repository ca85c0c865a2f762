"""What the partner mappings produce (issue 5) validates against the project's profiles.

Every contract sample of ../shared/partner-formats/samples is imported through the real
CLI; each resource the import wrote is then checked against the profile of its kind.

The mappings name the project's code systems by the canonical URLs of profiles/
(``https://fhir-gateway.org/fhir/CodeSystem/<name>``): the resources are checked as stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fhir_gateway.mapping.service")

from fhir_gateway.mapping.importer import import_date  # noqa: E402
from fhir_gateway.storage.database import Database  # noqa: E402
from fhir_gateway.validation.registry import registry  # noqa: E402
from tests.mappings.conftest import DC, MDPH_CLIENT_ORG, SAAD, SAMPLES, CliRun, stored  # noqa: E402

BASE = "https://fhir-gateway.org/fhir/StructureDefinition/"
DC_BENEFICIARIES = (
    Path(__file__).resolve().parents[1] / "mappings" / "domicile-connect-interventions" / "setup"
)
# beneficiaries without "Date début prise en charge": the import date is the participant's start
START_ABSENT = (
    Path(__file__).resolve().parents[1] / "mappings" / "saad-beneficiaires" / "cases" / "start-absent.csv"
)
IMPORTS = [
    ("mdph-decisions", MDPH_CLIENT_ORG, SAMPLES / "mdph-decisions.csv"),
    ("saad-beneficiaires", SAAD, SAMPLES / "saad-beneficiaires.csv"),
    ("saad-beneficiaires", SAAD, START_ABSENT),
    ("saad-plan-aide", SAAD, SAMPLES / "saad-plan-aide.csv"),
    ("saad-interventions", SAAD, SAMPLES / "saad-interventions.csv"),
    ("saad-beneficiaires", DC, DC_BENEFICIARIES / "beneficiaires.csv"),
    ("domicile-connect-interventions", DC, SAMPLES / "domicile-connect-interventions.csv"),
]
TASK_PROFILES = {
    "suivi-orientation": "fg-task-orientation-follow-up",
    "alerte-vigilance": "fg-task-vigilance-alert",
}
PROFILE_OF_TYPE = {
    "Patient": "fg-patient",
    "Organization": "fg-organization",
    "CarePlan": "fg-careplan-coordination",
    "CareTeam": "fg-careteam-circle-of-care",
    "ServiceRequest": "fg-servicerequest-mdph-right",
}


def _profile_for(resource: dict[str, Any]) -> str:
    if resource["resourceType"] != "Task":
        return PROFILE_OF_TYPE[resource["resourceType"]]
    codes = [c.get("code") for c in (resource.get("code") or {}).get("coding", [])]
    return next((TASK_PROFILES[c] for c in codes if c in TASK_PROFILES), "fg-task-home-care-visit")


def _problems(cli: CliRun, database: Database) -> list[str]:
    for fmt, organization, path in IMPORTS:
        result = cli("import", fmt, str(path), "--organization", organization)
        assert result.exit_code == 0, (fmt, result.output)
    problems: list[str] = []
    seen: set[str] = set()
    for res_type in (*PROFILE_OF_TYPE, "Task"):
        for resource in stored(database, res_type):
            if resource["meta"]["versionId"] == "1" and res_type == "Organization" and "name" in resource:
                continue  # set up by the test (organizations fixture), untouched by the import
            name = _profile_for(resource)
            profile = registry().get(BASE + name)
            assert profile is not None
            seen.add(name)
            problems += [
                f"{name} {res_type}/{resource['id']}: {i.diagnostics}" for i in profile.check(resource)
            ]
    assert seen >= {*PROFILE_OF_TYPE.values(), *TASK_PROFILES.values(), "fg-task-home-care-visit"}, seen
    return problems


def test_imported_samples_validate_as_stored(cli: CliRun, organizations: None, database: Database) -> None:
    assert _problems(cli, database) == []
    without_start = [
        team
        for team in stored(database, "CareTeam")
        if any(p.get("period", {}).get("start") == import_date("Europe/Paris") for p in team["participant"])
    ]
    assert without_start  # the rows without a start date were checked too
