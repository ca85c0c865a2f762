"""People found again, never duplicated, and the service joining and leaving the circle of
care (partner-formats/README.md §1, §3), through the real CLI."""

from __future__ import annotations

from pathlib import Path

from typer.testing import Result

from fhir_gateway.storage.database import Database
from tests.mappings.conftest import MDPH_CLIENT_ORG, SAAD, SAMPLES, CliRun, stored

HEAD = (SAMPLES / "saad-beneficiaires.csv").read_bytes().splitlines()[0].decode("cp1252")


def _file(tmp_path: Path, name: str, *rows: str, encoding: str = "cp1252") -> str:
    path = tmp_path / name
    path.write_bytes("\r\n".join([HEAD, *rows, ""]).encode(encoding))
    return str(path)


def test_same_person_from_mdph_and_home_care_by_nir(
    cli: CliRun, organizations: None, database: Database, tmp_path: Path
) -> None:
    assert (
        cli(
            "import", "mdph-decisions", str(SAMPLES / "mdph-decisions.csv"), "--organization", MDPH_CLIENT_ORG
        ).exit_code
        == 0
    )
    assert len(stored(database, "Patient")) == 3
    row = "S-77;M.;PETIT;DURAND;Marc;02/06/1978;178066942012368;;;;;;;;01/12/2025;;Actif"
    result = _import_line(cli, tmp_path, "b.csv", row)
    assert result.exit_code == 0, result.output
    patients = stored(database, "Patient")
    assert len(patients) == 3  # found again by INS-NIR, not duplicated
    durand = next(p for p in patients if any(i["value"] == "S-77" for i in p["identifier"]))
    systems = sorted(i["system"] for i in durand["identifier"])
    assert systems == [
        "urn:fhir-gateway:mdph-042:individu",
        "urn:fhir-gateway:saad-42:beneficiaire",
        "urn:oid:1.2.250.1.213.1.4.8",
    ]
    # and the MDPH file again finds the same person by its number
    again = cli(
        "import", "mdph-decisions", str(SAMPLES / "mdph-decisions.csv"), "--organization", MDPH_CLIENT_ORG
    )
    assert again.exit_code == 0
    assert len(stored(database, "Patient")) == 3


def _import_line(cli: CliRun, tmp_path: Path, name: str, line: str) -> Result:
    """``saad-beneficiaires`` import of a file holding ``line``, for the service SAAD."""
    return cli("import", "saad-beneficiaires", _file(tmp_path, name, line), "--organization", SAAD)


def test_service_joins_then_leaves_the_care_team(
    cli: CliRun, organizations: None, database: Database, tmp_path: Path
) -> None:
    active = "B9;Mme;ROUX;;Léa;01/01/1940;;;;;;;;;01/02/2024;;Actif"
    assert _import_line(cli, tmp_path, "a.csv", active).exit_code == 0
    closed_without_end = "B9;Mme;ROUX;;Léa;01/01/1940;;;;;;;;;01/02/2024;;Clos"
    refused = _import_line(cli, tmp_path, "c.csv", closed_without_end)
    assert refused.exit_code == 1
    assert "Date fin prise en charge': required when Statut is Clos" in refused.output
    closed = "B9;Mme;ROUX;;Léa;01/01/1940;;;;;;;;;01/02/2024;30/11/2025;Clos"
    assert _import_line(cli, tmp_path, "d.csv", closed).exit_code == 0
    (team,) = stored(database, "CareTeam")
    (participant,) = team["participant"]
    assert participant["member"] == {"reference": SAAD}
    assert participant["period"] == {"start": "2024-02-01", "end": "2025-11-30"}
    assert team["meta"]["versionId"] == "2"  # history kept: version 1 has the open participation


def test_forced_encoding(cli: CliRun, organizations: None, tmp_path: Path) -> None:
    row = "B9;Mme;ROUX;;Léa;01/01/1940;;;;;;;;;01/02/2024;;Actif"
    path = _file(tmp_path, "a.csv", row)
    forced = cli("import", "saad-beneficiaires", path, "--organization", SAAD, "--encoding", "utf-8")
    assert forced.exit_code == 1
    assert "not valid in utf-8" in forced.output
    utf8 = _file(tmp_path, "u.csv", row, encoding="utf-8")
    assert (
        cli("import", "saad-beneficiaires", utf8, "--organization", SAAD, "--encoding", "utf-8").exit_code
        == 0
    )
