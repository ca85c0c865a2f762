"""Entry points shared by the CLI and the HTTP operations (issue 5).

Finds the format, checks the direction and the organisation the file speaks for, and runs
the import or export in the caller's unit of work (DESIGN.md, A request's way).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import IO, Any

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit.errors import BadRequest, Forbidden, NotFound
from fhir_gateway.mapping.exporter import export_rows
from fhir_gateway.mapping.importer import DryRunDone, ImportOptions, ImportRefused, run_import
from fhir_gateway.mapping.report import Summary
from fhir_gateway.mapping.spec import Format, available, load_format, mappings_root
from fhir_gateway.observability.metrics import IMPORT_ROWS
from fhir_gateway.settings import Settings
from fhir_gateway.storage import repository


def find_format(settings: Settings, name: str, direction: str) -> Format:
    """The format ``name`` able to run ``direction`` (import/export), or 400 listing the others."""
    root = mappings_root(settings.mappings_dir)
    try:
        fmt = load_format(root, name)
    except KeyError:
        names = [n for n in available(root) if direction in load_format(root, n).directions]
        raise BadRequest(f"unknown {direction} format '{name}'; known: {', '.join(names)}") from None
    if direction not in fmt.directions:
        raise BadRequest(f"format '{name}' cannot be used for {direction}", expression=["format"])
    return fmt


def check_organization(ctx: Ctx, organization: str) -> str:
    """``Organization/ID`` as given, existing, and the caller's own unless trusted."""
    kind, _, org_id = organization.partition("/")
    if kind != "Organization" or not org_id or "/" in org_id:
        raise BadRequest(
            "organization must be a reference such as Organization/123", expression=["organization"]
        )
    access = ctx.access
    if not access.trusted and access.organization != organization:
        raise Forbidden(
            f"this client speaks for {access.organization or 'no organisation'}, not {organization}"
        )
    row = repository.get_current(ctx.conn, "Organization", org_id)
    if row is None or row.deleted:
        raise NotFound(f"{organization} is not known")
    return organization


def import_file(
    ctx: Ctx, fmt: Format, stream: IO[bytes], organization: str, options: ImportOptions
) -> Summary:
    """Run one import in ``ctx`` (ImportRefused / DryRunDone roll it back)."""
    check_organization(ctx, organization)
    try:
        summary = run_import(ctx, fmt, stream, organization, options)
    except DryRunDone as done:
        IMPORT_ROWS.labels(fmt.name, "dry-run").inc(done.summary.rows)
        raise
    except ImportRefused as refused:
        IMPORT_ROWS.labels(fmt.name, "refused").inc(refused.summary.rows)
        raise
    IMPORT_ROWS.labels(fmt.name, "imported").inc(summary.rows - summary.rejected)
    IMPORT_ROWS.labels(fmt.name, "rejected").inc(summary.rejected)
    return summary


def export_file(ctx: Ctx, fmt: Format, organization: str, since: date | None) -> list[dict[str, Any]]:
    """The rows of one export, read in ``ctx``."""
    check_organization(ctx, organization)
    return export_rows(ctx, fmt, organization, since)


def format_path(settings: Settings, name: str) -> Path:
    return mappings_root(settings.mappings_dir) / name
