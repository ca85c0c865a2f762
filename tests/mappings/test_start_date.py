"""A saad-beneficiaires row without "Date début prise en charge" (issue 5, circle of care).

The circle-of-care profile requires ``CareTeam.participant.period.start``: the import date
(the day the gateway learned of the participation) stands for it, with an information issue
per such row; a participant already known keeps its start, so that re-importing the file on
another day writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_gateway.mapping import importer
from fhir_gateway.storage.database import Database
from tests.mappings.conftest import SAAD, SAMPLES, CliRun, stored, versions

CASE = Path(__file__).resolve().parent / "saad-beneficiaires" / "cases" / "start-absent.csv"
NOTE = "line 3, column 'Date début prise en charge': start date absent; import date used"


def _starts(database: Database) -> dict[str, str | None]:
    return {
        team["subject"]["reference"]: team["participant"][0].get("period", {}).get("start")
        for team in stored(database, "CareTeam")
    }


def test_import_date_then_kept_on_the_next_days(
    cli: CliRun, organizations: None, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "import_date", lambda _tz: "2025-11-20")
    sample = cli(
        "import", "saad-beneficiaires", str(SAMPLES / "saad-beneficiaires.csv"), "--organization", SAAD
    )
    assert sample.exit_code == 0, sample.output
    first = cli("import", "saad-beneficiaires", str(CASE), "--organization", SAAD)
    assert first.exit_code == 0, first.output
    assert f"information: {NOTE}" in first.output
    starts = _starts(database)
    assert sorted(starts.values()) == ["2024-02-01", "2025-06-15", "2025-10-01", "2025-11-20"]
    before = versions(database)
    monkeypatch.setattr(importer, "import_date", lambda _tz: "2025-11-21")
    again = cli("import", "saad-beneficiaires", str(CASE), "--organization", SAAD)
    assert again.exit_code == 0, again.output
    assert "created 0, updated 0, unchanged 4" in again.output
    assert "information" not in again.output  # nothing approximated: the known start is kept
    assert versions(database) == before
    assert _starts(database) == starts


def test_a_start_date_given_later_replaces_the_import_date(
    cli: CliRun, organizations: None, database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(importer, "import_date", lambda _tz: "2025-11-20")
    assert cli("import", "saad-beneficiaires", str(CASE), "--organization", SAAD).exit_code == 0
    dated = tmp_path / "dated.csv"
    lines = CASE.read_bytes().split(b"\r\n")
    lines[2] = lines[2].replace(b";;;;Actif", b";;01/09/2025;;Actif")
    dated.write_bytes(b"\r\n".join(lines))
    result = cli("import", "saad-beneficiaires", str(dated), "--organization", SAAD)
    assert result.exit_code == 0, result.output
    assert "information" not in result.output
    assert "2025-09-01" in _starts(database).values()
