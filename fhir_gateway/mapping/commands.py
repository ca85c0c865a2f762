"""``fhir-gateway import`` and ``fhir-gateway export`` (issue 5; partner-formats/README.md).

An operator tool: it acts as a trusted client ``cli:import`` / ``cli:export`` with
``system/*.cruds`` on behalf of ``--organization``, so every write is validated, versioned
and audited with that organisation like an API write (consent is not checked: the
operator is trusted). Exit codes: 0 success, 1 data errors (nothing written unless
``--partial``), 2 usage errors.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import IO, Any

import typer
from sqlalchemy.exc import DBAPIError

from fhir_gateway.auth.context import AccessContext
from fhir_gateway.auth.scopes import parse_scopes
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.kit.gc_tuning import fewer_collections
from fhir_gateway.mapping.exporter import write_rows
from fhir_gateway.mapping.importer import ImportOptions, ImportRefused
from fhir_gateway.mapping.report import FileRefused, Summary
from fhir_gateway.mapping.service import export_file, find_format, import_file
from fhir_gateway.settings import get_settings
from fhir_gateway.storage.faults import storage_refusal

CLI_SCOPE = "system/*.cruds"


def _access(client_id: str, organization: str) -> AccessContext:
    return AccessContext(
        client_id=client_id,
        scopes=parse_scopes(CLI_SCOPE),
        organization=organization,
        trusted=True,
        raw_scope=CLI_SCOPE,
    )


def _usage(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _print(summary: Summary) -> None:
    for problem in summary.problems:
        typer.echo(f"{problem.severity}: {problem.text()}", err=True)
    typer.echo(summary.line())


def import_command(
    format_name: str = typer.Argument(..., metavar="FORMAT", help="partner format, e.g. saad-interventions"),
    file: Path = typer.Argument(..., metavar="FILE", help="the CSV file to import"),
    organization: str = typer.Option(..., help="Organization/ID the file speaks for (audited as such)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check and simulate; write nothing"),
    partial: bool = typer.Option(False, "--partial", help="write the good rows, reject the bad ones"),
    rejects: Path | None = typer.Option(None, help="reject file (with --partial): bad rows + motif_rejet"),
    encoding: str | None = typer.Option(None, help="force the encoding (utf-8, windows-1252)"),
) -> None:
    """Import a partner file (formats: mappings/; contract: partner-formats/README.md).

    Operator tool: acts as the trusted client 'cli:import' with scopes system/*.cruds on
    behalf of --organization; every write is validated, versioned and audited with that
    organisation (consent is not checked for a trusted operator). All-or-nothing by default:
    one bad row and nothing is written. Exit codes: 0 success, 1 data errors, 2 usage errors.
    """
    from fhir_gateway.audit.writer import AuditWriter
    from fhir_gateway.fhir.context import unit_of_work
    from fhir_gateway.storage.database import Database
    from fhir_gateway.storage.statistics import refresh_statistics_of

    if rejects is not None and not partial:
        raise _usage("--rejects needs --partial")
    if not file.is_file():
        raise _usage(f"{file} is not a readable file")
    settings = get_settings()
    database = Database(settings.database_url)
    audit = AuditWriter(database, mode="sync")
    summary: Summary | None = None
    try:
        fmt = find_format(settings, format_name, "import")
        with ExitStack() as stack:
            handle: IO[bytes] = stack.enter_context(file.open("rb"))
            reject_stream = stack.enter_context(rejects.open("wb")) if rejects is not None else None
            bar: Any = None
            if sys.stderr.isatty():
                bar = stack.enter_context(
                    typer.progressbar(length=_count_lines(file), label=format_name, file=sys.stderr)
                )
            options = ImportOptions(
                partial, dry_run, encoding, reject_stream, (lambda _n: bar.update(1)) if bar else None
            )
            access = _access("cli:import", organization)
            # a process of its own: its collections may be tuned for bulk work (not a server's)
            with (
                fewer_collections(),
                unit_of_work(database, settings, access, write=True, audit_sink=audit.submit) as ctx,
            ):
                summary = import_file(ctx, fmt, handle, organization, options)
            if summary.stored() >= settings.analyze_after_rows:  # committed: the planner learns of it
                refresh_statistics_of(database)
    except ImportRefused as refused:
        summary = refused.summary
    except FileRefused as refused:
        for problem in refused.problems:
            typer.echo(f"error: {problem.text()}", err=True)
        raise typer.Exit(1) from None
    except FhirError as exc:
        raise _usage(exc.diagnostics) from None
    except DBAPIError as exc:  # full or read-only storage, database gone: said, not a traceback
        reason = storage_refusal(exc) or "the database could not complete the import"
        typer.echo(f"error: {reason}; nothing of the file was written", err=True)
        raise typer.Exit(1) from None
    finally:
        audit.close()
        database.dispose()
    _print(summary)
    raise typer.Exit(1 if summary.error_count else 0)


def export_command(
    format_name: str = typer.Argument(..., metavar="FORMAT", help="partner format, e.g. saad-interventions"),
    organization: str = typer.Option(..., help="Organization/ID the export is for (audited as such)"),
    since: str | None = typer.Option(None, help="only resources changed since YYYY-MM-DD"),
    output: Path | None = typer.Option(None, help="file to write (default: standard output)"),
) -> None:
    """Export a partner file (formats: mappings/; contract: partner-formats/README.md).

    Operator tool: reads as the trusted client 'cli:export' with scopes system/*.cruds on
    behalf of --organization (audited with that organisation). Exit codes: 0 success,
    2 usage errors.
    """
    from fhir_gateway.audit.writer import AuditWriter
    from fhir_gateway.fhir.context import unit_of_work
    from fhir_gateway.storage.database import Database

    try:
        since_date = date.fromisoformat(since) if since else None
    except ValueError:
        raise _usage("--since must be YYYY-MM-DD") from None
    settings = get_settings()
    database = Database(settings.database_url)
    audit = AuditWriter(database, mode="sync")
    try:
        fmt = find_format(settings, format_name, "export")
        with unit_of_work(
            database, settings, _access("cli:export", organization), write=False, audit_sink=audit.submit
        ) as ctx:
            rows = export_file(ctx, fmt, organization, since_date)
    except FhirError as exc:
        raise _usage(exc.diagnostics) from None
    finally:
        audit.close()
        database.dispose()
    if output is None:
        count = write_rows(fmt, rows, sys.stdout.buffer)
    else:
        with output.open("wb") as handle:
            count = write_rows(fmt, rows, handle)
    typer.echo(f"{format_name}: {count} rows exported", err=True)
