"""saad-interventions through the real CLI (partner-formats/README.md §3): idempotent
re-import, export round trip, vigilance alerts, dry run and usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_gateway.audit.events import audit_patient
from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.tables import resource
from tests.mappings.conftest import SAAD, SAMPLES, CliRun, audit_count, put, stored, versions

SAMPLE = SAMPLES / "saad-interventions.csv"


def _beneficiaries(cli: CliRun) -> None:
    result = cli(
        "import", "saad-beneficiaires", str(SAMPLES / "saad-beneficiaires.csv"), "--organization", SAAD
    )
    assert result.exit_code == 0, result.output


def test_reimport_changes_nothing(cli: CliRun, organizations: None, database: Database) -> None:
    _beneficiaries(cli)
    assert cli("import", "saad-interventions", str(SAMPLE), "--organization", SAAD).exit_code == 0
    before = versions(database)
    again = cli("import", "saad-interventions", str(SAMPLE), "--organization", SAAD)
    assert again.exit_code == 0
    assert "created 0, updated 0, unchanged 7, rejected 0" in again.output
    assert versions(database) == before
    beneficiaries = cli(
        "import", "saad-beneficiaires", str(SAMPLES / "saad-beneficiaires.csv"), "--organization", SAAD
    )
    assert "created 0, updated 0, unchanged 6" in beneficiaries.output
    assert versions(database) == before


def test_export_reproduces_the_sample(cli: CliRun, organizations: None, tmp_path: Path) -> None:
    _beneficiaries(cli)
    assert cli("import", "saad-interventions", str(SAMPLE), "--organization", SAAD).exit_code == 0
    out = tmp_path / "export.csv"
    result = cli("export", "saad-interventions", "--organization", SAAD, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == SAMPLE.read_bytes()


def test_export_since_a_date(cli: CliRun, organizations: None, tmp_path: Path) -> None:
    _beneficiaries(cli)
    assert cli("import", "saad-interventions", str(SAMPLE), "--organization", SAAD).exit_code == 0
    out = tmp_path / "export.csv"
    assert (
        cli(
            "export",
            "saad-interventions",
            "--organization",
            SAAD,
            "--since",
            "2999-01-01",
            "--output",
            str(out),
        ).exit_code
        == 0
    )
    assert len(out.read_bytes().splitlines()) == 1  # the header only


def test_vigilance_alert_once_for_the_coordinator(
    cli: CliRun, organizations: None, database: Database, settings: Settings
) -> None:
    _beneficiaries(cli)
    team = next(
        t for t in stored(database, "CareTeam") if t["participant"][0]["period"]["start"] == "2024-02-01"
    )
    team["participant"].append(
        {
            "member": {"reference": "Practitioner/coord-1"},
            "role": [{"coding": [{"system": "http://snomed.info/sct", "code": "768821004"}]}],
        }
    )
    put(database, settings, {"resourceType": "Practitioner", "id": "coord-1", "name": [{"family": "Coord"}]})
    put(database, settings, team)
    for _ in range(2):
        assert cli("import", "saad-interventions", str(SAMPLE), "--organization", SAAD).exit_code == 0
    alerts = [t for t in stored(database, "Task") if t["code"]["coding"][0]["code"] == "alerte-vigilance"]
    by_visit = {a["identifier"][0]["value"]: a for a in alerts}
    assert sorted(by_visit) == ["INT-880002", "INT-880004"]  # one per visit, never two
    assert by_visit["INT-880002"]["priority"] == "asap"
    assert by_visit["INT-880004"]["priority"] == "urgent"  # a rating of 1
    assert by_visit["INT-880002"]["owner"] == {"reference": "Practitioner/coord-1"}  # the coordinator
    assert by_visit["INT-880004"].get("owner") is None  # B0102 has no coordinator
    assert by_visit["INT-880002"]["note"] == [{"text": "A peu mangé ; frigo presque vide"}]
    assert by_visit["INT-880002"]["focus"]["reference"].startswith("Task/")
    assert all(a["meta"]["versionId"] == "1" for a in alerts)


def test_dry_run_writes_nothing(cli: CliRun, organizations: None, database: Database) -> None:
    _beneficiaries(cli)
    before, audited = versions(database), audit_count(database)
    result = cli("import", "saad-interventions", str(SAMPLE), "--organization", SAAD, "--dry-run")
    assert result.exit_code == 0
    assert "created 7" in result.output
    assert "dry run, nothing written" in result.output
    assert versions(database) == before
    assert audit_count(database) == audited  # no write is recorded as done


def test_usage_errors_exit_2(cli: CliRun, organizations: None, tmp_path: Path) -> None:
    assert cli("import", "no-such-format", str(SAMPLE), "--organization", SAAD).exit_code == 2
    assert (
        cli("import", "saad-interventions", str(tmp_path / "none.csv"), "--organization", SAAD).exit_code == 2
    )
    assert cli("import", "saad-interventions", str(SAMPLE), "--organization", "saad-42").exit_code == 2
    assert (
        cli("import", "saad-interventions", str(SAMPLE), "--organization", "Organization/nobody").exit_code
        == 2
    )
    assert (
        cli(
            "import", "saad-interventions", str(SAMPLE), "--organization", SAAD, "--rejects", "x.csv"
        ).exit_code
        == 2
    )
    assert cli("export", "saad-beneficiaires", "--organization", SAAD).exit_code == 2
    assert cli("export", "saad-interventions", "--organization", SAAD, "--since", "18/11/2025").exit_code == 2


def test_audit_of_large_imports_is_stored_as_it_goes(
    cli: CliRun, organizations: None, database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from fhir_gateway.audit import grouped
    from fhir_gateway.mapping import importer

    _beneficiaries(cli)
    audited = audit_count(database)
    monkeypatch.setattr(importer, "AUDIT_FLUSH", 2)
    monkeypatch.setattr(grouped, "WINDOW", 2)
    bad = SAMPLE.read_bytes() + b"INT-9;B0101;31/02/2025;08:00;09:00;;;AV-017;Toilette;Planifi\xe9e;;;;;\r\n"
    (tmp_path / "bad.csv").write_bytes(bad)
    refused = cli("import", "saad-interventions", str(tmp_path / "bad.csv"), "--organization", SAAD)
    assert refused.exit_code == 1
    assert audit_count(database) == audited  # rolled back with the writes
    assert cli("import", "saad-interventions", str(SAMPLE), "--organization", SAAD).exit_code == 0
    with database.engine.connect() as conn:
        events = [
            json.loads(row.content)
            for row in conn.execute(resource.select().where(resource.c.res_type == "AuditEvent"))
        ]
        tasks = {
            f"Task/{row.res_id}"
            for row in conn.execute(resource.select().where(resource.c.res_type == "Task"))
        }
    imports = [e for e in events if any("(saad-interventions)" in s.get("display", "") for s in e["subtype"])]
    written = [
        entity["what"]["reference"]
        for event in imports
        for entity in event["entity"]
        if entity["role"]["code"] == "4"
    ]
    assert sorted(written) == sorted(tasks)  # every write audited once, none lost
    assert all(e["agent"][0]["who"]["identifier"]["value"] == "cli:import" for e in imports)
    assert all(audit_patient(e) for e in imports)  # each about one person, who can find it
