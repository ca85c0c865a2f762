"""An import run (partner-formats/README.md, "Common rules"; issue 5).

All-or-nothing by default: every row is checked, and a single bad row means nothing of the
file is written (``ImportRefused`` rolls the caller's transaction back). ``partial``: each
row is written in its own savepoint; bad rows are reported (and copied to a reject file
with a ``motif_rejet`` column) while the good ones are kept. ``dry_run``: everything is
checked and written, then rolled back (``DryRunDone``).

Rows go by chunks of ``CHUNK``: their business identifiers are looked up together and their
writes stored together at the end of the chunk (memory flat in file size). The import's
writes are audited per person (``audit.grouped``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from fhir_gateway.audit.events import event_of
from fhir_gateway.audit.grouped import GroupedWrites
from fhir_gateway.audit.store import store_audit_events
from fhir_gateway.fhir.background_flush import BackgroundFlushFailed
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.kit.gc_tuning import bulk_checkpoint
from fhir_gateway.mapping.csvio import CsvProblem, CsvSink, CsvSource
from fhir_gateway.mapping.report import FileRefused, Problem, Summary
from fhir_gateway.mapping.rows import ParsedRow, RowParser, check_header
from fhir_gateway.mapping.spec import Format
from fhir_gateway.mapping.writer import RowFailed, RowWriter
from fhir_gateway.storage.database import bulk_transaction
from fhir_gateway.storage.statistics import SqliteStatistics

REJECT_COLUMN = "motif_rejet"
AUDIT_FLUSH = 2000  # audit events of done writes kept in memory before being stored
CHUNK = 1000  # rows whose business identifiers are looked up together and writes stored together


class ImportRefused(Exception):
    """Raised inside the unit of work so that nothing is written; carries the summary."""

    def __init__(self, summary: Summary) -> None:
        super().__init__(summary.line())
        self.summary = summary


class DryRunDone(ImportRefused):
    """A dry run ends by rolling back what it wrote."""


@dataclass
class ImportOptions:
    """How to run one import."""

    partial: bool = False
    dry_run: bool = False
    encoding: str | None = None
    rejects: IO[bytes] | None = None
    progress: Callable[[int], None] | None = None


class _Rejects:
    """The reject file: the file's header plus ``motif_rejet``, in the format's dialect."""

    def __init__(self, fmt: Format, stream: IO[bytes] | None, header: list[str]) -> None:
        self.header = header
        self.sink = None
        if stream is not None:
            dialect = fmt.dialect
            self.sink = CsvSink(stream, dialect.export_encoding, dialect.delimiter, dialect.newline)
            self.sink.write([*header, REJECT_COLUMN])

    def add(self, row: ParsedRow, problems: list[Problem]) -> None:
        if self.sink is not None:
            reason = " | ".join(p.text() for p in problems)
            self.sink.write([*(row.cells.get(h, "") for h in self.header), reason])

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


def organization_constants(organization: str) -> dict[str, Any]:
    """Values every template may use: ``org`` (Organization/ID) and ``org_id``."""
    return {"org": organization, "org_id": organization.split("/", 1)[-1]}


def import_date(timezone: str) -> str:
    """The day the gateway learns of the file's data, in the format's timezone (``{import_date}``)."""
    return datetime.now(ZoneInfo(timezone)).date().isoformat()


def _constants(fmt: Format, organization: str) -> dict[str, Any]:
    from fhir_gateway.mapping.template import render

    values = organization_constants(organization)
    values["import_date"] = import_date(fmt.dialect.timezone)
    values.update({k: render(v, values) for k, v in fmt.constants.items()})
    return values


def run_import(
    ctx: Ctx, fmt: Format, stream: IO[bytes], organization: str, options: ImportOptions
) -> Summary:
    """Import ``stream`` in ``ctx``'s transaction; raises ImportRefused/DryRunDone to roll back."""
    summary = Summary(fmt.name, dry_run=options.dry_run)
    try:
        source = CsvSource(stream, fmt.dialect.delimiter, fmt.dialect.encodings, options.encoding)
        summary.add(check_header(fmt, source.header))
    except CsvProblem as exc:
        raise FileRefused([Problem(exc.line, "", "", exc.reason)]) from None
    parser = RowParser(fmt, _constants(fmt, organization))
    writer = RowWriter(ctx, fmt)
    writer.lock_run()
    if not options.partial:  # partial: each row stored in its own savepoint, at once
        writer.store_in_background()
    ctx.grouped_writes = GroupedWrites("import-partner", f"Partner file import ({fmt.name})")
    try:
        return _run(ctx, fmt, source, parser, writer, summary, options)
    finally:
        writer.close()
        ctx.grouped_writes = None  # what the unit of work audits next is audited one by one


def _run(
    ctx: Ctx,
    fmt: Format,
    source: CsvSource,
    parser: RowParser,
    writer: RowWriter,
    summary: Summary,
    options: ImportOptions,
) -> Summary:
    """The rows of ``source`` by chunks, then the verdict: refused, dry run, or written."""
    rejects = _Rejects(fmt, options.rejects if options.partial else None, source.header)
    try:
        with bulk_transaction(ctx.conn):
            # SQLite: the lookups planned with statistics of what the import has written so far
            statistics = SqliteStatistics() if ctx.conn.dialect.name == "sqlite" else None
            if statistics is not None:
                statistics.refresh_if_due(ctx.conn)
            chunk: list[ParsedRow] = []
            before: list[ParsedRow] = []  # the chunk whose writes may be stored in the background
            for row in _rows(parser, source):
                chunk.append(row)
                if len(chunk) >= CHUNK:
                    _run_chunk(ctx, writer, chunk, before, summary, options, rejects)
                    chunk, before = [], chunk
                    bulk_checkpoint()
                    if statistics is not None:
                        _refresh(ctx, writer, statistics, summary)
            _run_chunk(ctx, writer, chunk, before, summary, options, rejects)
            if _writing(summary, options):
                _store(ctx, writer, chunk or before, summary)
    finally:
        rejects.close()
    if summary.error_count and not options.partial:
        summary.created = summary.updated = summary.unchanged = 0
        _forget_writes(ctx, 0, 0)
        raise ImportRefused(summary)
    if options.dry_run:
        _forget_writes(ctx, 0, 0)
        raise DryRunDone(summary)
    _store_done_writes(ctx)
    summary.written = True
    return summary


def _refresh(ctx: Ctx, writer: RowWriter, statistics: SqliteStatistics, summary: Summary) -> None:
    """SQLite's statistics of what the import wrote so far (``storage.statistics``)."""
    with _stopped_writes(ctx, writer, summary):  # its statements wait for the writes under way
        statistics.refresh_if_due(ctx.conn)


def _writing(summary: Summary, options: ImportOptions) -> bool:
    """False once an all-or-nothing import is refused: the other rows are checked, not written."""
    return options.partial or not summary.error_count


def _run_chunk(
    ctx: Ctx,
    writer: RowWriter,
    chunk: list[ParsedRow],
    before: list[ParsedRow],
    summary: Summary,
    options: ImportOptions,
    rejects: _Rejects,
) -> None:
    """Check and write a chunk of rows: their business identifiers found in one query per kind,
    their writes stored together (each row in a savepoint of its own when partial). With a
    background flush, the writes of the chunk ``before`` are stored while this one's rows are
    built, and this chunk's are stored after the next one's lookups (or at the end: ``_store``)."""
    if _writing(summary, options):
        with _stopped_writes(ctx, writer, summary):
            writer.prefetch([row for row in chunk if not row.problems], written=_lines(before))
    for row in chunk:
        summary.rows += 1
        if options.progress is not None:
            options.progress(summary.rows)
        problems: list[Problem] = []
        with _stopped_writes(ctx, writer, summary):  # the other rows are still checked
            problems = row.problems or _write(ctx, writer, row, summary, options.partial)
        if problems:
            summary.rejected += 1
            summary.add(problems)
            rejects.add(row, problems)
    if _writing(summary, options) and chunk and writer.batch.background is None:
        _store(ctx, writer, chunk, summary)
    if len(ctx.audit_events) >= AUDIT_FLUSH or (ctx.grouped_writes and ctx.grouped_writes.full()):
        with _stopped_writes(ctx, writer, summary):
            _store_done_writes(ctx)


@contextmanager
def _stopped_writes(ctx: Ctx, writer: RowWriter, summary: Summary) -> Iterator[None]:
    """A statement that waited for the writes stored in the background fails as they did: the
    lines they were for are refused (``_not_stored``), the import goes on checking."""
    try:
        yield
    except BackgroundFlushFailed as exc:
        _not_stored(ctx, writer, exc.label, summary, exc.error)


def _store(ctx: Ctx, writer: RowWriter, chunk: list[ParsedRow], summary: Summary) -> None:
    """Store the pending writes (``chunk``'s), after those under way in the background; a
    failure refuses the lines whose writes it stopped."""
    try:
        with _stopped_writes(ctx, writer, summary):
            writer.flush()
    except FhirError as exc:  # e.g. a resource changed by another request meanwhile
        _not_stored(ctx, writer, _lines(chunk), summary, exc)


def _lines(chunk: list[ParsedRow]) -> tuple[int, int]:
    """The first and last lines of ``chunk`` ((0, 0) when empty)."""
    return (chunk[0].line, chunk[-1].line) if chunk else (0, 0)


def _not_stored(ctx: Ctx, writer: RowWriter, lines: object, summary: Summary, error: BaseException) -> None:
    """The writes of the rows of ``lines`` (first, last) could not be stored: a problem of
    those lines (FhirError), or the error itself (the database's: not the file's fault).
    Nothing is kept."""
    writer.forget()
    _forget_writes(ctx, 0, 0)
    if not isinstance(error, FhirError):
        raise error
    first, last = lines if isinstance(lines, tuple) else (0, 0)
    summary.add([Problem(first, "", "", f"lines {first}-{last} could not be written: {error.diagnostics}")])


def _rows(parser: RowParser, source: CsvSource) -> Any:
    try:
        yield from parser.rows(source)
    except CsvProblem as exc:
        raise FileRefused([Problem(exc.line, "", "", exc.reason)]) from None


def _store_done_writes(ctx: Ctx) -> None:
    """Store the AuditEvents of the writes done so far in the import's own transaction.

    Memory stays flat on large files, and a refused (rolled back) import takes the audit of
    its never-committed writes with it; refusals stay for the request's audit sink. The
    import's writes are audited per person (``audit.grouped``).
    """
    events = [event_of(e) for e in ctx.audit_events]
    done = [e for e in events if e.get("outcome") == "0"]
    ctx.audit_events[:] = [e for e in events if e.get("outcome") != "0"]
    if ctx.grouped_writes is not None:
        done += ctx.grouped_writes.drain(ctx.access)
    store_audit_events(ctx.conn, done)


def _forget_writes(ctx: Ctx, start: int, mark: int) -> None:
    """Rolled-back writes are not audited as done (refusals stay in the audit trail)."""
    ctx.audit_events[start:] = [e for e in map(event_of, ctx.audit_events[start:]) if e.get("outcome") != "0"]
    if ctx.grouped_writes is not None:
        ctx.grouped_writes.forget(mark)


def _write(ctx: Ctx, writer: RowWriter, row: ParsedRow, summary: Summary, partial: bool) -> list[Problem]:
    """Write one row (in a savepoint when partial); its problems, or none."""
    if not partial and summary.error_count:
        return []  # the file is already refused: check the other rows, write nothing more
    start = len(ctx.audit_events)
    mark = ctx.grouped_writes.mark() if ctx.grouped_writes is not None else 0
    try:
        if partial:
            with ctx.conn.begin_nested():
                outcome = writer.write(row)
                _flush_row(writer, row)
        else:
            outcome = writer.write(row)
    except RowFailed as exc:
        _forget_writes(ctx, start, mark)
        writer.forget()  # lookups may have seen what the savepoint rolled back
        return [exc.problem]
    outcome.add_to(summary)
    return []


def _flush_row(writer: RowWriter, row: ParsedRow) -> None:
    try:
        writer.flush()
    except FhirError as exc:
        raise RowFailed(Problem(row.line, "", "", f"could not be written: {exc.diagnostics}")) from None
