"""Read, vread and history (FHIR R4 http.html#read, #vread, #history).

A resource the caller may not see answers 404 exactly like one that does not exist, so
that consent never leaks existence (issue 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.cursors import OFFSET, open_page, refuse_offset
from fhir_gateway.fhir.requests import parse_instant
from fhir_gateway.kit.cursor import PARAM, CursorIssuer
from fhir_gateway.kit.errors import BadRequest, Forbidden, Gone, NotFound
from fhir_gateway.storage import repository
from fhir_gateway.storage.repository import StoredRow
from fhir_gateway.storage.tables import resource


def read(ctx: Ctx, res_type: str, res_id: str) -> StoredRow:
    """The current version; 404 if unknown or not visible, 410 if deleted."""
    ctx.require_scope(res_type, "r")
    decided = ctx.decided_read(res_type)  # partners: filtered by consent, with what decided
    if decided is not None:
        found = repository.get_current_decided(ctx.conn, decided, res_type, res_id)
    else:
        current = repository.get_current(ctx.conn, res_type, res_id, visible=ctx.visible(resource, res_type))
        found = (current, ()) if current is not None else None
    ctx.rows_returned(found is not None)
    if found is None:
        _audit_hidden(ctx, "read", res_type, res_id)
        raise NotFound(f"{res_type}/{res_id} is not known")
    row, decision = found
    if row.deleted:
        raise Gone(f"{res_type}/{res_id} was deleted", headers={"ETag": f'W/"{row.version}"'})
    decided_by = ctx.decided_by(decision) if row.patient_id is not None else None
    ctx.audit("read", res_type, res_id, row.patient_id, decided_by=decided_by)
    return row


def _audit_hidden(ctx: Ctx, interaction: str, res_type: str, res_id: str) -> None:
    """Audit a refusal when the 404 hides an existing resource from this caller."""
    hidden = ctx.hidden_exists(res_type, res_id)
    if hidden is not None:
        ctx.audit(interaction, res_type, res_id, hidden.patient_id, ok=False)


def vread(ctx: Ctx, res_type: str, res_id: str, version: str) -> StoredRow:
    """One version, checked against consent as that version was stored."""
    ctx.require_scope(res_type, "r")
    if not version.isdigit():
        raise NotFound(f"{res_type}/{res_id}/_history/{version[:40]} is not known")
    row = repository.get_version(
        ctx.conn,
        res_type,
        res_id,
        int(version),
        visible=lambda table: ctx.visible(table, res_type),
    )
    ctx.rows_returned(row is not None)
    if row is None:
        _audit_hidden(ctx, "vread", res_type, res_id)
        raise NotFound(f"{res_type}/{res_id}/_history/{version} is not known")
    if row.deleted:
        raise Gone(f"{res_type}/{res_id} version {version} is a deletion")
    ctx.audit("vread", res_type, res_id, row.patient_id)
    return row


@dataclass(frozen=True)
class HistoryPage:
    rows: list[StoredRow]
    total: int
    count: int
    offset: int
    url: str  # the history's URL, without query
    cursors: CursorIssuer  # of its links (``fhir.cursors``)
    kept: list[tuple[str, str]] = field(default_factory=list)  # parameters the links replay


def history_url(base: str, res_type: str | None, res_id: str | None) -> str:
    """``[base]/_history``, ``[base]/[type]/_history`` or ``[base]/[type]/[id]/_history``."""
    path = "/".join(part for part in (res_type, res_id) if part)
    return f"{base}/{path}/_history" if path else f"{base}/_history"


def history(
    ctx: Ctx,
    res_type: str | None,
    res_id: str | None,
    params: dict[str, str],
) -> HistoryPage:
    """Instance, type or system history, newest first, paged by ``_count`` and the links' cursors."""
    if res_type is not None:
        ctx.require_scope(res_type, "r" if res_id else "s")
    elif not ctx.access.allows("*", "s"):
        raise Forbidden("System history needs a wildcard search scope (*.s)")
    refuse_offset(params.items())
    count = _int_param(params, "_count", ctx.settings.default_count, ctx.settings.max_count)
    url = history_url(ctx.settings.fhir_base, res_type, res_id)
    kept = [(k, v) for k, v in params.items() if k not in ("_count", OFFSET, PARAM)]
    offset, cursors = open_page(ctx, url, kept, params.get(PARAM))
    rows, total = repository.history_page(
        ctx.conn,
        res_type=res_type,
        res_id=res_id,
        since=parse_instant("_since", params.get("_since")),
        at=parse_instant("_at", params.get("_at")),
        visible=lambda table: ctx.visible(table, res_type),
        count=count,
        offset=offset,
    )
    visible_now = res_id is None or total > 0
    if res_id is not None and total == 0 and res_type is not None:
        visible_now = (
            repository.get_current(ctx.conn, res_type, res_id, visible=ctx.visible(resource, res_type))
            is not None
        )
    if not visible_now:
        assert res_type is not None
        assert res_id is not None
        _audit_hidden(ctx, "history-instance", res_type, res_id)
        raise NotFound(f"{res_type}/{res_id} is not known")
    if res_id is not None:
        ctx.audit("history-instance", res_type, res_id, rows[0].patient_id if rows else None)
    elif res_type is not None:  # versions of many persons' resources
        ctx.audit_people("history-type", res_type, (row.patient_id for row in rows))
    else:  # the system's history lists the AuditEvents its own pages add: naming persons would
        # add as many per page as it reads (its offset pages would never end)
        ctx.audit("history-system", None, None, None)
    return HistoryPage(list(rows), total, count, offset, url, cursors, kept)


def _int_param(params: dict[str, str], name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, not '{raw[:40]}'", expression=[name])
    return min(int(raw), maximum)
