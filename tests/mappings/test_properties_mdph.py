"""Property: random valid mdph-decisions rows survive import -> export unchanged (issue 5).

One person per row (the file's MDPH is drawn once): names with accents and separators,
valid INS-NIR keys, every decision type and category, optional quantities, PAG or not.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from fhir_gateway.settings import Settings
from fhir_gateway.storage.database import Database
from tests.mappings.conftest import MDPH_CLIENT_ORG, SAMPLES, CliRun, put
from tests.support.databases import empty_all_tables

HEADER = (SAMPLES / "mdph-decisions.csv").read_text(encoding="utf-8").splitlines()[0].split(";")
TEXT = st.text(alphabet="abcdeéèàçôÉ ;-'\"", min_size=1, max_size=20).map(str.strip).filter(bool)


def _day() -> st.SearchStrategy[str]:
    return st.dates(date(1920, 1, 1), date(2040, 12, 31)).map(lambda d: d.strftime("%d/%m/%Y"))


def _optional(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.just(""), strategy)


@st.composite
def nir(draw: st.DrawFn, number: int) -> str:
    """A valid INS-NIR, one per person (the same NIR is the same person)."""
    head = draw(st.from_regex(r"[12][0-9]{2}(0[1-9]|1[0-2])(2A|2B|[0-9]{2})", fullmatch=True))
    body = f"{head}{number:06d}"
    key = 97 - int(body.replace("2A", "19").replace("2B", "18")) % 97
    return f"{body}{key:02d}"


@st.composite
def decision(draw: st.DrawFn, number: int, code: str) -> list[str]:
    kind = draw(st.sampled_from(["1", "2", "3", "4", "5", "6", "7"]))
    category = draw(st.integers(1, 14))
    quantity = draw(
        _optional(
            st.decimals(Decimal("0.5"), Decimal("500"), places=1).map(
                lambda d: format(d.normalize(), "f").replace(".", ",")
            )
        )
    )
    return [
        code,
        f"I{number:07d}",
        draw(TEXT),
        draw(_optional(TEXT)),
        draw(TEXT),
        draw(_day()),
        draw(st.sampled_from(["1", "2", "9"])),
        draw(_optional(nir(number))),
        draw(_optional(st.from_regex(r"D[0-9]{4}-[0-9]{1,4}", fullmatch=True))),
        draw(_optional(_day())),
        f"DEC-{number}",
        draw(_day()),
        kind,
        str(category),
        f"{category}.{draw(st.integers(1, 9))}",
        draw(st.sampled_from(["", "1", "6", "7"])),
        draw(_day()) if kind in "167" else draw(_optional(_day())),
        draw(_optional(_day())),
        draw(st.sampled_from(["", "O", "N"])),
        draw(_optional(st.from_regex(r"[0-9]{2}[0-9]{7}", fullmatch=True))),
        quantity,
        draw(_optional(st.sampled_from(["heures", "euros"]))) if quantity else "",
        draw(_optional(st.sampled_from(["mois", "an"]))) if quantity else "",
        draw(_optional(TEXT)),
    ]


@st.composite
def files(draw: st.DrawFn) -> list[list[str]]:
    code = draw(st.sampled_from(["042", "02A", "971"]))
    size = draw(st.integers(1, 8))
    return [draw(decision(number, code)) for number in range(size)]


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\n").writerows([HEADER, *rows])
    return out.getvalue().encode("utf-8")


def _parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=";"))


def test_random_decisions_survive_import_then_export(
    cli: CliRun, database: Database, settings: Settings, tmp_path: Path
) -> None:
    @examples(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(files())
    def check(rows: list[list[str]]) -> None:
        empty_all_tables(database)
        put(database, settings, {"resourceType": "Organization", "id": MDPH_CLIENT_ORG.split("/")[1]})
        source = tmp_path / "in.csv"
        source.write_bytes(_csv(rows))
        imported = cli("import", "mdph-decisions", str(source), "--organization", MDPH_CLIENT_ORG)
        assert imported.exit_code == 0, imported.output
        out = tmp_path / "out.csv"
        assert (
            cli("export", "mdph-decisions", "--organization", MDPH_CLIENT_ORG, "--output", str(out)).exit_code
            == 0
        )
        exported = _parse(out.read_bytes())
        assert exported[0] == HEADER
        assert sorted(exported[1:]) == sorted(_parse(source.read_bytes())[1:])

    check()
