"""Export then import reproduces the same file and the same resources (issue 5, round trip).

Each contract sample is imported through the CLI, exported again: the bytes are the
sample's, and importing the export changes nothing (no new version).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_gateway.storage.database import Database
from tests.mappings.conftest import DC, SAAD, SAMPLES, CliRun, versions

HERE = Path(__file__).resolve().parent
CASES = [
    ("saad-interventions", SAAD, [("saad-beneficiaires", SAMPLES / "saad-beneficiaires.csv")]),
    (
        "domicile-connect-interventions",
        DC,
        [("saad-beneficiaires", HERE / "domicile-connect-interventions" / "setup" / "beneficiaires.csv")],
    ),
]


def _imported_sample(cli: CliRun, fmt: str, organization: str, setup: list[tuple[str, Path]]) -> Path:
    """Import ``setup``'s files, then ``fmt``'s sample (each must succeed); the sample's path."""
    for setup_format, path in setup:
        assert cli("import", setup_format, str(path), "--organization", organization).exit_code == 0
    sample = SAMPLES / f"{fmt}.csv"
    assert cli("import", fmt, str(sample), "--organization", organization).exit_code == 0
    return sample


@pytest.mark.parametrize(("fmt", "organization", "setup"), CASES, ids=[c[0] for c in CASES])
def test_sample_round_trip(
    fmt: str,
    organization: str,
    setup: list[tuple[str, Path]],
    cli: CliRun,
    organizations: None,
    database: Database,
    tmp_path: Path,
) -> None:
    sample = _imported_sample(cli, fmt, organization, setup)
    before = versions(database)
    out = tmp_path / "export.csv"
    result = cli("export", fmt, "--organization", organization, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == sample.read_bytes()
    again = cli("import", fmt, str(out), "--organization", organization)
    assert again.exit_code == 0
    assert "created 0, updated 0" in again.output
    assert versions(database) == before


REIMPORTS = [
    ("saad-beneficiaires", SAAD, []),
    ("saad-plan-aide", SAAD, [("saad-beneficiaires", SAMPLES / "saad-beneficiaires.csv")]),
]


@pytest.mark.parametrize(("fmt", "organization", "setup"), REIMPORTS, ids=[c[0] for c in REIMPORTS])
def test_reimport_of_a_sample_changes_nothing(
    fmt: str,
    organization: str,
    setup: list[tuple[str, Path]],
    cli: CliRun,
    organizations: None,
    database: Database,
) -> None:
    sample = _imported_sample(cli, fmt, organization, setup)
    before = versions(database)
    again = cli("import", fmt, str(sample), "--organization", organization)
    assert again.exit_code == 0
    assert "created 0, updated 0" in again.output
    assert versions(database) == before
