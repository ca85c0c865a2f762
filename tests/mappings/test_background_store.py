"""A file of several chunks imported through the real CLI while each chunk's writes are stored
in the background (fhir.background_flush, PostgreSQL): the same resources as a synchronous
store, and a chunk the database does not store refuses the file, naming that chunk's lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from fhir_gateway.mapping import importer
from fhir_gateway.storage.database import Database
from tests.mappings.conftest import SAAD, SAMPLES, CliRun, stored

HEADER = (
    "N° intervention;Code bénéficiaire;Date;Heure début prévue;Heure fin prévue;Heure début réelle;"
    "Heure fin réelle;Matricule intervenant;Type prestation;Statut;Motif annulation;Appréciation santé;"
    "Appréciation moral;Appréciation forme;Observation"
)


def _visits(folder: Path, count: int) -> Path:
    """``count`` done visits of the sample's beneficiaries, one in three rated 2 (an alert)."""
    path = folder / "interventions.csv"
    lines = [HEADER]
    for n in range(count):
        rating = 2 if n % 3 == 0 else 4
        lines.append(
            f"INT-{n:06d};B010{1 + n % 2};18/11/2025;08:00;09:00;08:05;09:02;AV-017;Aide au lever;"
            f"Réalisée;;{rating};4;4;visite {n}"
        )
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return path


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "CHUNK", 50)  # 260 rows: six chunks, five stored in the background


@pytest.fixture
def refusing_visit(database: Database) -> Iterator[None]:
    """The database silently skips the resource row of visit INT-000120 (a trigger), as when
    a concurrent request created a resource with the same id: the store sees fewer rows."""
    if database.url.startswith("sqlite"):
        pytest.skip("the background store runs on PostgreSQL's synchronous driver")
    with database.transaction(write=True) as conn:
        conn.execute(
            text(
                "CREATE FUNCTION skip_visit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.content LIKE '%INT-000120\"%' THEN RETURN NULL; END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER skip_visit BEFORE INSERT ON resource "
                "FOR EACH ROW EXECUTE FUNCTION skip_visit()"
            )
        )
    yield
    with database.transaction(write=True) as conn:
        conn.execute(text("DROP TRIGGER skip_visit ON resource"))
        conn.execute(text("DROP FUNCTION skip_visit()"))


def _beneficiaries(cli: CliRun) -> None:
    result = cli(
        "import", "saad-beneficiaires", str(SAMPLES / "saad-beneficiaires.csv"), "--organization", SAAD
    )
    assert result.exit_code == 0, result.output


def test_every_chunk_is_stored(
    cli: CliRun, organizations: None, database: Database, small_chunks: None, tmp_path: Path
) -> None:
    _beneficiaries(cli)
    visits = _visits(tmp_path, 260)
    result = cli("import", "saad-interventions", str(visits), "--organization", SAAD)
    assert result.exit_code == 0, result.output
    assert "rows 260, created 347, updated 0, unchanged 0, rejected 0" in result.output
    tasks = stored(database, "Task")
    numbers = sorted(
        i["value"] for t in tasks for i in t.get("identifier", []) if "intervention" in i["system"]
    )
    assert numbers == [f"INT-{n:06d}" for n in range(260)]
    again = cli("import", "saad-interventions", str(visits), "--organization", SAAD)
    assert "created 0, updated 0, unchanged 347, rejected 0" in again.output


def test_a_chunk_not_stored_refuses_the_file_naming_its_lines(
    cli: CliRun,
    organizations: None,
    database: Database,
    small_chunks: None,
    refusing_visit: None,
    tmp_path: Path,
) -> None:
    _beneficiaries(cli)
    result = cli("import", "saad-interventions", str(_visits(tmp_path, 260)), "--organization", SAAD)
    assert result.exit_code == 1, result.output
    # INT-000120 is on line 122, in the third chunk (lines 102-151), stored in the background
    assert "lines 102-151 could not be written" in result.output
    assert "rows 260" in result.output  # the rows after it were still checked
    assert stored(database, "Task") == []
