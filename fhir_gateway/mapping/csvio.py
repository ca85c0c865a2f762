"""Reading and writing partner CSV files (partner-formats/README.md, "Common rules").

Encoding: UTF-8 with or without BOM, or Windows-1252, detected from the first bytes
(or forced). Separator and quoting per dialect (``"a;b"``, ``""`` for a quote), CRLF or
LF line endings, blank lines ignored. Rows are streamed: memory does not grow with the
file. Line numbers are physical lines, 1 being the header. A line longer than
``MAX_LINE_BYTES`` or a cell longer than ``MAX_CELL_CHARS`` refuses the file (issue 11:
hostile input is reported, never a crash or an unbounded read).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

SNIFF_BYTES = 256 * 1024
ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "windows-1252": "cp1252", "cp1252": "cp1252"}
MAX_LINE_BYTES = 1024 * 1024
MAX_CELL_CHARS = csv.field_size_limit()  # 131,072: the csv module's own limit
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")  # split after a CR that no LF follows (keeping it)
_LINE_END = re.compile(rb"\r\n|\n|\r")


class CsvProblem(ValueError):
    """The file cannot be read as CSV from ``line`` on (0: the whole file)."""

    def __init__(self, reason: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.reason = reason
        self.line = line


class EncodingProblem(CsvProblem):
    """The bytes cannot be decoded with the detected or forced encoding."""


def codec_of(name: str) -> str:
    """The Python codec of an encoding a partner may force, or EncodingProblem."""
    codec = ENCODINGS.get(name.strip().lower())
    if codec is None:
        raise EncodingProblem(f"unknown encoding '{name[:40]}'; accepted: utf-8, windows-1252")
    return codec


def detect_encoding(head: bytes, accepted: Iterable[str], *, cut: bool = False) -> str:
    """The Python codec of a file starting with ``head``: BOM, then valid UTF-8, then the others.

    ``cut``: ``head`` is only the beginning of the file (a character may be cut at its end).
    """
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    candidates = [ENCODINGS.get(name.lower(), name) for name in accepted] or ["utf-8", "cp1252"]
    for codec in candidates:
        try:
            head.decode(codec)
        except UnicodeDecodeError as exc:
            # a multi-byte character cut at the end of the sample is not a failure
            if (
                cut
                and codec == "utf-8"
                and exc.start >= len(head) - 3
                and exc.reason == "unexpected end of data"
            ):
                return codec
            continue
        return codec
    raise EncodingProblem(f"the file is not in an accepted encoding ({', '.join(accepted)})")


@dataclass
class Row:
    """One data row: its line number (1 = header) and its cells by header name."""

    line: int
    cells: dict[str, str]


class _Prefixed(io.RawIOBase):
    """``head`` (already read to detect the encoding) followed by the rest of ``stream``."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class CsvSource:
    """A streamed CSV file: ``header`` first, then ``rows()``."""

    def __init__(
        self, stream: IO[bytes], delimiter: str, accepted: Iterable[str], forced: str | None
    ) -> None:
        head = stream.read(SNIFF_BYTES)
        buffered = io.BufferedReader(_Prefixed(head, stream), buffer_size=64 * 1024)
        cut = len(head) == SNIFF_BYTES
        self.encoding = codec_of(forced) if forced else detect_encoding(head, accepted, cut=cut)
        if self.encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
            self.encoding = "utf-8-sig"
        self._binary = buffered
        self._lines_read = 0
        self._reader = csv.reader(
            self._lines(), delimiter=delimiter, quotechar='"', doublequote=True, strict=False
        )
        self.header: list[str] = []
        for record in self._records():
            self.header = [name.strip() for name in record]
            break

    def _lines(self) -> Iterator[str]:
        """Physical lines (LF, CRLF or a lone CR ends one), decoded one by one so that a bad
        byte is reported on its own line; each is read with a bounded buffer (a file without
        line breaks is refused at ``MAX_LINE_BYTES``, never read whole into memory)."""
        decoder = codecs.getincrementaldecoder(self.encoding)()
        while raw := self._binary.readline(MAX_LINE_BYTES + 1):
            if len(raw) > MAX_LINE_BYTES:
                raise CsvProblem(f"longer than {MAX_LINE_BYTES} bytes", self._lines_read + 1)
            # LF is never inside a character in UTF-8 or Windows-1252: a line decodes alone
            for line in _LONE_CR.split(self._decode(decoder, raw, final=False)):
                if line:
                    self._lines_read += 1
                    yield line
        self._decode(decoder, b"", final=True)

    def _decode(self, decoder: codecs.IncrementalDecoder, raw: bytes, *, final: bool) -> str:
        try:
            return str(decoder.decode(raw, final))
        except UnicodeDecodeError as exc:
            before = raw[: exc.start]
            ends = [m.end() for m in _LINE_END.finditer(before)]
            line = self._lines_read + 1 + len(ends)
            where = exc.start - (ends[-1] if ends else 0) + 1
            raise EncodingProblem(f"byte {where} not valid in {self.encoding} ({exc.reason})", line) from None

    def _records(self) -> Iterator[list[str]]:
        try:
            for record in self._reader:
                if record and any(cell.strip() for cell in record):
                    yield record
        except csv.Error as exc:  # a quoted cell over the csv module's limit
            reason = f"a cell is longer than {MAX_CELL_CHARS} characters" if "limit" in str(exc) else str(exc)
            raise CsvProblem(reason, self._lines_read) from None

    @property
    def line(self) -> int:
        return self._reader.line_num

    def rows(self) -> Iterator[Row]:
        """The data rows; a row with more cells than the header keeps the extra ones under ``#n``."""
        for record in self._records():
            cells = {name: (record[i] if i < len(record) else "") for i, name in enumerate(self.header)}
            for extra in range(len(self.header), len(record)):
                if record[extra].strip():
                    cells[f"#{extra + 1}"] = record[extra]
            yield Row(self._reader.line_num, cells)


class CsvSink:
    """Writes rows in a dialect: encoding, separator, line ending (quoting only when needed)."""

    def __init__(self, stream: IO[bytes], encoding: str, delimiter: str, newline: str) -> None:
        codec = ENCODINGS.get(encoding.lower(), encoding)
        self._text = io.TextIOWrapper(
            stream, encoding=codec, newline="", errors="replace", write_through=True
        )
        self._writer = csv.writer(self._text, delimiter=delimiter, quotechar='"', lineterminator=newline)

    def write(self, cells: list[str]) -> None:
        self._writer.writerow(cells)

    def close(self) -> None:
        self._text.flush()
        self._text.detach()
