"""Hypothesis against the partner CSV reader (issue 11): hostile files never crash.

Arbitrary bytes, encodings (UTF-8, BOM, Windows-1252, UTF-16, garbage), separators, quotes,
line endings (CRLF, LF, lone CR), NUL bytes, cells and lines beyond the limits. Read alone,
every file gives a header and rows or a problem naming its line; imported over HTTP, the
answer is an OperationOutcome (never a 5xx, a stack trace or SQL) whose every error names its
line, and a refused file leaves the database as it was. The command line reports what used
to crash it with exit code 1 and the line.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.testclient import TestClient

from fhir_gateway.mapping.csvio import MAX_CELL_CHARS, MAX_LINE_BYTES, CsvProblem, CsvSource
from fhir_gateway.mapping.importer import organization_constants
from fhir_gateway.mapping.report import FileRefused, Problem
from fhir_gateway.mapping.rows import RowParser, check_header
from fhir_gateway.mapping.spec import Format, available, load_format, mappings_root
from fhir_gateway.storage.database import Database
from fhir_gateway.storage.schema import full_metadata
from tests.mappings.conftest import SAAD, SAMPLES, CliRun

ROOT = mappings_root(None)
IMPORTS = [name for name in available(ROOT) if "import" in load_format(ROOT, name).directions]
ENCODINGS = ["utf-8", "utf-8-sig", "cp1252", "utf-16", "latin-1"]
NEWLINES = ["\r\n", "\n", "\r"]
NASTY = [
    "",
    " ",
    '"',
    '""',
    '"a;b"',
    "a\x00b",
    "\x00",
    "\ufeff",
    "\r",
    "\n",
    '"multi\r\nline"',
    "é",
    "²²²²²²²²²²²²²12",  # digits to str.isdigit, not to int()
    "١٢٣",
    "9" * 5000,  # beyond int()'s digit limit
    "nan",
    "inf",
    "1e999",
    "-0",
    "00/00/0000",
    "01/01/0001",
    "31/12/9999",
    "9999-12-31",
    "0001-01-01",
    "24:00",
    "23:59",
    "00:00",
    "x" * 300,  # longer than an index column
    "'; DROP TABLE resource; --",
    "\U0001f600",
    "\udcff",
]


def _cell(sample: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(sample),
        st.sampled_from(NASTY),
        st.text(max_size=12),
        st.integers(0, 3000).map(lambda n: "y" * n),
    )


@st.composite
def hostile_file(draw: st.DrawFn, fmt: Format, sample_rows: list[list[str]]) -> bytes:
    """A file of ``fmt`` near the real thing: its header (columns dropped, moved or added),
    sample cells mixed with nasty ones, any separator, line ending and encoding."""
    header = [c.header for c in fmt.columns if not c.export_only]
    header = draw(st.permutations(header))
    header = header[: draw(st.integers(len(header) - 2, len(header)))]
    if draw(st.booleans()):
        header.append(draw(st.sampled_from(["extra", "", '"', "é"])))
    separator = draw(st.sampled_from([fmt.dialect.delimiter] * 4 + [",", "\t", "|", ";"]))
    newline = draw(st.sampled_from(NEWLINES))
    cells = sorted({c for row in sample_rows for c in row}) or ["x"]
    rows = draw(st.lists(st.lists(_cell(cells), min_size=0, max_size=len(header) + 2), max_size=5))

    def quote(cell: str) -> str:
        needs = any(ch in cell for ch in (separator, '"', "\r", "\n")) and draw(st.booleans())
        return '"' + cell.replace('"', '""') + '"' if needs else cell

    text = newline.join(separator.join(quote(c) for c in line) for line in [header, *rows])
    text += draw(st.sampled_from(["", newline, newline * 3]))
    data = text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    splice = draw(st.binary(max_size=8))
    at = draw(st.integers(0, len(data)))
    return data[:at] + splice + data[at:] if draw(st.booleans()) else data


@st.composite
def near_valid_file(draw: st.DrawFn, name: str) -> bytes:
    """The partner's sample file with a few cells made nasty (so that rows reach the writes)."""
    data = (SAMPLES / f"{name}.csv").read_bytes()
    encoding = "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "cp1252"
    if encoding == "cp1252":
        try:
            data.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            pass
    delimiter = load_format(ROOT, name).dialect.delimiter
    header, *rows = [r for r in csv.reader(io.StringIO(data.decode(encoding)), delimiter=delimiter) if r]
    picked = draw(st.lists(st.sampled_from(rows), min_size=1, max_size=6, unique_by=lambda r: rows.index(r)))
    out = []
    for row in picked:
        row = list(row)
        for _ in range(draw(st.integers(0, 2))):
            at = draw(st.integers(0, len(row) - 1))
            row[at] = draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=20), st.just(row[at] + "x")))
        out.append(delimiter.join('"' + c.replace('"', '""') + '"' if delimiter in c or '"' in c else c
                                  for c in row))  # fmt: skip
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    text = newline.join([delimiter.join(header), *out]) + newline
    return text.encode(encoding, errors="replace")


def _sample_rows(name: str) -> list[list[str]]:
    path = SAMPLES / f"{name}.csv"
    if not path.exists():
        return []
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252")
    fmt = load_format(ROOT, name)
    return [line.split(fmt.dialect.delimiter) for line in text.splitlines()[1:]]


READING = ("byte ", "longer than", "a cell is longer", "new-line character")


def _read(fmt: Format, data: bytes) -> list[Problem]:
    """Everything the reader and row parser find in ``data`` (no database)."""
    try:
        source = CsvSource(io.BytesIO(data), fmt.dialect.delimiter, fmt.dialect.encodings, None)
        problems = check_header(fmt, source.header)
        parser = RowParser(fmt, organization_constants(SAAD))
        for row in parser.rows(source):
            problems += row.problems
    except CsvProblem as exc:
        return [Problem(exc.line, "", "", exc.reason)]
    except FileRefused as refused:
        return refused.problems
    return problems


@pytest.mark.parametrize("name", IMPORTS)
def test_the_reader_reports_hostile_files_line_by_line(name: str) -> None:
    fmt = load_format(ROOT, name)

    @settings(max_examples=150, deadline=None)
    @given(hostile_file(fmt, _sample_rows(name)))
    def check(data: bytes) -> None:
        lines = max(1, data.count(b"\n") + data.count(b"\r") + 1)
        for problem in _read(fmt, data):
            assert 0 <= problem.line <= lines, problem
            if problem.severity == "error" and problem.line >= 2:  # a row's problem names its column,
                assert problem.column or problem.reason.startswith(READING), problem  # or the byte

    check()


@pytest.mark.parametrize(
    ("data", "line", "reason"),
    [
        (b"a;b\r\n" + b"x" * (MAX_LINE_BYTES + 10), 2, "longer than"),
        (b'a;b\r\nx;"' + b"y" * (MAX_CELL_CHARS + 10) + b'"\r\n', 2, "cell is longer"),
        (b"a;b\r\nok;ok\r\nbad;\xff\xfe\r\n", 3, "byte 5 not valid in utf-8"),
        (b"a;b\rok;ok\rbad;\x81\r", 3, "byte 5 not valid in cp1252"),
    ],
)
def test_limits_and_bad_bytes_name_their_line(data: bytes, line: int, reason: str) -> None:
    forced = "utf-8" if b"\xff" in data else "windows-1252"
    with pytest.raises(CsvProblem) as found:
        list(CsvSource(io.BytesIO(data), ";", ["utf-8", "windows-1252"], forced).rows())
    assert found.value.line == line
    assert reason in found.value.reason


def test_a_file_without_line_breaks_is_not_read_whole() -> None:
    class Endless(io.RawIOBase):
        served = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            buffer[: len(buffer)] = b"x" * len(buffer)
            self.served += len(buffer)
            return len(buffer)

    stream = Endless()
    with pytest.raises(CsvProblem) as found:
        CsvSource(io.BufferedReader(stream), ";", ["utf-8"], None)
    assert found.value.line == 1
    assert stream.served < 4 * MAX_LINE_BYTES


def _rows_per_table(database: Database) -> dict[str, int]:
    """Rows of every table, AuditEvents aside (refusals are audited, as they should be)."""
    counts = {}
    with database.engine.connect() as conn:
        for table in full_metadata().sorted_tables:
            query = select(func.count()).select_from(table)
            if "res_type" in table.c:
                query = query.where(table.c.res_type != "AuditEvent")
            counts[table.name] = int(conn.execute(query).scalar_one())
    return counts


CSV = {"Content-Type": "text/csv"}
HTTP_FORMATS = ["saad-beneficiaires", "saad-interventions", "mdph-decisions"]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_files_over_http_are_reported_never_a_5xx_and_refused_ones_write_nothing(
    fhir: TestClient, organizations: None, database: Database, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(HTTP_FORMATS))
    fmt = load_format(ROOT, name)
    body = data.draw(
        st.one_of(near_valid_file(name), near_valid_file(name), hostile_file(fmt, _sample_rows(name)))
    )
    params = {"format": name, "organization": SAAD}
    params |= data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "partial": st.sampled_from(["true", "false"]),
                "dry-run": st.sampled_from(["true", "false"]),
                "encoding": st.sampled_from(
                    ["", "", "", "", "utf-8", "windows-1252", "utf-16", "rot13", "x" * 80]
                ),
            },
        )
    )
    if name == "saad-interventions":  # the visits' beneficiaries
        setup = (SAMPLES / "saad-beneficiaires.csv").read_bytes()
        params_setup = {"format": "saad-beneficiaires", "organization": SAAD}
        assert (
            fhir.post("/fhir/$import-partner", params=params_setup, content=setup, headers=CSV).status_code
            == 200
        )
    before = _rows_per_table(database)
    answer = fhir.post(
        "/fhir/$import-partner", params=params, content=body, headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code in (200, 422), answer.text
    event(f"{answer.status_code} {_counts(answer.json())}")
    event(
        name
        + " "
        + str([i["diagnostics"][:70] for i in answer.json()["issue"] if i["severity"] == "error"][:1])
    )
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Traceback" not in answer.text
    assert "SELECT" not in answer.text
    assert "INSERT" not in answer.text
    errors = [i for i in outcome["issue"] if i["severity"] == "error"]
    if answer.status_code == 422:
        assert errors
        for issue in errors:  # line[N] (and the column), or the whole file
            assert issue.get("expression", [""])[0].startswith("line[") or issue["diagnostics"].startswith(
                "file"
            ), issue
    if answer.status_code != 200 or params.get("dry-run") == "true":
        assert _rows_per_table(database) == before


def _counts(outcome: dict[str, Any]) -> str:
    """``created``/``rejected`` seen (for hypothesis statistics: how deep the examples go)."""
    counts = {e["url"].rsplit(":", 1)[-1]: e["valueInteger"] for e in outcome.get("extension", [])}
    return "written" if counts.get("created") else "rejected" if counts.get("rejected") else "file refused"


def test_the_command_line_reports_what_used_to_crash_it(
    cli: CliRun, organizations: None, database: Database, tmp_path: Path
) -> None:
    header = (SAMPLES / "saad-beneficiaires.csv").read_bytes().split(b"\r\n")[0]
    cases = {
        "nir.csv": ("B1;Mme;N;;P;01/01/1940;²²²²²²²²²²²²²12;;;;;;;;;;Actif", "digits only"),
        "gir.csv": ("B1;Mme;N;;P;01/01/1940;;;;;;" + "9" * 5000 + ";;;;;Actif", "not a whole number"),
        "nul.csv": ("B1;Mme;N\x00x;;P;01/01/1940;;;;;;;;;;;Actif", "NUL"),
        "cell.csv": ('B1;Mme;"' + "N" * (MAX_CELL_CHARS + 1) + '";;P;01/01/1940;;;;;;;;;;;Actif', "line 2"),
    }
    before = _rows_per_table(database)
    for file_name, (row, reason) in cases.items():
        path = tmp_path / file_name
        path.write_bytes(header + b"\r\n" + row.encode("cp1252") + b"\r\n")
        result = cli("import", "saad-beneficiaires", str(path), "--organization", SAAD)
        assert result.exit_code == 1, (file_name, result.output)
        assert reason in result.output, (file_name, result.output)
    forced = cli("import", "saad-beneficiaires", str(path), "--organization", SAAD, "--encoding", "rot13")
    assert forced.exit_code == 1
    assert "unknown encoding 'rot13'" in forced.output
    assert _rows_per_table(database) == before
