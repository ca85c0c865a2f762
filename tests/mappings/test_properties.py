"""Property: random valid rows survive import -> export unchanged (issue 5, round trip).

For both dialects of the interventions model, hypothesis writes files of valid rows (quoted
separators, quotes, accents, visits past midnight, optional cells), imports them through the
CLI into the real database and exports them again: the rows come back identical.
"""

from __future__ import annotations

import csv
import io
from datetime import date, time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from tests.mappings.conftest import DC, SAAD, SAMPLES, CliRun, put
from tests.support.databases import empty_all_tables

HERE = Path(__file__).resolve().parent
TEXT = st.text(alphabet="abcdeéèàçôÉ ;,\"'-()0123456789", max_size=30).map(str.strip)
DIALECTS = {
    "saad-interventions": {
        "org": SAAD,
        "setup": SAMPLES / "saad-beneficiaires.csv",
        "clients": ["B0101", "B0102"],
        "services": ["Aide au lever", "Toilette", "Courses", "Aide au coucher"],
        "status": {"planned": "Planifiée", "done": "Réalisée", "cancelled": "Annulée"},
        "date": "%d/%m/%Y",
        "delimiter": ";",
        "encoding": "cp1252",
    },
    "domicile-connect-interventions": {
        "org": DC,
        "setup": HERE / "domicile-connect-interventions" / "setup" / "beneficiaires.csv",
        "clients": ["C-3301", "C-3302"],
        "services": ["getting_up", "bathing", "shopping", "going_to_bed"],
        "status": {"planned": "planned", "done": "done", "cancelled": "cancelled"},
        "date": "%Y-%m-%d",
        "delimiter": ",",
        "encoding": "utf-8-sig",
    },
}


def _hhmm() -> st.SearchStrategy[str]:
    return st.times(min_value=time(0, 0), max_value=time(23, 59)).map(lambda t: t.strftime("%H:%M"))


@st.composite
def visit(draw: st.DrawFn, dialect: dict[str, object]) -> dict[str, str]:
    kind = draw(st.sampled_from(["planned", "done", "cancelled"]))
    score = st.one_of(st.just(""), st.integers(1, 5).map(str))
    optional_time = st.one_of(st.just(""), _hhmm())
    return {
        "client": draw(st.sampled_from(dialect["clients"])),  # type: ignore[arg-type]
        "date": draw(st.dates(date(2020, 1, 1), date(2030, 12, 31))).strftime(str(dialect["date"])),
        "planned_start": draw(_hhmm()),
        "planned_end": draw(optional_time),
        "actual_start": draw(optional_time) if kind == "done" else "",
        "actual_end": draw(optional_time) if kind == "done" else "",
        "worker": draw(st.one_of(st.just(""), st.from_regex(r"[A-Z]{2}-[0-9]{3}", fullmatch=True))),
        "service": draw(st.sampled_from(dialect["services"])),  # type: ignore[arg-type]
        "status": dialect["status"][kind],  # type: ignore[index]
        "cancel": draw(TEXT.filter(bool)) if kind == "cancelled" else "",
        "scores": [draw(score) for _ in range(3)] if kind == "done" else ["", "", ""],  # type: ignore[dict-item]
        "notes": draw(TEXT),
    }


def _file(header: list[str], visits: list[dict[str, str]], dialect: dict[str, object]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=str(dialect["delimiter"]), lineterminator="\r\n")
    writer.writerow(header)
    for number, v in enumerate(visits):
        writer.writerow(
            [
                f"V-{number:04d}",
                v["client"],
                v["date"],
                v["planned_start"],
                v["planned_end"],
                v["actual_start"],
                v["actual_end"],
                v["worker"],
                v["service"],
                v["status"],
                v["cancel"],
                *v["scores"],
                v["notes"],
            ]
        )
    return out.getvalue().encode(str(dialect["encoding"]))


def _rows(data: bytes, dialect: dict[str, object]) -> list[list[str]]:
    text = data.decode(str(dialect["encoding"]))
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=str(dialect["delimiter"])))


@pytest.mark.parametrize("fmt", sorted(DIALECTS))
def test_random_rows_survive_import_then_export(
    fmt: str, cli: CliRun, database: Database, settings: Settings, tmp_path: Path
) -> None:
    dialect = DIALECTS[fmt]
    sample_header = (
        (SAMPLES / f"{fmt}.csv").read_bytes().decode("utf-8-sig" if "," == dialect["delimiter"] else "cp1252")
    )
    header = _rows(sample_header.splitlines()[0].encode(str(dialect["encoding"])), dialect)[0]

    @settings_for_db
    @given(st.lists(visit(dialect), min_size=1, max_size=12))
    def check(visits: list[dict[str, str]]) -> None:
        empty_all_tables(database)
        put(database, settings, {"resourceType": "Organization", "id": str(dialect["org"]).split("/")[1]})
        assert (
            cli(
                "import", "saad-beneficiaires", str(dialect["setup"]), "--organization", str(dialect["org"])
            ).exit_code
            == 0
        )
        source = tmp_path / "in.csv"
        source.write_bytes(_file(header, visits, dialect))
        imported = cli("import", fmt, str(source), "--organization", str(dialect["org"]))
        assert imported.exit_code == 0, imported.output
        out = tmp_path / "out.csv"
        assert cli("export", fmt, "--organization", str(dialect["org"]), "--output", str(out)).exit_code == 0
        assert _rows(out.read_bytes(), dialect) == _rows(source.read_bytes(), dialect)

    check()


settings_for_db = examples(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
