"""File rows -> canonical values, with every problem named (partner-formats "Common rules").

Header names match after trimming (case and accents matter); a missing required column
refuses the whole file; unknown columns are a warning. Each row then gets its cells
parsed by column type and ConceptMap, the model's derivations (named hooks) and row
checks, and the model's uniqueness keys checked across the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from fhir_gateway.mapping import hooks
from fhir_gateway.mapping.csvio import CsvSource, Row
from fhir_gateway.mapping.report import FileRefused, Problem
from fhir_gateway.mapping.seen import SeenKeys
from fhir_gateway.mapping.spec import Format
from fhir_gateway.mapping.values import CellError, parse_cell


@dataclass
class ParsedRow:
    """A row's canonical values, its original cells and its problems."""

    line: int
    cells: dict[str, str]
    values: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    # the match queries of steps that read no value bound while the row is written, by step
    queries: dict[int, Any] = field(default_factory=dict)


def check_header(fmt: Format, header: list[str]) -> list[Problem]:
    """Warnings for unknown columns; FileRefused when a required column is missing."""
    known = {c.header for c in fmt.columns if not c.export_only}
    missing = [c.header for c in fmt.columns if c.required and not c.export_only and c.header not in header]
    if not header:
        raise FileRefused([Problem(1, "", "", "the file is empty: a header row is required")])
    if missing:
        raise FileRefused(
            [Problem(1, name, "", "required column missing: the whole file is refused") for name in missing]
        )
    return [
        Problem(1, name, "", "unknown column, ignored", severity="warning")
        for name in header
        if name not in known
    ]


def _digest(values: tuple[Any, ...]) -> int:
    """8 bytes standing for a business key (uniqueness across a file in little memory)."""
    text = "\x1f".join(str(v) for v in values).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


class RowParser:
    """Parses the rows of one file for one format."""

    def __init__(self, fmt: Format, constants: dict[str, Any]) -> None:
        self.fmt = fmt
        self.constants = constants
        self.tz = ZoneInfo(fmt.dialect.timezone)
        self.columns = [c for c in fmt.columns if not c.export_only]
        self.unique: list[list[str]] = [list(k) for k in fmt.model.get("unique") or []]
        self.seen = [SeenKeys() for _ in self.unique]  # key digest -> first line

    def parse(self, row: Row) -> ParsedRow:
        values: dict[str, Any] = dict(self.constants)
        parsed = ParsedRow(row.line, row.cells, values)
        for column in self.columns:
            text = row.cells.get(column.header, "")
            try:
                value = parse_cell(column, text, self.fmt.dialect)
            except CellError as exc:
                parsed.problems.append(Problem(row.line, column.header, text, str(exc)))
                continue
            if value is None and column.required:
                parsed.problems.append(Problem(row.line, column.header, "", "required value missing"))
            values[column.field] = value
        for name in row.cells:
            if name.startswith("#"):
                parsed.problems.append(
                    Problem(row.line, name, row.cells[name], "more cells than header columns")
                )
        self._unique(parsed)
        if parsed.problems:
            return parsed
        self._checks(parsed)
        if not parsed.problems:
            self._derive(parsed)
        return parsed

    def _problem(self, parsed: ParsedRow, name: str, reason: str) -> None:
        header = self.fmt.header_of(name)
        parsed.problems.append(Problem(parsed.line, header, parsed.cells.get(header, ""), reason))

    def _checks(self, parsed: ParsedRow) -> None:
        for check in self.fmt.model.get("checks") or []:
            found = hooks.ROW_CHECKS[check["hook"]](parsed.values, check)
            if found:
                self._problem(parsed, found[0], found[1])

    def _derive(self, parsed: ParsedRow) -> None:
        for rule in self.fmt.model.get("derive") or []:
            try:
                parsed.values[rule["name"]] = hooks.DERIVATIONS[rule["hook"]](
                    parsed.values, rule.get("args") or {}, self.tz
                )
            except (ValueError, OverflowError) as exc:  # a date at the end of the calendar
                self._problem(parsed, (rule.get("args") or {}).get("date", rule["name"]), str(exc))

    def _unique(self, parsed: ParsedRow) -> None:
        for fields, seen in zip(self.unique, self.seen, strict=True):
            values = tuple(parsed.values.get(f) for f in fields)
            if None in values:
                continue
            key = _digest(values)
            first = seen.first_line(key)
            if first is not None:
                names = ", ".join(self.fmt.header_of(f) for f in fields)
                self._problem(parsed, fields[-1], f"duplicate {names} (first on line {first})")
            else:
                seen.add(key, parsed.line)

    def rows(self, source: CsvSource) -> Iterator[ParsedRow]:
        for row in source.rows():
            yield self.parse(row)
