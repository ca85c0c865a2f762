"""An export run: resources -> partner rows (partner-formats/README.md §2, §3, §4).

The model's ``export`` section names the resources (a search, run under the caller's
scopes and consent like any search), the resources they reference (read through
``fhir.reads``) and, per canonical field, a FHIRPath expression; values are then written
in the format's dialect by the columns (ConceptMaps read backwards). Rows are sorted by the
model's ``key`` so that an export is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import IO, Any
from urllib.parse import parse_qsl

from fhir_gateway.fhir import reads
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.mapping.csvio import CsvSink
from fhir_gateway.mapping.fhirpath import first_value
from fhir_gateway.mapping.importer import organization_constants
from fhir_gateway.mapping.spec import Format
from fhir_gateway.mapping.template import render
from fhir_gateway.mapping.values import format_cell
from fhir_gateway.search.parser import parse_search
from fhir_gateway.storage.search_repository import execute_search

PAGE = 500


def _search(ctx: Ctx, res_type: str, query: str, since: date | None) -> Iterator[dict[str, Any]]:
    """Every match of ``query`` under the caller's filter, page by page (stable ``_id`` order)."""
    ctx.require_scope(res_type, "s")
    items = parse_qsl(query, keep_blank_values=True)
    if since is not None:
        items.append(("_lastUpdated", f"ge{since.isoformat()}"))
    offset = 0
    people: dict[str | None, None] = {}  # the persons whose data the file carries, for the audit trail
    while True:
        page = [*items, ("_sort", "_id"), ("_count", str(PAGE))]
        request = parse_search(res_type, page, default_count=PAGE, max_count=PAGE, strict=True)
        request.offset = offset  # internal paging: no cursor, no client-given _offset
        result = execute_search(ctx.conn, request, ctx, 0)
        for _type, _id, content, person in result.matches:
            people[person] = None
            yield jsonutil.loads(content)
        if len(result.matches) < PAGE:
            break
        offset += PAGE
    ctx.audit_people("search-type", res_type, people, query=query)


def _part(value: Any, part: str | None) -> Any:
    if value is None or part is None:
        return value
    text = str(value)
    if part == "date":
        return text[:10]
    return text[11:16] if part == "time" and len(text) > 10 else None


class _Resolver:
    """Referenced resources, read once each through the caller's consent."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.cache: dict[str, dict[str, Any] | None] = {}

    def get(self, reference: Any) -> dict[str, Any] | None:
        if not isinstance(reference, str) or "/" not in reference:
            return None
        if reference not in self.cache:
            res_type, res_id = reference.split("/", 1)
            try:
                row = reads.read(self.ctx, res_type, res_id)
                self.cache[reference] = jsonutil.loads(row.content) if row.content else None
            except FhirError:
                self.cache[reference] = None
        return self.cache[reference]


def export_rows(ctx: Ctx, fmt: Format, organization: str, since: date | None) -> list[dict[str, Any]]:
    """The canonical values of each exported row, sorted by the model's key."""
    spec = fmt.model.get("export")
    if not spec:
        raise ValueError(f"{fmt.name} cannot be exported")
    constants = organization_constants(organization)
    constants.update({k: render(v, constants) for k, v in fmt.constants.items()})
    fields = {
        name: (entry if isinstance(entry, dict) else {"path": entry})
        for name, entry in spec["fields"].items()
    }
    paths = {name: render(entry["path"], constants) for name, entry in fields.items()}
    resolver = _Resolver(ctx)
    rows: list[dict[str, Any]] = []
    for resource in _search(ctx, spec["type"], render(spec["search"], constants), since):
        sources = {"": resource}
        for name, path in (spec.get("resolve") or {}).items():
            sources[name] = resolver.get(first_value(resource, path)) or {}
        if spec.get("require") and not first_value(resource, render(spec["require"], constants)):
            continue
        values = {
            name: _part(first_value(sources[entry.get("from", "")], paths[name]), entry.get("part"))
            for name, entry in fields.items()
        }
        rows.append(values)
    key = spec.get("key") or list(fields)
    rows.sort(key=lambda r: tuple(str(r.get(k) or "") for k in key))
    return rows


def write_rows(fmt: Format, rows: list[dict[str, Any]], stream: IO[bytes]) -> int:
    """Write the header and ``rows`` in the format's dialect; the number of rows."""
    dialect = fmt.dialect
    columns = [c for c in fmt.columns if not c.import_only]
    sink = CsvSink(stream, dialect.export_encoding, dialect.delimiter, dialect.newline)
    sink.write([c.header for c in columns])
    for values in rows:
        sink.write([format_cell(c, values.get(c.field), dialect) for c in columns])
    sink.close()
    return len(rows)
