"""Golden-file tests of every format through the real CLI (see tests/mappings/golden.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_gateway.mapping import importer
from fhir_gateway.storage.database import Database
from tests.mappings import golden
from tests.mappings.conftest import CliRun

IMPORT_DATE = "2025-11-20"  # {import_date} of every golden case


@pytest.mark.parametrize("case", golden.cases(), ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_golden_case(
    case: Path,
    cli: CliRun,
    organizations: None,
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importer, "import_date", lambda _tz: IMPORT_DATE)
    spec_path = case.with_suffix(".json")
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    fmt = case.parent.parent.name
    for setup_format, name in spec.get("setup", []):
        done = cli(
            "import",
            setup_format,
            str(golden.resolve(case.parent, name)),
            "--organization",
            spec["organization"],
        )
        assert done.exit_code == 0, done.output
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in spec.get("args", [])]
    result = cli("import", fmt, str(case), "--organization", spec["organization"], *args)
    actual = {
        "exit": result.exit_code,
        "output": [line for line in result.output.splitlines() if line.strip()],
        "resources": golden.snapshot(database),
    }
    if "rejects" in spec:
        actual["rejects"] = (
            (tmp_path / "rejects.csv").read_bytes().decode(spec["rejects"]["encoding"]).splitlines()
        )
    if golden.updating():
        spec["expected"] = actual
        spec_path.write_text(json.dumps(spec, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    assert actual == spec["expected"]
