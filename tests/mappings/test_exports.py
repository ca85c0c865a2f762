"""Exports through the real CLI (partner-formats/README.md §1, §2, §3): mdph-decisions round
trip, orientation follow-up back to the MDPH, requests a home-care service must answer."""

from __future__ import annotations

from pathlib import Path

from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from tests.mappings.conftest import MDPH_CLIENT_ORG, SAAD, SAMPLES, CliRun, put, stored, versions

MDPH_SAMPLE = SAMPLES / "mdph-decisions.csv"


def _export(cli: CliRun, fmt: str, organization: str, out: Path, *args: str) -> list[str]:
    result = cli("export", fmt, "--organization", organization, "--output", str(out), *args)
    assert result.exit_code == 0, result.output
    return out.read_bytes().decode("utf-8").splitlines()


def test_mdph_decisions_round_trip(
    cli: CliRun, organizations: None, database: Database, tmp_path: Path
) -> None:
    assert cli("import", "mdph-decisions", str(MDPH_SAMPLE), "--organization", MDPH_CLIENT_ORG).exit_code == 0
    before = versions(database)
    lines = _export(cli, "mdph-decisions", MDPH_CLIENT_ORG, tmp_path / "out.csv")
    sample = MDPH_SAMPLE.read_text(encoding="utf-8").splitlines()
    assert lines[0] == sample[0]
    assert sorted(lines[1:]) == sorted(sample[1:])
    again = cli("import", "mdph-decisions", str(tmp_path / "out.csv"), "--organization", MDPH_CLIENT_ORG)
    assert "created 0, updated 0" in again.output
    assert versions(database) == before


def test_orientation_follow_up(
    cli: CliRun, organizations: None, database: Database, settings: Settings, tmp_path: Path
) -> None:
    assert cli("import", "mdph-decisions", str(MDPH_SAMPLE), "--organization", MDPH_CLIENT_ORG).exit_code == 0
    tasks = {t["identifier"][0]["value"]: t for t in stored(database, "Task")}
    admitted = tasks["DEC-2025-3522/13.4"]
    admitted["status"] = "completed"
    admitted["businessStatus"] = {"coding": [{"code": "ADMISSION"}]}
    admitted["lastModified"] = "2026-01-05T10:00:00+01:00"
    put(database, settings, admitted)
    refused = tasks["DEC-2025-3301/7.8"]
    refused["status"] = "rejected"
    refused["statusReason"] = {"text": "Pas de place avant septembre"}
    put(database, settings, refused)
    lines = _export(cli, "mdph-suivi-orientations", MDPH_CLIENT_ORG, tmp_path / "out.csv")
    day = _today(refused, database)
    assert lines == [
        "code_mdph;numero_individu;id_decision;type_droit;finess_structure;statut;date_statut;motif",
        f"042;I0004211;DEC-2025-3301;7.8;420002345;REFUS;{day};Pas de place avant septembre",
        "042;I0009120;DEC-2025-3522;13.4;420007788;ADMISSION;05/01/2026;",
    ]
    # the structure's answers survive a re-import of the MDPH file
    assert cli("import", "mdph-decisions", str(MDPH_SAMPLE), "--organization", MDPH_CLIENT_ORG).exit_code == 0
    assert _export(cli, "mdph-suivi-orientations", MDPH_CLIENT_ORG, tmp_path / "again.csv") == lines
    assert (
        len(
            _export(
                cli, "mdph-suivi-orientations", MDPH_CLIENT_ORG, tmp_path / "n.csv", "--since", "2999-01-01"
            )
        )
        == 1
    )


def _today(task: dict[str, object], database: Database) -> str:
    current = next(t for t in stored(database, "Task") if t["id"] == task["id"])
    day = str(current["meta"]["lastUpdated"])[:10]  # type: ignore[index]
    return f"{day[8:10]}/{day[5:7]}/{day[:4]}"


def test_saad_requests_to_answer(
    cli: CliRun, organizations: None, database: Database, settings: Settings, tmp_path: Path
) -> None:
    assert (
        cli(
            "import", "saad-beneficiaires", str(SAMPLES / "saad-beneficiaires.csv"), "--organization", SAAD
        ).exit_code
        == 0
    )
    patient = next(p for p in stored(database, "Patient") if p["identifier"][0]["value"] == "B0101")
    put(
        database,
        settings,
        {
            "resourceType": "Task",
            "id": "ask-1",
            "status": "requested",
            "intent": "order",
            "code": {
                "coding": [
                    {
                        "system": "https://fhir-gateway.org/fhir/CodeSystem/prestation-aide-domicile",
                        "code": "courses",
                    }
                ]
            },
            "for": {"reference": f"Patient/{patient['id']}"},
            "owner": {"reference": SAAD},
            "description": "Courses ; liste jointe",
            "restriction": {
                "period": {"start": "2025-12-02T10:00:00+01:00", "end": "2025-12-02T11:00:00+01:00"}
            },
        },
    )
    out = tmp_path / "out.csv"
    assert cli("export", "saad-demandes", "--organization", SAAD, "--output", str(out)).exit_code == 0
    lines = out.read_bytes().decode("cp1252").split("\r\n")
    assert lines[0].endswith(";Observation;Référence demande")
    assert lines[1] == ';B0101;02/12/2025;10:00;11:00;;;;Courses;Demandée;;;;;"Courses ; liste jointe";ask-1'
    assert lines[2:] == [""]
